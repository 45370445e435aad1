"""Per-member effects (``keep_replicates``) on the fast ISM path: the same members' effects
and moments as the exact path, ``fast="auto"`` choosing by its usual rule, resume unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dmr_ray.engine import EngineOptions, IsmJob, run_ism
from dmr_ray.engine.ism_task import read_replicate_beta, replicate_ism
from dmr_ray.ism import fast as ism_fast
from dmr_ray.ism import saturation_mutagenesis
from dmr_ray.models import load_model_spec, save_weights
from dmr_ray.models.architectures import small_cnn
from dmr_ray.store import EffectsStore, write_sequence_store
from dmr_ray.store import _zarr_io as zio
from dmr_ray.uncertainty import ReplicateSubset, build_predictor
from dmr_ray.uncertainty.calibrated import CalibratedPredictor
from dmr_ray.uncertainty.calibration import VarianceScaler

L = 200
CNN = {"length": L, "filters": 4, "kernel": 5, "n_conv": 2, "n_dense": 1, "hidden": 6, "n_tasks": 2}
TOL = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> Path:
    """A 3-member CNN ensemble (tasks X, Y) and 4 sequences of 200 bp (chunks of 2, two Ns)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("members")
    for i in range(3):
        torch.manual_seed(i)
        save_weights(small_cnn(**CNN), folder / f"m{i}.safetensors")
    spec = {
        "entrypoint": "dmr_ray.models.architectures:small_cnn",
        "kwargs": CNN,
        "weights": [f"m{i}.safetensors" for i in range(3)],
        "input_length": L,
        "outputs": [{"name": "X", "index": 0}, {"name": "Y", "index": 1}],
        "replicates": {"kind": "ensemble"},
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    tokens = np.random.default_rng(0).integers(0, 4, size=(4, L)).astype(np.uint8)
    tokens[3, [0, 50]] = 4
    write_sequence_store(folder / "sequences.zarr", tokens, [f"s{i}" for i in range(4)], chunk_size=2)
    return folder


@pytest.fixture
def fast_runs(monkeypatch) -> list[bool]:
    """The ``keep_replicates`` argument of each :meth:`FastISM.run` call from now on."""
    runs: list[bool] = []
    original = ism_fast.FastISM.run
    monkeypatch.setattr(ism_fast.FastISM, "run", lambda self, *a: runs.append(a[-1]) or original(self, *a))
    return runs


def _tokens(folder: Path) -> np.ndarray:
    return np.asarray(zio.open_group(str(folder / "sequences.zarr"), "r", None)["tokens"][:])


def _assert_same(a, b) -> None:
    for name in ("replicate_beta", "beta", "se", "ref_mean", "ref_se"):
        x, y = getattr(a, name), getattr(b, name)
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        np.testing.assert_allclose(x, y, **TOL, err_msg=name)


def test_fast_path_keeps_the_exact_paths_member_effects_and_moments(members) -> None:
    predictor = build_predictor(load_model_spec(members / "spec.yaml"))
    tokens = _tokens(members)
    exact = saturation_mutagenesis(predictor, tokens, ddof=1, keep_replicates=True)
    fast = saturation_mutagenesis(predictor, tokens, ddof=1, keep_replicates=True, fast=True, batch_size=60)
    assert exact.replicate_beta.shape == (3, 4, L, 3, 2)
    assert np.isnan(fast.replicate_beta[:, 3, [0, 50]]).all() and not np.isnan(fast.replicate_beta[:, :3]).any()
    _assert_same(fast, exact)
    # each kept member is that member's own ISM; the moments are the kept members' moments
    one = saturation_mutagenesis(ReplicateSubset(predictor, [2]), tokens, fast=True, batch_size=60)
    np.testing.assert_array_equal(fast.replicate_beta[2], one.beta)
    np.testing.assert_allclose(fast.se, np.std(fast.replicate_beta, axis=0, ddof=1), **TOL)
    # without the option nothing is kept and the moments are unchanged
    plain = saturation_mutagenesis(predictor, tokens, ddof=1, fast=True, batch_size=60)
    assert plain.replicate_beta is None
    np.testing.assert_array_equal(plain.se, fast.se)


def test_auto_takes_the_fast_path_with_kept_members(members, fast_runs) -> None:
    predictor = build_predictor(load_model_spec(members / "spec.yaml"))
    with torch.inference_mode():
        path = ism_fast.plan_fast_path(predictor, L, "auto", None)
    assert path is not None and path.work_ratio < ism_fast.AUTO_MAX_WORK_RATIO
    auto = replicate_ism(predictor, _tokens(members), batch_size=None, ddof=0, fast="auto")
    assert fast_runs == [True]
    exact = replicate_ism(predictor, _tokens(members), batch_size=None, ddof=0)
    assert fast_runs == [True]
    _assert_same(auto.result, exact.result)
    np.testing.assert_array_equal(auto.replicate_beta, auto.result.replicate_beta)


def test_engine_job_keeps_members_on_the_fast_path_and_resumes(members, tmp_path, fast_runs) -> None:
    base = {"store": str(members / "sequences.zarr"), "model": str(members / "spec.yaml"), "ddof": 1}
    exact_job = IsmJob(**base, out=str(tmp_path / "exact.zarr"), fast=False, keep_replicates=True)
    fast_job = IsmJob(**base, out=str(tmp_path / "fast.zarr"), keep_replicates=True)  # fast="auto"
    assert fast_job.ism_fast == "auto" and exact_job.ism_fast is False
    run_ism(exact_job, EngineOptions(actors=0))
    assert fast_runs == []
    run_ism(fast_job, EngineOptions(actors=0))
    assert fast_runs == [True, True]  # one fast call per chunk
    exact, fast = (EffectsStore.open(job.out, mode="r") for job in (exact_job, fast_job))
    np.testing.assert_allclose(read_replicate_beta(fast, 0, 4), read_replicate_beta(exact, 0, 4), **TOL)
    for name in ("beta", "se", "ref_mean", "ref_se"):
        np.testing.assert_allclose(fast.read()[name], exact.read()[name], **TOL, err_msg=name)
    # an interrupted run (chunk 1 not flagged, its members' effects lost) resumes that chunk only
    before = read_replicate_beta(fast, 0, 4)
    group = zio.open_group(fast_job.out, "r+", None)
    group["complete"][1] = False
    group["beta_replicates"][:, 2:4] = np.nan
    summary = run_ism(fast_job, EngineOptions(actors=0))
    assert (summary.computed, summary.skipped) == (1, 1) and fast_runs == [True, True, True]
    np.testing.assert_array_equal(read_replicate_beta(EffectsStore.open(fast_job.out, mode="r"), 0, 4), before)


def test_calibrated_members_stay_exact_and_are_kept(members) -> None:
    """A recalibration maps all members of an input together: ``fast`` falls back to the
    exact path, whose kept members are the calibrated predictions' paired differences."""
    base = build_predictor(load_model_spec(members / "spec.yaml"))
    predictor = CalibratedPredictor(base, VarianceScaler(np.array([2.0, 0.5])))
    tokens = _tokens(members)[:1, :]
    result = saturation_mutagenesis(predictor, tokens, fast=True, keep_replicates=True)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(tokens[0]).long(), 4).T.float()
    for pos, slot in ((0, 0), (97, 2), (L - 1, 1)):
        alt = [a for a in range(4) if a != tokens[0, pos]][slot]
        mutant = onehot.clone()
        mutant[:, pos] = torch.nn.functional.one_hot(torch.tensor(alt), 4).float()
        truth = predictor.predict_all(mutant[None]) - predictor.predict_all(onehot[None])
        np.testing.assert_allclose(result.replicate_beta[:, 0, pos, slot], truth[:, 0].numpy(), **TOL)
    uncalibrated = saturation_mutagenesis(base, tokens, keep_replicates=True)
    assert not np.allclose(result.replicate_beta, uncalibrated.replicate_beta, **TOL)
    np.testing.assert_allclose(result.beta, uncalibrated.beta, **TOL)  # the scaler keeps each input's mean

"""Replicate inference wired through the audit: ISM keeps every member's effects, the local
stage fits each member, the meta stage infers across members, the report calls a direction."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from scipy import stats

from dmr_ray.config import config_from_dict, load_config
from dmr_ray.deepmr.local import LocalMROptions, instrument_masks, local_effects_table, local_replicate_inference
from dmr_ray.deepmr.pipeline import run_audit
from dmr_ray.deepmr.stages import global_effects_table, read_local_effects, run_global_stage, run_local_stage
from dmr_ray.engine import EngineOptions, IsmJob, run_ism
from dmr_ray.engine.ism_task import REPLICATE_BETA, IsmTask, read_replicate_beta, replicate_ism
from dmr_ray.errors import ConfigError, InputError, ResumeConflictError
from dmr_ray.ism import saturation_mutagenesis
from dmr_ray.models import load_model_spec, save_weights
from dmr_ray.models.architectures import small_cnn
from dmr_ray.report.direction import direction_calls, direction_status, holm_significant
from dmr_ray.store import EffectsStore, write_sequence_store
from dmr_ray.store import _zarr_io as zio
from dmr_ray.uncertainty import ReplicateSubset, build_predictor

L = 16
CNN = {"length": L, "filters": 4, "kernel": 3, "n_conv": 1, "n_dense": 1, "hidden": 6, "n_tasks": 2}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A 3-member CNN ensemble with tasks X and Y, and 6 random sequences of 16 bp (chunks of 3)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny")
    names = []
    for i in range(3):
        torch.manual_seed(i)
        save_weights(small_cnn(**CNN), folder / f"m{i}.safetensors")
        names.append(f"m{i}.safetensors")
    spec = {
        "entrypoint": "dmr_ray.models.architectures:small_cnn",
        "kwargs": CNN,
        "weights": names,
        "input_length": L,
        "outputs": [{"name": "X", "index": 0}, {"name": "Y", "index": 1}],
        "replicates": {"kind": "ensemble"},
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    tokens = np.random.default_rng(0).integers(0, 4, size=(6, L)).astype(np.uint8)
    write_sequence_store(folder / "sequences.zarr", tokens, [f"s{i}" for i in range(6)], chunk_size=3)
    return folder


def test_ism_keeps_each_members_effects_and_their_exact_moments(tiny, tmp_path) -> None:
    job = IsmJob(str(tiny / "sequences.zarr"), str(tiny / "spec.yaml"), str(tmp_path / "e.zarr"), ddof=1)
    run_ism(job, EngineOptions(actors=0))
    kept = IsmJob(**{**job.__dict__, "out": str(tmp_path / "k.zarr"), "keep_replicates": True})
    run_ism(kept, EngineOptions(actors=0))
    plain, store = (EffectsStore.open(str(tmp_path / name), mode="r") for name in ("e.zarr", "k.zarr"))
    members = read_replicate_beta(store, 0, 6)
    assert members.shape == (3, 6, L, 3, 2)
    predictor = build_predictor(load_model_spec(tiny / "spec.yaml"))
    tokens = np.asarray(zio.open_group(str(tiny / "sequences.zarr"), "r", None)["tokens"][:])
    one = saturation_mutagenesis(ReplicateSubset(predictor, [1]), tokens).beta
    np.testing.assert_allclose(members[1], one, atol=1e-6)
    for name in ("beta", "se", "ref_mean", "ref_se"):
        np.testing.assert_allclose(store.read()[name], plain.read()[name], atol=1e-5, err_msg=name)
    np.testing.assert_allclose(members.mean(0), store.read()["beta"], atol=1e-6)
    # replicate groups (one per actor): their kept effects concatenate, their moments merge exactly
    whole = replicate_ism(predictor, tokens, batch_size=None, ddof=1)
    groups = [replicate_ism(ReplicateSubset(predictor, g), tokens, batch_size=None, ddof=0) for g in ([0, 1], [2])]
    merged = IsmTask.reduce(SimpleNamespace(job=kept, replicate_kind="ensemble"), 0, groups)
    np.testing.assert_array_equal(merged.replicate_beta, whole.replicate_beta)
    np.testing.assert_allclose(merged.result.se, whole.result.se, atol=1e-6)
    with pytest.raises(ResumeConflictError, match="keep_replicates"):
        run_ism(IsmJob(**{**job.__dict__, "out": kept.out}), EngineOptions(actors=0))
    with pytest.raises(InputError, match="keep_replicates"):
        read_replicate_beta(plain, 0, 3)


# --- local and meta stages on hand-built member effects ---------------------------------------

THETA = 0.7
SHIFT = np.array([0.0, 0.7, 0.6, 0.8, -0.2])
"""Each member's GATA-like response at Y's motif, shared by all its instruments (docs/direction.md)."""


def _members(n: int = 12, length: int = 20, seed: int = 0) -> np.ndarray:
    """``[R, n, L, 3, 2]``: X's motif (0-4) drives Y by THETA; at Y's motif (10-14) every
    member moves X by its own shift, the same at every instrument (a reverse artefact)."""
    rng = np.random.default_rng(seed)
    beta = rng.normal(0, 0.05, (SHIFT.size, n, length, 3, 2))
    bx = -8 + rng.normal(0, 0.3, (SHIFT.size, n, 5, 3))
    beta[:, :, :5, :, 0] = bx
    beta[:, :, :5, :, 1] = THETA * bx + rng.normal(0, 0.1, bx.shape)
    beta[:, :, 10:15, :, 1] = -6 + rng.normal(0, 0.3, (SHIFT.size, n, 5, 3))
    beta[:, :, 10:15, :, 0] = -SHIFT[:, None, None, None] + rng.normal(0, 0.05, (SHIFT.size, n, 5, 3))
    return beta.astype(np.float32)


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> tuple[Path, np.ndarray, LocalMROptions]:
    """An effects store with its members' effects, and both local stages run on it (in process)."""
    root = tmp_path_factory.mktemp("staged")
    members = _members()
    beta, se = members.mean(0), members.std(0)
    attrs = {
        "model_digest": "hand-built",
        "replicate_kind": "ensemble",
        "replicate_count": SHIFT.size,
        "calibration": "none",
        "ddof": 0,
        "code_version": "test",
        "sequence_store": "none",
        "keep_replicates": True,
    }
    ids = [f"seq{i}" for i in range(beta.shape[0])]
    store = EffectsStore.create(
        root / "effects.zarr", seq_ids=ids, length=20, tasks=["X", "Y"], chunk_size=4, attrs=attrs
    )
    group = zio.open_group(store.location, "r+", None)
    group.create_array(REPLICATE_BETA, shape=members.shape, dtype=np.float32, chunks=(5, 4, 20, 3, 2))
    group[REPLICATE_BETA][:] = members
    for i in range(store.n_chunks):
        start, stop = store.chunk_bounds(i)
        zeros = np.zeros((stop - start, 2), np.float32)
        store.write_chunk(i, beta[start:stop], se[start:stop], zeros, zeros)
    options = LocalMROptions(
        tasks=("X", "Y"),
        pairs=(("X", "Y"), ("Y", "X")),
        estimators=("ivw", "weighted_median"),
        filter="zscore",
        threshold=1.0,
        moments_mean=tuple(beta.mean(axis=(0, 1, 2)).tolist()),
        moments_sd=tuple(beta.std(axis=(0, 1, 2)).tolist()),
        region_width=20,
        direction_sd=(1.0, 1.0),
        iterations=200,
    )
    for name in ("local", "replicates"):
        (root / name).mkdir()
    run_local_stage(str(root / "effects.zarr"), root / "local", options, EngineOptions(actors=0), root / "replicates")
    return root, members, options


def _by_key(table: pa.Table) -> dict:
    return {(r["exposure"], r["outcome"], r["method"]): r for r in table.to_pylist()}


def test_member_specific_reverse_artefact_is_significant_pooled_but_not_replicate_wise(staged) -> None:
    root, _, _ = staged
    pooled = _by_key(run_global_stage(root / "local", root / "p.parquet", method="DL", test="z"))
    wise = _by_key(
        run_global_stage(root / "local", root / "r.parquet", method="DL", test="z", replicates=root / "replicates")
    )
    for method in ("ivw", "weighted_median"):
        assert pooled["Y", "X", method]["inference"] == "pooled" and pooled["Y", "X", method]["p_value"] < 1e-6
        reverse, forward = wise["Y", "X", method], wise["X", "Y", method]
        assert reverse["inference"] == "replicate" and reverse["n_replicates"] == SHIFT.size
        assert reverse["p_value"] > 0.05
        assert forward["p_value"] < 1e-3 and forward["estimate"] == pytest.approx(THETA, abs=0.02)
        assert np.isnan(forward["pi_low"]) and forward["i2"] == pooled["X", "Y", method]["i2"]
    assert pq.read_table(root / "r.parquet").column("inference").to_pylist() == ["replicate"] * 4


def test_replicate_global_mean_equals_each_members_own_audit(staged) -> None:
    root, members, options = staged
    wise = _by_key(
        run_global_stage(root / "local", root / "b.parquet", method="DL", test="z", replicates=root / "replicates")
    )
    stored = EffectsStore.open(str(root / "effects.zarr")).read()
    se, ensemble = stored["se"], stored["beta"]
    chosen = instrument_masks(ensemble, se, options)
    ids = np.array([f"seq{i}" for i in range(members.shape[1])])
    brute = [
        _by_key(global_effects_table(local_effects_table(b, se, ids, options, instruments=chosen))) for b in members
    ]
    for key, row in wise.items():
        each = [audit[key]["estimate"] for audit in brute]
        assert row["replicate_estimates"] == pytest.approx(each)
        assert row["estimate"] == pytest.approx(np.mean(each))
        assert row["se"] == pytest.approx(np.std(each, ddof=1) / np.sqrt(len(each)))


def test_every_replicate_is_fitted_on_the_ensembles_instruments(staged) -> None:
    root, members, options = staged
    replicates = read_local_effects(root / "replicates").to_pylist()
    ensemble = read_local_effects(root / "local").to_pylist()
    n_instruments: dict = {}
    for row in replicates:
        key = (row["seq_id"], row["region"], row["exposure"], row["outcome"], row["method"])
        n_instruments.setdefault(key, set()).add(row["n_instruments"])
    assert all(len(counts) == 1 for counts in n_instruments.values())
    for row in ensemble:
        key = (row["seq_id"], row["region"], row["exposure"], row["outcome"], row["method"])
        assert n_instruments[key] == {row["n_instruments"]}


def test_local_replicate_inference_is_the_t_interval_of_the_replicates_fits(staged) -> None:
    root, _, _ = staged
    ensemble = pq.read_table(root / "local" / "part-000000.parquet")
    replicates = pq.read_table(root / "replicates" / "part-000000.parquet")
    n_rep, n_rows = SHIFT.size, ensemble.num_rows
    wise = local_replicate_inference(ensemble, replicates)
    assert wise.column("inference").to_pylist() == ["replicate"] * n_rows
    fits = replicates.column("estimate").to_numpy().reshape(n_rep, n_rows)
    half = stats.t.ppf(0.975, n_rep - 1) * fits.std(axis=0, ddof=1) / np.sqrt(n_rep)
    np.testing.assert_allclose(wise.column("estimate").to_numpy(), fits.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(wise.column("ci_high").to_numpy(), fits.mean(axis=0) + half, rtol=1e-12)
    assert wise.column("n_instruments").to_pylist() == ensemble.column("n_instruments").to_pylist()
    with pytest.raises(InputError, match="do not match"):
        local_replicate_inference(ensemble.slice(1), replicates.slice(0, replicates.num_rows - n_rep))


# --- stage identities through run_audit --------------------------------------------------------


def test_changing_meta_inference_reruns_local_mr_onward_not_ism(tiny, tmp_path, ray_local) -> None:
    config = {
        "store": str(tiny / "sequences.zarr"),
        "model": str(tiny / "spec.yaml"),
        "out": str(tmp_path / "audit"),
        "methods": {"estimators": ["ivw"], "iterations": 50},
        "instruments": {"filter": "wald", "threshold": 0.5},
        "engine": {"actors": 0},
        "report": {"enabled": True, "scatter_sequences": 0},
    }
    path = tmp_path / "audit.yaml"
    ran = {}
    for inference in ("replicate", "pooled", "replicate"):
        path.write_text(yaml.safe_dump({**config, "meta": {"inference": inference}}))
        lines: list[str] = []
        run_audit(load_config(path), echo=lines.append)
        # a resumable stage (ISM, local MR) that finds every chunk done computes none
        ran[inference] = {
            line.split("]")[0][1:]: not ("reused" in line or " 0 chunks computed" in line) for line in lines
        }
        table = pq.read_table(tmp_path / "audit" / "global_effects.parquet")
        assert set(table.column("inference").to_pylist()) == {inference}
        local = read_local_effects(tmp_path / "audit" / "local_effects.parquet")
        assert set(local.column("inference").to_pylist()) == {"ensemble" if inference == "pooled" else "replicate"}
    # local rows take their inference from the same setting, so local MR reruns too; ISM never
    assert ran["pooled"] == {"ism": False, "local MR": True, "meta": True, "report": True}
    assert ran["replicate"] == ran["pooled"]
    assert (tmp_path / "audit" / "local_replicates.parquet").is_dir()


def test_replicate_inference_needs_the_replicates_and_float32() -> None:
    minimal = {"store": "s.zarr", "model": "m.yaml", "out": "o"}
    assert config_from_dict(minimal).meta.inference == "replicate"
    with pytest.raises(ConfigError, match="needs ism.keep_replicates"):
        config_from_dict({**minimal, "ism": {"keep_replicates": False}})
    with pytest.raises(ConfigError, match="keep_replicates"):
        config_from_dict({**minimal, "ism": {"precision": "bfloat16", "fast": True}})
    pooled = {**minimal, "ism": {"keep_replicates": False}, "meta": {"inference": "pooled"}}
    assert config_from_dict(pooled).ism.keep_replicates is False


# --- the report's direction call ----------------------------------------------------------------


def _row(exposure: str, outcome: str, method: str, estimate: float, p_value: float, inference: str) -> dict:
    return {
        "exposure": exposure,
        "outcome": outcome,
        "method": method,
        "estimate": estimate,
        "p_value": p_value,
        "q_p": 0.5,
        "inference": inference,
        "n_replicates": 5,
    }


def test_direction_call_on_a_planted_forward_only_case() -> None:
    rows = [
        _row("GATA", "TAL1", "deepmr", 0.71, 3e-5, "replicate"),
        _row("GATA", "TAL1", "ivw", 0.65, 5e-6, "replicate"),
        _row("TAL1", "GATA", "deepmr", -0.02, 0.4, "replicate"),
        _row("TAL1", "GATA", "ivw", 0.06, 0.18, "replicate"),
    ]
    (call,) = direction_calls(pa.Table.from_pylist(rows))
    assert call.verdict == "supported" and call.direction == ("GATA", "TAL1")
    assert call.text.startswith("GATA → TAL1 supported (increases): 2 of 2 methods agree")
    assert "t on 4 df" in call.text
    assert "TAL1 → GATA not significant for any method after Holm's correction" in call.text
    # The same numbers without a replicate test: the pooled reverse IVW is never called a direction.
    pooled = [{**r, "inference": "pooled"} for r in rows[:3]] + [{**rows[3], "inference": "pooled", "p_value": 1e-12}]
    (untested,) = direction_calls(pa.Table.from_pylist(pooled))
    assert untested.verdict == "untested" and untested.direction is None and "no direction called" in untested.text
    both = rows[:3] + [{**rows[3], "p_value": 0.01}]
    assert direction_calls(pa.Table.from_pylist(both))[0].verdict == "both"


def test_holm_across_methods_by_hand() -> None:
    def rows(*ps):
        return [{"method": f"m{i}", "estimate": 0.1, "p_value": p} for i, p in enumerate(ps)]

    # sorted 0.01 < .05/3, 0.02 < .05/2, 0.04 < .05: all rejected
    assert [r["method"] for r in holm_significant(rows(0.04, 0.01, 0.02), 0.05)] == ["m0", "m1", "m2"]
    # 0.03 >= .05/3 stops at once although every p is below .05
    assert holm_significant(rows(0.03, 0.04, 0.045), 0.05) == []
    # 0.01 < .05/3, then 0.03 >= .05/2 stops: only the first
    assert [r["method"] for r in holm_significant(rows(0.03, 0.01, 0.2), 0.05)] == ["m1"]
    # a NaN p-value is never significant and does not count in k (k = 2: 0.02 < .05/2)
    nan = rows(0.02, float("nan"))
    assert [r["method"] for r in holm_significant(nan, 0.05)] == ["m0"]


def test_holm_keeps_the_chance_of_a_false_call_at_alpha() -> None:
    """Three methods with no effect (independent uniform p-values): "any p < .05" fires in about
    14 % of draws, Holm's step-down in at most 5 %."""
    rng = np.random.default_rng(0)
    draws = rng.random((20_000, 3))
    plain = (draws < 0.05).any(axis=1).mean()
    holm = np.mean(
        [
            bool(holm_significant([{"method": i, "estimate": 1.0, "p_value": p} for i, p in enumerate(d)], 0.05))
            for d in draws
        ]
    )
    assert plain == pytest.approx(1 - 0.95**3, abs=0.01)
    assert holm <= 0.05 + 0.004


def test_direction_call_corrects_for_the_number_of_methods() -> None:
    """The demo's case: the reverse is below .05 for one method of three only (p = .031 > .05/3),
    so it is not significant after Holm and the planted direction is supported; the text says
    the reverse's smallest p."""
    rows = [
        _row("GATA", "TAL1", "deepmr", 0.69, 1e-4, "replicate"),
        _row("GATA", "TAL1", "ivw", 0.64, 1e-5, "replicate"),
        _row("GATA", "TAL1", "weighted_median", 0.65, 1e-5, "replicate"),
        _row("TAL1", "GATA", "deepmr", -0.01, 0.84, "replicate"),
        _row("TAL1", "GATA", "ivw", 0.07, 0.031, "replicate"),
        _row("TAL1", "GATA", "weighted_median", 0.04, 0.089, "replicate"),
    ]
    (call,) = direction_calls(pa.Table.from_pylist(rows))
    assert call.verdict == "supported" and call.direction == ("GATA", "TAL1")
    assert "Holm across the 3 methods" in call.text and "smallest p = 0.031, ivw" in call.text
    strong = rows[:4] + [{**rows[4], "p_value": 0.001}, rows[5]]
    assert direction_calls(pa.Table.from_pylist(strong))[0].verdict == "both"


def _replicated(exposure: str, outcome: str, method: str, replicates: list[float], p_value: float) -> dict:
    return {
        **_row(exposure, outcome, method, float(np.mean(replicates)), p_value, "replicate"),
        "replicate_estimates": replicates,
    }


FORWARD = [0.70, 0.66, 0.72, 0.69, 0.68]
LEAK = [0.08, 0.06, 0.07, 0.09, 0.05]
SD = {"GATA": 2.0, "TAL1": 1.6}


def test_a_significant_reverse_dominated_by_the_forward_direction_is_not_a_finding() -> None:
    """The shared-layer leak of docs/direction.md §9: the reverse is significant for every method
    (Holm rejects it), so without the mutational SDs no direction can be called; with them the
    reverse's standardized effect (≈ 0.07 · 1.6 / 2) is far below the forward's (≈ 0.69 · 2 / 1.6)
    and the planted direction is supported, the reverse named as dominated."""
    rows = [
        _replicated("GATA", "TAL1", "ivw", FORWARD, 1e-5),
        _replicated("GATA", "TAL1", "weighted_median", FORWARD[::-1], 2e-5),
        _replicated("TAL1", "GATA", "ivw", LEAK, 1e-3),
        _replicated("TAL1", "GATA", "weighted_median", LEAK[::-1], 2e-3),
    ]
    table = pa.Table.from_pylist(rows)
    assert direction_calls(table)[0].verdict == "both"
    (call,) = direction_calls(table, effect_sd=SD)
    assert call.verdict == "supported" and call.direction == ("GATA", "TAL1")
    assert "TAL1 → GATA significant for ivw" in call.text and "dominated by the supported direction" in call.text
    status = direction_status(table, SD)
    assert status[("GATA", "TAL1", "ivw")].status == "finding"
    assert status[("TAL1", "GATA", "ivw")].status == "not_dominant"
    dominance = status[("GATA", "TAL1", "ivw")].dominance
    assert dominance is not None and dominance.forward == pytest.approx(np.mean(FORWARD) * 2.0 / 1.6, rel=1e-12)
    # without the SDs, or under pooled inference, a significant row is only "significant"
    assert direction_status(table)[("TAL1", "GATA", "ivw")].status == "significant"


def test_a_tie_is_unresolved_and_opposite_dominant_directions_are_both() -> None:
    """Y = θ X with no variants of Y's own: the reverse reads 1/θ and both standardize to 1, so
    significance either way is not a direction. Two methods that find opposite dominant
    directions are reported as such."""
    theta = [0.50, 0.51, 0.49, 0.52, 0.48]
    sd = {"X": 2.0, "Y": 1.0}
    tie = pa.Table.from_pylist(
        [_replicated("X", "Y", "ivw", theta, 1e-4), _replicated("Y", "X", "ivw", [1 / t for t in theta[::-1]], 1e-4)]
    )
    (call,) = direction_calls(tie, effect_sd=sd)
    assert call.verdict == "unresolved" and call.direction is None and "no direction dominates" in call.text
    opposite = pa.Table.from_pylist(
        [
            _replicated("X", "Y", "ivw", FORWARD, 1e-4),
            _replicated("Y", "X", "ivw", LEAK, 0.3),
            _replicated("X", "Y", "weighted_median", LEAK, 0.4),
            _replicated("Y", "X", "weighted_median", FORWARD, 1e-4),
        ]
    )
    assert direction_calls(opposite, effect_sd={"X": 1.0, "Y": 1.0})[0].verdict == "both"

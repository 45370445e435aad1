"""The Ray engine on a local 2-CPU Ray: equality with in-process ISM, faults, failures, stalls."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engine_support import N_SEQ, PLAN_LOG, RUNTIME_ENV, make_tokens, plans_built, write_spec

from dmr_ray.engine import EngineError, EngineOptions, IsmJob, StalledRunError, run_ism
from dmr_ray.errors import ChunkFailedError, ResumeConflictError
from dmr_ray.ism import saturation_mutagenesis
from dmr_ray.models import load_model_spec
from dmr_ray.store import EffectsStore, write_sequence_store
from dmr_ray.uncertainty import build_predictor

pytestmark = pytest.mark.usefixtures("ray_local")

FIELDS = ("beta", "se", "ref_mean", "ref_se")


def options(**changes) -> EngineOptions:
    """Two actors with the test runtime environment and a generous stall timeout."""
    return EngineOptions(**{"actors": 2, "runtime_env": RUNTIME_ENV, "stall_timeout_s": 120.0, **changes})


def assert_matches_in_process(out: Path, spec: Path, ddof: int = 0, **ism: Any) -> None:
    """``out`` holds what saturation_mutagenesis (with ``ism`` options) computes in this process, to 1e-6."""
    predictor = build_predictor(load_model_spec(spec), device="cpu")
    expected = saturation_mutagenesis(predictor, make_tokens(), ddof=ddof, **ism)
    effects = EffectsStore.open(out, mode="r")
    assert effects.is_complete
    got = effects.read()
    for name in FIELDS:
        np.testing.assert_allclose(got[name], getattr(expected, name), rtol=0, atol=1e-6, err_msg=name)
    assert np.isnan(got["beta"][3, 20]).all() and np.isfinite(got["beta"][4]).all()


@pytest.mark.parametrize(
    ("kind", "groups", "ddof", "actors"),
    [("ensemble", 1, 0, None), ("ensemble", 2, 1, 2), ("mc_dropout", 2, 0, 2)],
    ids=["members-together-default-pool", "members-spread", "mc-dropout-passes-spread"],
)
def test_engine_equals_in_process(store: Path, workdir: Path, kind: str, groups: int, ddof: int, actors) -> None:
    spec = write_spec(workdir / kind, kind=kind, members=3 if kind == "ensemble" else 5, dropout=0.3, conv_dropout=0.2)
    out = workdir / f"effects_{kind}_{groups}.zarr"
    job = IsmJob(str(store), str(spec), str(out), ddof=ddof)
    summary = run_ism(job, options(actors=actors, replicate_groups=groups))
    assert (summary.computed, summary.skipped, summary.reassigned) == (6, 0, 0)
    assert summary.mutants == N_SEQ * 3 * 48
    assert summary.startup_s > 0 and summary.compute_s > 0
    assert f"in {summary.compute_s:.1f} s of compute" in summary.describe()
    assert f"after {summary.startup_s:.1f} s of start-up" in summary.describe()
    assert_matches_in_process(out, spec, ddof)
    assert set(EffectsStore.open(out, mode="r").committed_by()) == {summary.run_id}
    again = run_ism(job, options(replicate_groups=groups))
    assert (again.computed, again.skipped) == (0, 6)


def test_bfloat16_on_actors_equals_in_process_and_each_actor_plans_once(store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "bf16", entrypoint="engine_support:plan_logging_cnn")
    plan_log = workdir / "plans"
    plan_log.mkdir()
    logging_plans = {"env_vars": {**RUNTIME_ENV["env_vars"], PLAN_LOG: str(plan_log)}}
    chunks_by_pid: Counter[int] = Counter()
    job = IsmJob(str(store), str(spec), str(workdir / "effects_bf16.zarr"), fast=True, precision="bfloat16")
    summary = run_ism(job, options(runtime_env=logging_plans), on_commit=lambda r: chunks_by_pid.update([r.pid]))
    assert summary.computed == 6  # on at most 2 actors, so at least 3 chunks share one actor's plan
    assert plans_built(plan_log) == dict.fromkeys(chunks_by_pid, 1)
    assert_matches_in_process(job.out, spec, fast=True, precision="bfloat16")  # float32 differs by ~4e-5


def test_sigkill_of_an_actor_loses_nothing(store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "slow", entrypoint="faulty_models:faulty_cnn", delay=0.05)
    out = workdir / "effects_killed.zarr"
    killed: list[int] = []

    def kill_once(report) -> None:
        if not killed:
            killed.append(report.pid)
            os.kill(report.pid, signal.SIGKILL)

    job = IsmJob(str(store), str(spec), str(out), chunk_size=2)
    summary = run_ism(job, options(), on_commit=kill_once)
    assert killed and summary.reassigned >= 1
    assert summary.computed == 12 and summary.skipped == 0
    assert set(EffectsStore.open(out, mode="r").committed_by()) == {summary.run_id}
    assert_matches_in_process(out, spec)


def test_nan_for_one_sequence_fails_naming_it_after_committing_the_rest(store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "nan", entrypoint="faulty_models:faulty_cnn", nan_marker=4)
    tokens = make_tokens()
    tokens[9, :4] = 3
    poisoned = write_sequence_store(workdir / "poisoned.zarr", tokens, [f"s{i}" for i in range(N_SEQ)], chunk_size=4)
    out = workdir / "effects_nan.zarr"
    with pytest.raises(ChunkFailedError, match=r"chunk 2 \(rows 8\.\.12.*'s9' \(row 9\).*non-finite") as info:
        run_ism(IsmJob(poisoned.location, str(spec), str(out)), options())
    assert "1 chunk(s) failed; 5 of 6 chunks are committed" in str(info.value)
    listing = workdir / "effects_nan.zarr.failed_chunks.txt"
    assert f"every failed chunk is listed in {listing}" in str(info.value)
    assert listing.read_text().count("\n") == 1
    assert EffectsStore.open(out, mode="r").missing_chunks() == [2]


def test_rerun_with_another_model_is_refused(store: Path, workdir: Path) -> None:
    out = workdir / "effects_mismatch.zarr"
    first = write_spec(workdir / "first", seed=0)
    run_ism(IsmJob(str(store), str(first), str(out), chunk_size=12), options(actors=0))
    other = write_spec(workdir / "other", seed=7)
    with pytest.raises(ResumeConflictError, match="model_digest"):
        run_ism(IsmJob(str(store), str(other), str(out), chunk_size=12), options())


def test_rerun_with_another_precision_is_refused(store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "precision")
    out = workdir / "effects_precision.zarr"
    run_ism(IsmJob(str(store), str(spec), str(out), chunk_size=12, fast=True), options(actors=0))
    with pytest.raises(ResumeConflictError, match=r"precision: 'float32' \(existing\) vs 'bfloat16' \(now\)"):
        run_ism(IsmJob(str(store), str(spec), str(out), chunk_size=12, fast=True, precision="bfloat16"), options())


def test_actors_that_cannot_load_the_model_fail_the_run_with_their_error(store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "broken", entrypoint="faulty_models:faulty_cnn")
    broken = {"env_vars": {**RUNTIME_ENV["env_vars"], "FAULTY_CNN_FAIL_INIT": "1"}}
    with pytest.raises(EngineError, match="every actor of replicate group 0 is lost.*FAULTY_CNN_FAIL_INIT"):
        run_ism(IsmJob(str(store), str(spec), str(workdir / "effects_broken.zarr")), options(runtime_env=broken))


def test_a_hung_model_is_reported_as_a_stall(store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "hang", entrypoint="faulty_models:faulty_cnn", hang=True)
    out = workdir / "effects_hung.zarr"
    with pytest.raises(StalledRunError, match=r"no work finished for 10 s.*chunk \d+ has been on actor 0 \(pid \d+"):
        run_ism(IsmJob(str(store), str(spec), str(out)), options(actors=1, stall_timeout_s=10.0))


def test_actors_that_cannot_be_placed_are_reported_as_a_stall(store: Path, workdir: Path) -> None:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    spec = write_spec(workdir / "starved")
    hog = placement_group([{"CPU": 2}])
    ray.get(hog.ready())
    try:
        with pytest.raises(StalledRunError, match=r"actors \[0, 1\] have not started.*0\.75 CPU"):
            run_ism(IsmJob(str(store), str(spec), str(workdir / "effects_starved.zarr")), options(stall_timeout_s=3.0))
    finally:
        remove_placement_group(hog)


def test_cuda_on_a_cluster_without_gpus_fails_before_the_output_exists(store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "cuda")
    out = workdir / "effects_cuda.zarr"
    with pytest.raises(EngineError, match=r"requests .*1 GPU.*has 2 CPU, 0 GPU in all, so no actor can ever"):
        run_ism(IsmJob(str(store), str(spec), str(out), device="cuda"), options())
    assert not out.exists()

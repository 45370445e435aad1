"""The in-process path (``--actors 0``): same chunk functions, failures and resume as on Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_support import N_SEQ, L, make_tokens, write_spec

from dmr_ray.cli import main
from dmr_ray.engine import EngineOptions, IsmJob, run_in_process, run_ism
from dmr_ray.errors import ChunkFailedError, InputError
from dmr_ray.ism import fast as ism_fast
from dmr_ray.store import EffectsStore, write_sequence_store


def test_nan_chunk_fails_after_the_others_are_committed_and_names_the_sequence(tmp_path: Path) -> None:
    tokens = make_tokens()
    tokens[13, :4] = 3
    store = write_sequence_store(tmp_path / "seqs.zarr", tokens, [f"s{i}" for i in range(N_SEQ)], chunk_size=4)
    spec = write_spec(tmp_path / "nan", entrypoint="faulty_models:faulty_cnn", nan_marker=4, members=2)
    out = tmp_path / "effects.zarr"
    with pytest.raises(ChunkFailedError, match=r"chunk 3 \(rows 12\.\.16, seq_ids \['s12', 's13'.*'s13' \(row 13\)"):
        run_in_process(IsmJob(store.location, str(spec), str(out)))
    assert EffectsStore.open(out, mode="r").missing_chunks() == [3]
    listing = (tmp_path / "effects.zarr.failed_chunks.txt").read_text()
    assert listing.startswith("chunk 3 (rows 12..16, seq_ids ['s12', 's13'")


def test_cli_runs_in_process_and_resumes(store: Path, workdir: Path, capsys: pytest.CaptureFixture) -> None:
    spec = write_spec(workdir / "cli", members=2)
    argv = ["ism", "--store", str(store), "--model", str(spec), "--out", str(workdir / "e.zarr"), "--actors", "0"]
    assert main(argv) == 0
    assert "6 chunks computed, 0 already complete" in capsys.readouterr().out
    assert main(argv) == 0
    assert "0 chunks computed, 6 already complete" in capsys.readouterr().out
    assert main([*argv, "--ddof", "1"]) == 2
    assert "ddof: 0 (existing) vs 1 (now)" in capsys.readouterr().err


def test_in_process_chunks_share_one_fast_plan(store: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(workdir / "planned", members=2)
    builds = []
    build = ism_fast.plan_fast_path
    monkeypatch.setattr(ism_fast, "plan_fast_path", lambda *a: builds.append(a[1]) or build(*a))
    summary = run_in_process(IsmJob(str(store), str(spec), str(workdir / "e_planned.zarr"), fast=True))
    assert summary.computed == 6 and builds == [L]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "float64"}, "precision: must be one of"),
        ({"precision": "bfloat16", "fast": False}, "needs the fast path"),
        ({"precision": "float16", "fast": True, "calibration": "cal.json"}, "cannot be combined with calibration"),
    ],
)
def test_job_rejects_a_precision_it_would_not_run(options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        IsmJob("s.zarr", "spec.yaml", "out.zarr", **options)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ddof": -1}, r"ddof: must be an integer >= 0, got -1"),
        ({"ddof": 1.5}, r"ddof: must be an integer >= 0, got 1\.5"),
        ({"batch_size": 0}, r"batch_size: must be an integer >= 1, got 0"),
        ({"chunk_size": 2.0}, r"chunk_size: must be an integer >= 1, got 2\.0"),
        ({"device": "foo"}, r"device: 'foo' is not a torch device"),
        ({"out": "./s.zarr"}, r"out: \./s\.zarr is the store of the job"),
        ({"calibration": "out.zarr"}, r"out: out\.zarr is the calibration of the job"),
    ],
)
def test_job_fields_are_checked_before_anything_runs(changes: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        IsmJob(**{"store": "s.zarr", "model": "spec.yaml", "out": "out.zarr", **changes})


def test_ddof_is_checked_against_the_replicates_before_the_output_exists(store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "two", members=2)
    out = workdir / "e_ddof.zarr"
    with pytest.raises(InputError, match=r"ddof: must be below the replicate count \(2\) of .*spec\.yaml, got 2"):
        run_in_process(IsmJob(str(store), str(spec), str(out), ddof=2))
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_in_process_without_cuda_is_one_input_error(store: Path, workdir: Path) -> None:
    spec = write_spec(workdir / "cuda", members=2)
    out = workdir / "e_cuda.zarr"
    with pytest.raises(InputError, match=r"device: 'cuda' was asked for, but this machine has no CUDA device"):
        run_ism(IsmJob(str(store), str(spec), str(out), device="cuda"), EngineOptions(actors=0))
    assert not out.exists()

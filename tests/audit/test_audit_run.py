"""Running plans: idempotent cells, new versions and options add only new cells, failures stay
alone, interrupted cells resume, concurrent runs compute each cell once, the index records it."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from audit_support import write_plan

from dmr_ray.audit import load_plan, run_plan
from dmr_ray.audit.cells import CELLS, COMPLETE, MANIFEST, OUT, expand_cells, key_cells
from dmr_ray.audit.index import read_index
from dmr_ray.audit.lease import current_lease, try_acquire
from dmr_ray.audit.output import Output
from dmr_ray.audit.status import plan_status
from dmr_ray.cli import main
from dmr_ray.deepmr import pipeline
from dmr_ray.store import EffectsStore, build_from_arrays

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("ray_local")


def _statuses(result) -> dict[str, str]:
    return {o.version: o.status for o in result.outcomes}


def test_reruns_skip_complete_cells_and_a_new_version_adds_one(tmp_path, tiny_inputs) -> None:
    plan = load_plan(write_plan(tmp_path, tiny_inputs))
    first = run_plan(plan, echo=lambda _: None)
    assert first.as_json()["computed"] == 2 and _statuses(first) == {"v1": "computed", "v2": "computed"}
    for outcome in first.outcomes:
        cell = tmp_path / "out" / CELLS / outcome.key
        assert (cell / COMPLETE).exists() and (cell / OUT / "global_effects.parquet").exists()
        manifest = json.loads((cell / MANIFEST).read_text())
        assert manifest["identity"]["kind"] == "deep_mr" and manifest["metrics"]["effects"] == 2.0
    assert first.outcomes[0].key != first.outcomes[1].key

    second = run_plan(plan, echo=lambda _: None)
    assert second.as_json()["computed"] == 0 and second.count("skipped") == 2
    assert [o.key for o in second.outcomes] == [o.key for o in first.outcomes]

    third = run_plan(load_plan(write_plan(tmp_path, tiny_inputs, ("v1", "v2", "v3"))), echo=lambda _: None)
    assert _statuses(third) == {"v1": "skipped", "v2": "skipped", "v3": "computed"}

    index = read_index(Output(str(tmp_path / "out"))).to_pylist()
    assert [(r["version"], r["status"]) for r in index] == [("v1", "computed"), ("v2", "computed"), ("v3", "computed")]
    assert len({r["run_id"] for r in index}) == 2 and all(len(r["model_digest"]) == 64 for r in index)
    assert dict(index[0]["metrics"])["effects"] == 2.0
    status = plan_status(load_plan(tmp_path / "plan.yaml"))
    assert status.counts() == {"done": 3} and "cnn@v3" in status.matrix()


def test_a_changed_audit_option_recomputes_only_that_audits_cells(tmp_path, tiny_inputs) -> None:
    config = yaml.safe_load((tiny_inputs / "deepmr.yaml").read_text())
    strict = {**config, "instruments": {"threshold": 1.5}}
    audits = [
        {"name": "loose", "kind": "deep_mr", "config": config},
        {"name": "strict", "kind": "deep_mr", "config": strict},
    ]
    path = write_plan(tmp_path, tiny_inputs, audits=audits)
    assert run_plan(load_plan(path), echo=lambda _: None).count("computed") == 4
    strict["instruments"] = {"threshold": 2.0}
    strict["engine"] = {"actors": 0, "max_restarts": 1}  # execution only: not part of the key
    write_plan(tmp_path, tiny_inputs, audits=audits)
    result = run_plan(load_plan(path), echo=lambda _: None)
    assert {(o.version, o.audit): o.status for o in result.outcomes} == {
        ("v1", "loose"): "skipped",
        ("v2", "loose"): "skipped",
        ("v1", "strict"): "computed",
        ("v2", "strict"): "computed",
    }


def test_a_failing_cell_fails_alone_with_its_reason_and_exit_code_1(tmp_path, tiny_inputs, capsys) -> None:
    """A model whose spec cannot load fails at keying; a store of 30 bp fails in the pipeline
    (the model takes 24 bp); the one good cell is computed."""
    broken = tmp_path / "broken"
    broken.mkdir()
    spec = yaml.safe_load((tiny_inputs / "v1" / "model.yaml").read_text())
    spec["weights"] = [str(tiny_inputs / "v1" / w) for w in spec["weights"]]
    spec["input_length"] = 30
    (broken / "model.yaml").write_text(yaml.safe_dump(spec))
    tokens = np.zeros((4, 30), dtype=np.uint8)
    build_from_arrays(tokens, tmp_path / "long.zarr")
    path = write_plan(tmp_path, tiny_inputs, ("v1",))
    plan = yaml.safe_load(path.read_text())
    plan["models"].insert(0, {"name": "cnn", "version": "bad", "spec": str(broken / "model.yaml")})
    plan["data"].append({"name": "long", "store": str(tmp_path / "long.zarr")})
    path.write_text(yaml.safe_dump(plan))
    code = main(["audit", "run", str(path), "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 1
    assert (summary["computed"], summary["skipped"], summary["failed"]) == (1, 0, 3)
    assert [set(c) for c in summary["cells"]] == [{"key", "model", "version", "data", "audit", "status", "output"}] * 4
    statuses = [(c["version"], c["data"], c["status"]) for c in summary["cells"]]
    assert statuses == [
        ("bad", "seqs", "failed"),
        ("bad", "long", "failed"),
        ("v1", "seqs", "computed"),
        ("v1", "long", "failed"),
    ]
    assert "[failed] cnn@bad × seqs × deepmr  (no key)  (ModelSpecError: " in captured.err
    assert "[failed] cnn@v1 × long × deepmr" in captured.err
    rows = read_index(Output(str(tmp_path / "out"))).to_pylist()
    reasons = {(r["version"], r["data"]): r["reason"] for r in rows if r["status"] == "failed"}
    assert "input_length" in reasons[("bad", "seqs")]
    assert "24" in reasons[("v1", "long")] and "30" in reasons[("v1", "long")]
    assert plan_status(load_plan(path)).counts() == {"done": 1, "failed": 1, "error": 2}


def test_an_interrupted_cell_resumes_through_the_pipeline(tmp_path, tiny_inputs, monkeypatch) -> None:
    path = write_plan(tmp_path, tiny_inputs, ("v1",))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_meta", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_plan(load_plan(path), echo=lambda _: None)
    (key,) = [p.name for p in (tmp_path / "out" / CELLS).iterdir()]
    cell = tmp_path / "out" / CELLS / key
    assert not (cell / COMPLETE).exists()
    assert current_lease(Output(str(tmp_path / "out")), key).released  # type: ignore[union-attr]
    committed = EffectsStore.open(str(cell / OUT / "effects.zarr"), mode="r").committed_by().tolist()
    monkeypatch.undo()
    lines: list[str] = []
    result = run_plan(load_plan(path), echo=lines.append)
    assert result.count("computed") == 1 and (cell / COMPLETE).exists()
    assert EffectsStore.open(str(cell / OUT / "effects.zarr"), mode="r").committed_by().tolist() == committed
    assert pq.read_table(cell / OUT / "global_effects.parquet").num_rows == 2


def test_two_concurrent_runs_compute_each_cell_once(tmp_path, tiny_inputs) -> None:
    plan = load_plan(write_plan(tmp_path, tiny_inputs, ("v1", "v2", "v3")))
    results, errors = [], []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        try:
            results.append(run_plan(plan, echo=lambda _: None, poll_s=0.05))
        except BaseException as exc:  # shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and len(results) == 2, errors
    seen = [(o.version, o.status, o.reason) for r in results for o in r.outcomes]
    computed = [o.key for r in results for o in r.outcomes if o.status == "computed"]
    assert len(computed) == len(set(computed)) == 3, seen
    assert all(r.count("failed") == 0 and r.count("computed") + r.count("skipped") == 3 for r in results), seen
    rows = read_index(Output(str(tmp_path / "out"))).to_pylist()
    assert sorted(r["key"] for r in rows if r["status"] == "computed") == sorted(computed)


def test_leases_are_exclusive_and_stale_ones_are_taken_over(tmp_path) -> None:
    output = Output(str(tmp_path))
    held = try_acquire(output, "k", "run-a", ttl_s=60)
    other = try_acquire(output, "k", "run-b", ttl_s=60)
    assert not hasattr(other, "release") and other.owner == "run-a"  # type: ignore[union-attr]
    held.release()  # type: ignore[union-attr]
    again = try_acquire(output, "k", "run-b", ttl_s=0.2)
    assert again.generation == 1  # type: ignore[union-attr]
    again._stop.set()  # type: ignore[union-attr]  # run-b dies: no more heartbeats
    time.sleep(0.3)
    taken = try_acquire(output, "k", "run-c", ttl_s=60)
    assert taken.generation == 2 and taken.held() and not again.held()  # type: ignore[union-attr]
    taken.release()  # type: ignore[union-attr]
    assert sorted(p.name for p in (tmp_path / "leases" / "k").iterdir()) == [
        "000000.json",
        "000001.json",
        "000002.json",
    ]


def test_an_fsspec_output_holds_cells_index_and_markers(tmp_path, tiny_inputs) -> None:
    url = "memory://dmr-ray-audit-test/out"
    path = write_plan(tmp_path, tiny_inputs, ("v1",), output=url, work_dir=str(tmp_path / "work"))
    plan = load_plan(path)
    first = run_plan(plan, echo=lambda _: None)
    assert first.count("computed") == 1 and first.outcomes[0].output.startswith("memory://")
    output = Output(plan.output)
    key = first.outcomes[0].key
    assert output.exists(CELLS, key, COMPLETE) and output.exists(CELLS, key, OUT, "global_effects.parquet")
    assert not (tmp_path / "work" / key).exists()
    assert run_plan(plan, echo=lambda _: None).count("skipped") == 1
    assert read_index(output).num_rows == 1


def test_a_run_waits_for_a_live_lease_and_takes_over_a_dead_one(tmp_path, tiny_inputs) -> None:
    plan = load_plan(write_plan(tmp_path, tiny_inputs, ("v1", "v2")))
    output = Output(plan.output)
    keys = [k.key for k in key_cells(expand_cells(plan))[0]]
    live = try_acquire(output, keys[0], "other-run", ttl_s=60)
    dead = try_acquire(output, keys[1], "dead-run", ttl_s=0.3)
    dead._stop.set()  # type: ignore[union-attr]  # the dead run's heartbeat stopped
    time.sleep(0.4)
    lines: list[str] = []
    results = []
    runner = threading.Thread(target=lambda: results.append(run_plan(plan, echo=lines.append, poll_s=0.05)))
    runner.start()
    deadline = time.monotonic() + 60
    while not any(line.startswith("[computed] cnn@v2") for line in lines):
        assert time.monotonic() < deadline and runner.is_alive(), lines
        time.sleep(0.05)
    assert any(line.startswith("[waiting] cnn@v1") and "other-run" in line for line in lines)
    assert runner.is_alive()  # still waiting for the cell the live run holds
    live.release()  # type: ignore[union-attr]  # the other run gave up without completing it
    runner.join(timeout=60)
    assert _statuses(results[0]) == {"v1": "computed", "v2": "computed"}
    assert current_lease(output, keys[1]).generation == 1  # type: ignore[union-attr]  # taken over

"""A Deep MR audit end to end on a small simulation with a planted GATA -> TAL1 effect."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from ray_head import checkout

from dmr_ray.config import load_config
from dmr_ray.deepmr import pipeline
from dmr_ray.deepmr.pipeline import effect_sd, run_audit
from dmr_ray.deepmr.stages import part_path
from dmr_ray.demo import DemoSettings, prepare_demo
from dmr_ray.errors import ResumeConflictError
from dmr_ray.report.direction import direction_calls, direction_status
from dmr_ray.store import EffectsStore

# The demo's training recipe (a weaker ensemble underfits the planted slope); fewer sequences.
SMALL = DemoSettings(n_calibration=400, n_audit=32)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, dict]:
    """Simulated data, a trained 3-member ensemble, stores and an audit config."""
    out = tmp_path_factory.mktemp("demo")
    config_path, truth = prepare_demo(out, seed=3, settings=SMALL)
    cfg = yaml.safe_load(config_path.read_text())
    cfg["methods"]["estimators"] = ["deepmr", "ivw"]
    cfg["ism"] = {"chunk_size": 8}
    cfg["engine"] = {"actors": 1}
    assert cfg["instruments"]["direction_filter"] is True
    config_path.write_text(yaml.safe_dump(cfg))
    return config_path, truth


@pytest.fixture(scope="module")
def audited(prepared, ray_local) -> tuple[Path, dict, list[str]]:
    config_path, truth = prepared
    lines: list[str] = []
    run_audit(load_config(config_path), echo=lines.append, run_info={"simulation": truth})
    return config_path, truth, lines


def _global(config_path: Path) -> dict:
    table = pq.read_table(config_path.parent / "audit" / "global_effects.parquet")
    return {(r["exposure"], r["outcome"], r["method"]): r for r in table.to_pylist()}


def test_planted_effect_is_recovered_and_reverse_is_not(audited) -> None:
    config_path, truth, lines = audited
    planted = truth["true global causal effect GATA→TAL1"]
    rows = _global(config_path)
    forward = rows[("GATA", "TAL1", "deepmr")]
    assert forward["estimate"] > 0 and forward["p_value"] < 0.05
    assert forward["ci_low"] <= planted <= forward["ci_high"], (forward, planted)
    reverse = rows[("TAL1", "GATA", "deepmr")]
    assert not (reverse["p_value"] < 0.05 and reverse["estimate"] > 0.5 * planted), reverse
    for method in ("deepmr", "ivw"):  # every reported method: the replicate test (the default)
        forward, reverse = rows[("GATA", "TAL1", method)], rows[("TAL1", "GATA", method)]
        assert forward["inference"] == "replicate" and forward["p_value"] < 0.05
        # On this seed the reverse is significant for both methods (0.26-0.27): regions whose
        # model barely learned TAL1's own motif split the GATA line between the directions
        # (docs/direction.md §8). It must stay well below the forward effect, and the report
        # must never call TAL1 -> GATA a finding.
        assert reverse["estimate"] < 0.5 * forward["estimate"], reverse
    audit = config_path.parent / "audit"
    table = pq.read_table(audit / "global_effects.parquet")
    calls = direction_calls(table)
    assert [c.direction for c in calls if c.verdict == "supported"] in ([], [("GATA", "TAL1")])
    # With the tasks' mutational SDs, the reverse is dominated for every method: the planted
    # direction is each method's finding and the report's call, the reverse no method's finding.
    scales = effect_sd(audit)
    status = direction_status(table, scales)
    for method in ("deepmr", "ivw"):
        assert status[("GATA", "TAL1", method)].status == "finding", status[("GATA", "TAL1", method)]
        assert status[("TAL1", "GATA", method)].status != "finding", status[("TAL1", "GATA", method)]
    assert [(c.verdict, c.direction) for c in direction_calls(table, effect_sd=scales)] == [
        ("supported", ("GATA", "TAL1"))
    ]
    assert [line.split("]")[0] for line in lines] == ["[calibration", "[ism", "[local MR", "[meta", "[report"]


def test_outputs_and_report(audited) -> None:
    config_path, _, _ = audited
    audit = config_path.parent / "audit"
    local = pq.read_table(audit / "local_effects.parquet")
    ids = set(local.column("seq_id").to_pylist())
    assert len(ids) == SMALL.n_audit and all(i.startswith("sim") for i in ids)
    html = (audit / "report" / "index.html").read_text()
    assert "GATA" in html and "TAL1" in html and "calibration" in html.lower()
    assert any((audit / "report" / "figures").glob("*.png"))
    calibration = yaml.safe_load((audit / "calibration.json").read_text())
    assert len(calibration["error_before"]) == 2


def test_rerun_resumes_without_recomputing(audited, monkeypatch) -> None:
    config_path, _, _ = audited
    audit = config_path.parent / "audit"
    stamps = {p: p.stat().st_mtime_ns for p in (audit / "local_effects.parquet").glob("part-*")}
    moments = (audit / "instruments.json").read_bytes()
    pooled = (audit / "global_effects.parquet").read_bytes()

    def full_read(effects):
        raise AssertionError("the pooled moments of unchanged effects were recomputed")

    monkeypatch.setattr(pipeline, "exposure_moments", full_read)
    lines: list[str] = []
    summary = run_audit(load_config(config_path), echo=lines.append)
    assert "0 chunks computed" in summary.stages["ism"] or " 0 computed" in summary.stages["ism"]
    assert summary.stages["local MR"].startswith("0 chunks computed")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (audit / "instruments.json").read_bytes() == moments
    assert (audit / "global_effects.parquet").read_bytes() == pooled


def test_interrupted_local_stage_recomputes_only_missing_parts(audited) -> None:
    config_path, _, _ = audited
    audit = config_path.parent / "audit"
    missing = part_path(audit / "local_effects.parquet", 1)
    missing.unlink()
    summary = run_audit(load_config(config_path), echo=lambda _: None)
    assert summary.stages["local MR"].startswith("1 chunks computed")
    assert missing.exists()


def test_stage_records_hold_identity_outputs_and_timing(audited) -> None:
    config_path, _, _ = audited
    stages = config_path.parent / "audit" / ".dmr_ray" / "stages"
    records = {p.stem: json.loads(p.read_text()) for p in stages.glob("*.json")}
    assert set(records) == {"calibration", "ism", "local_mr", "meta", "report"}
    assert records["ism"]["outputs"] == ["effects.zarr", "instruments.json"]
    assert records["local_mr"]["identity"]["ism"] == records["ism"]["digest"]
    assert records["meta"]["identity"]["local"] == records["local_mr"]["digest"]
    for record in records.values():
        assert record["seconds"] >= 0 and record["finished"].endswith("Z") and len(record["digest"]) == 64


def test_a_downstream_option_change_reruns_only_downstream_stages(audited) -> None:
    config_path, _, _ = audited
    audit = config_path.parent / "audit"
    notes = audit / "notes.txt"
    notes.write_text("the user's own file")
    committed = EffectsStore.open(str(audit / "effects.zarr"), mode="r").committed_by().tolist()
    calibration = (audit / "calibration.json").read_bytes()
    before = _global(config_path)
    pooled = (audit / "global_effects.parquet").read_bytes()
    cfg = yaml.safe_load(config_path.read_text())
    cfg["instruments"]["threshold"] = 2.0
    cfg["meta"] = {"method": "REML"}
    changed = config_path.with_name("changed.yaml")
    changed.write_text(yaml.safe_dump(cfg))
    try:
        lines: list[str] = []
        summary = run_audit(load_config(changed), echo=lines.append)
        assert summary.stages["calibration"].startswith("reused: ")
        assert "0 chunks computed" in summary.stages["ism"]
        assert summary.stages["local MR"].startswith("4 chunks computed")
        assert not summary.stages["meta"].startswith("reused") and not summary.stages["report"].startswith("reused")
        assert EffectsStore.open(str(audit / "effects.zarr"), mode="r").committed_by().tolist() == committed
        assert (audit / "calibration.json").read_bytes() == calibration
        after = _global(config_path)
        assert {r["meta_method"] for r in after.values()} == {"REML"}
        assert after[("GATA", "TAL1", "deepmr")]["estimate"] != before[("GATA", "TAL1", "deepmr")]["estimate"]
        local = json.loads((audit / ".dmr_ray" / "stages" / "local_mr.json").read_text())
        assert local["identity"]["options"]["threshold"] == 2.0
    finally:
        # back to the module's configuration: only the downstream stages rerun again
        summary = run_audit(load_config(config_path), echo=lambda _: None)
        assert summary.stages["local MR"].startswith("4 chunks computed")
        assert "0 chunks computed" in summary.stages["ism"]
    assert (audit / "global_effects.parquet").read_bytes() == pooled
    assert notes.read_text() == "the user's own file"


def test_overwrite_recomputes_what_dmr_ray_wrote_and_keeps_the_users_files(audited) -> None:
    config_path, _, _ = audited
    audit = config_path.parent / "audit"
    (audit / "mine").mkdir(exist_ok=True)
    (audit / "mine" / "notes.txt").write_text("keep me")
    committed = set(EffectsStore.open(str(audit / "effects.zarr"), mode="r").committed_by().tolist())
    pooled = (audit / "global_effects.parquet").read_bytes()
    summary = run_audit(load_config(config_path), overwrite=True, echo=lambda _: None)
    assert "4 chunks computed, 0 already complete" in summary.stages["ism"]
    assert not summary.stages["calibration"].startswith("reused")
    recommitted = set(EffectsStore.open(str(audit / "effects.zarr"), mode="r").committed_by().tolist())
    assert len(recommitted) == 1 and not recommitted & committed
    assert (audit / "global_effects.parquet").read_bytes() == pooled  # the same numbers again
    assert (audit / "mine" / "notes.txt").read_text() == "keep me"


def test_overwrite_of_a_directory_that_is_not_an_audit_is_refused(prepared, tmp_path) -> None:
    config_path, _ = prepared
    cfg = yaml.safe_load(config_path.read_text())
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("mine")
    cfg.update(out=str(tmp_path / "results"), store=str(config_path.parent / cfg["store"]))
    cfg["model"] = str(config_path.parent / cfg["model"])
    with pytest.raises(ResumeConflictError, match="results: --overwrite refused: not a dmr_ray audit directory"):
        run_audit(load_config_from(cfg, tmp_path), overwrite=True)
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["notes.txt"]


def load_config_from(cfg: dict, directory: Path):
    """Write ``cfg`` as YAML in ``directory`` and load it."""
    path = directory / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


@pytest.mark.slow
def test_ray_job_submit_against_a_local_head(prepared, tmp_path, ray_job_head) -> None:
    """The README's ``ray job submit`` for real: a head started with ``ray start --head`` on
    127.0.0.1 with token authentication, the token read from a secret file
    (``RAY_AUTH_TOKEN_PATH``), and ``python jobs/run.py`` submitted from a checkout."""
    config_path, _ = prepared
    cfg = yaml.safe_load(config_path.read_text())
    cfg["out"] = str(tmp_path / "audit")
    cfg["report"] = {"enabled": False}
    cfg.pop("ray", None)
    for key in ("store", "model"):
        cfg[key] = str(config_path.parent / cfg[key])
    cfg["calibration"] = {"method": "none"}
    job_config = tmp_path / "job.yaml"
    job_config.write_text(yaml.safe_dump(cfg))
    head = ray_job_head
    # Without RAY_AUTH_MODE=token the client sends no token, and the job server refuses it.
    refused = subprocess.run(
        [head.ray, "job", "list", "--address", head.address],
        env={**head.env, "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "Missing authentication token" in refused.stdout + refused.stderr
    submit = head.submit(
        "--working-dir",
        ".",
        "--entrypoint-num-cpus",
        "0",
        "--",
        "python",
        "jobs/run.py",
        str(job_config),
        cwd=checkout(tmp_path / "checkout"),
    )
    assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-4000:]
    assert "succeeded" in submit.stdout.lower()
    assert f"audit written to {tmp_path / 'audit'}" in submit.stdout
    table = pq.read_table(tmp_path / "audit" / "global_effects.parquet")
    assert table.num_rows == 4  # 2 ordered pairs x 2 methods
    assert np.isfinite(table.column("estimate").to_numpy()).all()
    assert (tmp_path / "audit" / ".dmr_ray" / "stages" / "meta.json").exists()

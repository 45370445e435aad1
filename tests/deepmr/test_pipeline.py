"""A Deep MR audit end to end on a small simulation with a planted GATA -> TAL1 effect."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from dmr_ray.config import load_config
from dmr_ray.deepmr import pipeline
from dmr_ray.deepmr.pipeline import run_audit
from dmr_ray.deepmr.stages import part_path
from dmr_ray.demo import DemoSettings, prepare_demo

# The demo's training recipe (a weaker ensemble underfits the planted slope); fewer sequences.
SMALL = DemoSettings(n_calibration=400, n_audit=32)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, dict]:
    """Simulated data, a trained 3-member ensemble, stores and an audit config."""
    out = tmp_path_factory.mktemp("demo")
    config_path, truth = prepare_demo(out, seed=3, settings=SMALL)
    cfg = yaml.safe_load(config_path.read_text())
    cfg["methods"]["estimators"] = ["deepmr", "ivw"]
    cfg["ism"] = {"actors": 1, "chunk_size": 8}
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_job_submit_against_a_local_head(prepared, tmp_path) -> None:
    """A real ``ray job submit`` to a head started on 127.0.0.1 for this test."""
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

    ray_bin = Path(sys.executable).parent / "ray"
    ray_cmd = str(ray_bin) if ray_bin.exists() else shutil.which("ray")
    gcs, dashboard = _free_port(), _free_port()
    # Ray 2.60 heads require a token; this head and its clients share a fresh one.
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    env.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Unix socket paths are capped
    head = subprocess.Popen(
        [
            ray_cmd,
            "start",
            "--head",
            "--block",
            f"--port={gcs}",
            "--num-cpus=2",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            "--include-dashboard=true",
            f"--temp-dir={temp_dir}",
            # Another Ray instance (this test session's) already holds the default agent ports.
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        address = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run(
                [ray_cmd, "job", "list", "--address", address], env=env, capture_output=True, text=True
            )
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, f"Ray head did not come up: {probe.stderr[-2000:]}"
            time.sleep(2)
        submit_cmd = [
            ray_cmd,
            "job",
            "submit",
            "--address",
            address,
            "--entrypoint-num-cpus",
            "0",
            "--",
            sys.executable,
            str(REPO / "jobs" / "deep_mr.py"),
            str(job_config),
        ]
        while True:
            submit = subprocess.run(submit_cmd, env=env, capture_output=True, text=True, timeout=600)
            # The job agent can come up after the job API answers; Ray asks to try again.
            if "No available agent" not in submit.stderr or time.monotonic() > deadline + 120:
                break
            time.sleep(3)
        assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-4000:]
        assert "succeeded" in submit.stdout.lower()
        table = pq.read_table(tmp_path / "audit" / "global_effects.parquet")
        assert table.num_rows == 4  # 2 ordered pairs x 2 methods
        assert np.isfinite(table.column("estimate").to_numpy()).all()
    finally:
        os.killpg(head.pid, 15)
        head.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)

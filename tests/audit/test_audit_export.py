"""Exported manifests parse and carry the plan's schedule, entrypoint, resources and a token
taken from a secret (never inline)."""

from __future__ import annotations

import ast
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from audit_support import write_plan

from dmr_ray.audit import load_plan
from dmr_ray.audit.export import export_plan, plan_digest
from dmr_ray.cli import main
from dmr_ray.errors import InputError

DEPLOY = {
    "image": "registry.example/dmr-ray:1",
    "working_dir": "/opt/dmr_ray",
    "workers": 3,
    "worker_cpus": 12,
    "worker_gpus": 1,
    "worker_memory": "48Gi",
    "address": "http://audit-head:8265",
    "token_secret": "lab-ray-token",
}
ENTRY = "python /opt/dmr_ray/jobs/audit.py /opt/dmr_ray/plan.yaml"


@pytest.fixture()
def plan_path(tmp_path, tiny_inputs) -> Path:
    return write_plan(tmp_path, tiny_inputs, deploy=DEPLOY)


def _export(plan_path: Path, target: str) -> dict[str, str]:
    out = plan_path.parent / target
    assert main(["audit", "export", str(plan_path), "--to", target, "--out", str(out)]) == 0
    return {p.name: p.read_text() for p in sorted(out.iterdir())}


def _containers(cluster: dict) -> list[dict]:
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def _check_cluster(spec: dict) -> None:
    assert spec["entrypoint"] == ENTRY
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token", "secretName": "lab-ray-token"}
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["replicas"] == 3
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "12", "memory": "48Gi", "nvidia.com/gpu": "1"}
    assert {c["image"] for c in _containers(cluster)} == {"registry.example/dmr-ray:1"}


def test_rayjob(plan_path) -> None:
    (text,) = _export(plan_path, "rayjob").values()
    document = yaml.safe_load(text)
    assert (document["apiVersion"], document["kind"]) == ("ray.io/v1", "RayJob")
    assert document["metadata"]["name"] == "dmr-audit-tiny"
    _check_cluster(document["spec"])
    assert document["spec"]["shutdownAfterJobFinishes"] is True


def test_raycronjob_is_marked_alpha_behind_its_feature_gate(plan_path) -> None:
    (text,) = _export(plan_path, "raycronjob").values()
    document = yaml.safe_load(text)
    assert document["kind"] == "RayCronJob" and document["spec"]["schedule"] == "0 3 * * 1"
    _check_cluster(document["spec"]["jobTemplate"])
    assert "ALPHA" in text and "KubeRay >= 1.6" in text and "feature-gates=RayCronJob=true" in text


def test_cronjob_submits_once_per_day_with_the_token_from_a_secret(plan_path) -> None:
    (text,) = _export(plan_path, "cronjob").values()
    document = yaml.safe_load(text)
    assert (document["apiVersion"], document["kind"]) == ("batch/v1", "CronJob")
    spec = document["spec"]
    assert spec["schedule"] == "0 3 * * 1" and spec["concurrencyPolicy"] == "Forbid"
    (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    command = container["command"][-1]
    assert command.startswith("ray job submit --address http://audit-head:8265 ")
    assert f"--submission-id dmr-audit-tiny-{plan_digest(plan_path)}-$(date -u +%Y%m%d)" in command
    assert command.endswith(f"-- {ENTRY}")
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "lab-ray-token", "key": "auth_token"}


def test_slurm_script_and_scrontab_line(plan_path) -> None:
    files = _export(plan_path, "slurm")
    script, crontab = files["dmr-audit-tiny.sbatch"], files["dmr-audit-tiny.scrontab"]
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    for directive in ("--nodes=4", "--cpus-per-task=12", "--gpus-per-node=1"):
        assert f"#SBATCH {directive}\n" in script
    assert "ray start --head" in script and f'RAY_ADDRESS="$head_ip:$port" {ENTRY}' in script
    assert "export RAY_AUTH_MODE=token" in script and "RAY_AUTH_TOKEN_PATH" in script
    (line,) = [x for x in crontab.splitlines() if not x.startswith("#")]
    assert line == "0 3 * * 1 sbatch /opt/dmr_ray/dmr-audit-tiny.sbatch"


def test_airflow_dag(plan_path) -> None:
    (text,) = _export(plan_path, "airflow").values()
    tree = ast.parse(text)
    calls = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            literal = [k for k in node.keywords if not isinstance(k.value, ast.Call)]
            calls[node.func.id] = {k.arg: ast.literal_eval(k.value) for k in literal}
    assert calls["DAG"]["schedule"] == "0 3 * * 1" and calls["DAG"]["catchup"] is False
    operator = calls["RaySubmitJobOperator"]
    assert operator["entrypoint"] == ENTRY and operator["cluster_address"] == "http://audit-head:8265"
    assert operator["submission_id"] == f"dmr-audit-tiny-{plan_digest(plan_path)}-{{{{ ds_nodash }}}}"
    assert "from airflow.providers.google.cloud.operators.ray import RaySubmitJobOperator" in text


def test_no_manifest_holds_a_token_and_a_scheduled_target_needs_a_schedule(tmp_path, tiny_inputs, monkeypatch) -> None:
    token = "5ecret" * 8
    (tmp_path / "token").write_text(token)
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    path = write_plan(tmp_path, tiny_inputs, deploy={**DEPLOY, "token_path": str(tmp_path / "token")})
    for target in ("rayjob", "raycronjob", "cronjob", "slurm", "airflow"):
        for text in _export(path, target).values():
            assert token not in text
            assert "lab-ray-token" in text or target in ("slurm", "airflow")  # Kubernetes: the secret's name
    unscheduled = write_plan(tmp_path, tiny_inputs)
    plan = yaml.safe_load(unscheduled.read_text())
    del plan["schedule"]
    unscheduled.write_text(yaml.safe_dump(plan))
    with pytest.raises(InputError, match="schedule: the plan has none"):
        export_plan(load_plan(unscheduled), unscheduled, "cronjob", tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_jobs_audit_is_the_cli_entrypoint(monkeypatch, capsys) -> None:
    script = Path(__file__).resolve().parents[2] / "jobs" / "audit.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0 and "usage: dmr-ray audit run" in capsys.readouterr().out

"""The exported CronJob's command for real: ``ray job submit --submission-id ... -- python
jobs/audit.py PLAN`` against a local head with token authentication. A second submission with
the same id (a double fire) is refused by Ray. (A rerun computing nothing is tested in process.)"""

from __future__ import annotations

import json

import pytest
import yaml
from audit_support import write_plan
from ray_head import checkout

from dmr_ray.audit import load_plan
from dmr_ray.audit.export import cronjob


def _summary(stdout: str) -> dict:
    start = stdout.index('{\n  "computed"')
    return json.loads(stdout[start : stdout.index("\n}", start) + 2])


@pytest.mark.slow
def test_ray_job_submit_of_jobs_audit(tmp_path, tiny_inputs, ray_job_head) -> None:
    path = write_plan(tmp_path, tiny_inputs, ("v1",), deploy={"working_dir": ".", "plan": str(tmp_path / "plan.yaml")})
    plan = load_plan(path)
    (manifest,) = cronjob(plan, path).values()
    command = yaml.safe_load(manifest)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    entrypoint = command[-1].split(" -- ", 1)[1].split()
    assert entrypoint == ["python", "./jobs/audit.py", str(path)]
    code = checkout(tmp_path / "checkout")
    head = ray_job_head
    args = ["--working-dir", ".", "--entrypoint-num-cpus", "0"]
    first = head.submit(*args, "--submission-id", "audit-once", "--", *entrypoint, "--json", cwd=code)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "succeeded" in first.stdout.lower()
    summary = _summary(first.stdout)
    assert (summary["computed"], summary["skipped"], summary["failed"]) == (1, 0, 0)
    key = summary["cells"][0]["key"]
    assert (tmp_path / "out" / "cells" / key / "COMPLETE").exists()

    again = head.submit(*args, "--submission-id", "audit-once", "--", *entrypoint, cwd=code)
    assert again.returncode != 0 and "audit-once" in again.stdout + again.stderr

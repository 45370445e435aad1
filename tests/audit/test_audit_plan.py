"""Audit plans: validation errors name the file and the field; cells expand as asked."""

from __future__ import annotations

import pytest
import yaml
from audit_support import write_plan

from dmr_ray.audit.cells import expand_cells
from dmr_ray.audit.plan import load_plan
from dmr_ray.errors import ConfigError


def _edit(path, **changes):
    plan = yaml.safe_load(path.read_text())
    plan.update(changes)
    path.write_text(yaml.safe_dump(plan))
    return path


def test_a_plan_loads_with_paths_resolved_and_the_full_matrix(tmp_path, tiny_inputs) -> None:
    plan = load_plan(write_plan(tmp_path, tiny_inputs, ("v1", "v2", "v3")))
    assert plan.schedule == "0 3 * * 1"
    assert plan.models[0].spec == tiny_inputs / "v1" / "model.yaml"
    assert [c.label for c in expand_cells(plan)] == [f"cnn@v{i} × seqs × deepmr" for i in (1, 2, 3)]
    assert plan.deploy.plan == "/home/ray/dmr_ray/plan.yaml"


def test_listed_cells_select_a_version_or_every_version(tmp_path, tiny_inputs) -> None:
    path = write_plan(tmp_path, tiny_inputs, ("v1", "v2", "v3"))
    _edit(path, cells=[{"model": "cnn@v2", "data": "seqs", "audit": "deepmr"}])
    assert [c.model.version for c in expand_cells(load_plan(path))] == ["v2"]
    _edit(path, cells=[{"model": "cnn", "data": "seqs", "audit": "deepmr"}])
    assert [c.model.version for c in expand_cells(load_plan(path))] == ["v1", "v2", "v3"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scedule": "0 3 * * 1"}, r"scedule: unknown field \(did you mean 'schedule'\?\)"),
        ({"schedule": "every monday"}, "schedule: 'every monday' is not a cron expression"),
        ({"audits": [{"name": "x", "kind": "deep_mri", "config": {}}]}, "audits.0.kind|audits\\[0\\].kind"),
        ({"cells": [{"model": "cnn@v9", "data": "seqs", "audit": "deepmr"}]}, r"cells\[0\].model: 'cnn@v9'"),
    ],
)
def test_invalid_plans_are_one_line_errors_naming_file_and_field(tmp_path, tiny_inputs, changes, message) -> None:
    path = _edit(write_plan(tmp_path, tiny_inputs), **changes)
    with pytest.raises(ConfigError, match=message) as error:
        load_plan(path)
    assert str(error.value).startswith(f"{path}: invalid configuration: ")
    assert "\n" not in str(error.value)


def test_repeated_model_versions_are_refused(tmp_path, tiny_inputs) -> None:
    path = write_plan(tmp_path, tiny_inputs, ("v1", "v1"))
    with pytest.raises(ConfigError, match=r"models: \['cnn@v1'\] appear more than once"):
        load_plan(path)


def test_an_invalid_audit_option_is_refused_when_the_plan_loads(tmp_path, tiny_inputs) -> None:
    audits = [{"name": "deepmr", "kind": "deep_mr", "config": {"instrumets": {"threshold": 2.0}}}]
    path = write_plan(tmp_path, tiny_inputs, audits=audits)
    message = r"audit 'deepmr': .*instrumets: unknown field \(did you mean 'instruments'\?\)"
    with pytest.raises(ConfigError, match=message):
        load_plan(path)
    assert not (tmp_path / "out").exists()

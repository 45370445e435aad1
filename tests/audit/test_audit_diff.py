"""Diffs between model versions: v2 is v1 with the outcome task negated, so every global effect
flips sign exactly; the diff must report the flip, and separated CIs exactly where v1's effect
was significant. Cells can also run as Ray tasks in placement groups."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest
import torch
from audit_support import write_plan

from dmr_ray.audit import load_plan, run_plan
from dmr_ray.audit.cells import CELLS, OUT
from dmr_ray.audit.diff import diff_plan
from dmr_ray.cli import main
from dmr_ray.errors import InputError

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("ray_local")


def test_diff_reports_a_planted_sign_flip(tmp_path, tiny_inputs, capsys) -> None:
    path = write_plan(tmp_path, tiny_inputs, ("v1", "v2", "v3"))
    plan = load_plan(path)
    run = run_plan(plan, only=["version=v1", "version=v2"], echo=lambda _: None)
    assert run.count("computed") == 2 and len(run.outcomes) == 2
    result = diff_plan(plan, "v1", "v2")
    (cell,) = result.cells
    assert cell.diff is not None and cell.from_key == run.outcomes[0].key
    v1 = pq.read_table(tmp_path / "out" / CELLS / cell.from_key / OUT / "global_effects.parquet").to_pylist()
    truth = {(r["exposure"], r["outcome"]): r for r in v1}
    assert len(cell.diff.rows) == len(truth) == 2
    for exposure, outcome, method, before, after, difference, separate, change in cell.diff.rows:
        row = truth[(exposure, outcome)]
        assert method == "ivw" and before == pytest.approx(row["estimate"])
        assert after == pytest.approx(-before, rel=1e-4, abs=1e-6)
        assert difference == pytest.approx(-2 * before, rel=1e-4, abs=1e-6)
        significant = row["ci_low"] > 0 or row["ci_high"] < 0
        assert separate == ("yes" if significant else "no") and change == ""
    assert result.page.exists() and (result.page.parent / "figure-0.png").stat().st_size > 1000
    assert "<img" in result.page.read_text() and "GATA" in result.page.read_text()

    assert main(["audit", "diff", str(path), "--from", "v1", "--to", "v3"]) == 0
    out = capsys.readouterr().out
    assert "not complete: cnn@v3" in out and "run `dmr-ray audit run` first" in out
    with pytest.raises(InputError, match="version 'v9' is not in the plan"):
        diff_plan(plan, "v1", "v9")


@pytest.mark.slow
def test_cells_run_as_ray_tasks_in_placement_groups(tmp_path, tiny_inputs) -> None:
    plan = load_plan(write_plan(tmp_path, tiny_inputs, ("v1", "v3"), cell_resources={"CPU": 1}))
    result = run_plan(plan, echo=lambda _: None)
    assert result.count("computed") == 2
    for outcome in result.outcomes:
        assert math.isfinite(outcome.metrics["max_abs_estimate"])
        assert (tmp_path / "out" / CELLS / outcome.key / "COMPLETE").exists()
    assert run_plan(plan, echo=lambda _: None).count("skipped") == 2

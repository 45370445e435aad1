"""``dmr-ray experiment deepsea`` at the tiny size: outputs well formed, resume, errors."""

from __future__ import annotations

import json

import pytest

from dmr_ray.cli import main
from dmr_ray.errors import ResumeConflictError
from dmr_ray.experiments import deepsea

TFS = ("CTCF", "FOXA1", "HNF4A", "CEBPA")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("exp") / "deepsea"
    argv = ["experiment", "deepsea", "--size", "tiny", "--out", str(out)]
    assert main(argv) == 0
    return out, argv


def test_summary_scores_every_pair_and_method(experiment) -> None:
    out, _ = experiment
    summary = json.loads((out / "summary.json").read_text())
    expected = {(tf, "DNase") for tf in TFS} | {("DNase", tf) for tf in TFS}
    rows = summary["pairs"]
    assert {(r["exposure"], r["outcome"], r["method"]) for r in rows} == {
        (*pair, method) for pair in expected for method in deepsea.METHODS
    }
    for r in rows:
        opener = r["outcome"] == "DNase" and r["exposure"] != "CEBPA"
        assert (r["planted"] > 0.05) if opener else (r["planted"] == 0.0), r
        assert r["significant"] == (r["p_value"] < 0.05)
        outcomes = {"recovered", "missed", "wrong sign", "false positive", "true negative", "not dominant"}
        assert r["outcome_of_test"] in outcomes
        assert (r["outcome_of_test"] == "not dominant") == (r["significant"] and r["direction"] == "not_dominant")
        assert r["local_coverage"] is None or 0.0 <= r["local_coverage"] <= 1.0
        assert isinstance(r["estimate"], float) and r["n_local"] <= 8  # NaN: no replicate estimate
    calls = summary["direction_calls"]
    assert {frozenset(c["pair"]) for c in calls} == {frozenset((tf, "DNase")) for tf in TFS}
    for c in calls:
        (tf,) = set(c["pair"]) - {"DNase"}
        assert c["planted_direction"] == (None if tf == "CEBPA" else [tf, "DNase"])
        assert isinstance(c["call_correct"], bool) and c["text"]
    assert set(summary["model_fit"]) == {*TFS, "DNase"}
    assert summary["headline"]["TF → DNase (planted)"]["deepmr"]["pairs"] == 4
    table = (out / "summary.md").read_text()
    assert "| FOXA1 → DNase | TF → DNase (planted) | deepmr |" in table and "## Direction calls" in table
    for name in ("estimates_vs_truth", "heatmap_truth", *(f"heatmap_{m}" for m in deepsea.METHODS)):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_trains_nothing_and_keeps_the_summary(experiment, monkeypatch) -> None:
    out, argv = experiment
    before = {p: p.read_bytes() for p in (out / "summary.json", out / "model" / "member0.safetensors")}

    def trained(*args, **kwargs):
        raise AssertionError("a finished member was retrained")

    monkeypatch.setattr("dmr_ray.models.training.train_ensemble", trained)
    assert main(argv) == 0
    assert all(p.read_bytes() == data for p, data in before.items())


def test_bad_options_are_one_line_before_any_output(tmp_path, capsys) -> None:
    out = tmp_path / "never"
    assert main(["experiment", "deepsea", "--size", "tiny", "--seed", "-1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed" in err
    with pytest.raises(deepsea.InputError, match="bogus"):
        deepsea.run_deepsea_experiment(out, size="bogus")
    assert not out.exists()


def test_overwrite_of_a_foreign_directory_is_refused(tmp_path) -> None:
    (tmp_path / "user.txt").write_text("mine")
    with pytest.raises(ResumeConflictError, match="not a dmr_ray"):
        deepsea.run_deepsea_experiment(tmp_path, size="tiny", overwrite=True)
    assert (tmp_path / "user.txt").read_text() == "mine"

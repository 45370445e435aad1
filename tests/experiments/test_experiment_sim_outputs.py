"""Tables and figures of the simulation experiment from constructed round records (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmr_ray.cli import main
from dmr_ray.experiments import plots, simulation, tables
from dmr_ray.experiments.combined import combine_simulation_summaries
from dmr_ray.experiments.directory import MARKER
from dmr_ray.experiments.simulation import METHODS, round_file, write_summary

PNG = b"\x89PNG\r\n\x1a\n"


def _method(truth: float, estimate: float, coverage: float, reverse_p: float) -> dict:
    return {
        "estimate": estimate,
        "ci_low": estimate - 0.5,
        "ci_high": estimate + 0.5,
        "p_value": 1e-4,
        "tau": 0.1,
        "global_covered": bool(abs(estimate - truth) <= 0.5),
        "global_covered_2tau": bool(abs(estimate - truth) <= 0.2),
        "reverse_estimate": 0.01,
        "reverse_p_value": reverse_p,
        "reverse_significant": reverse_p < 0.05,
        "false_direction": reverse_p < 0.05,
        "found": True,
        "n_local": 4,
        "local_coverage": coverage,
        "local_coverage_unconfounded": coverage / 2,
        "local_ci_width": 1.0,
        "power": 1.0,
    }


def _round(index: int, truth: float, estimates: dict[str, float], coverage: dict[str, float]) -> dict:
    local_truth = [truth - 0.1, truth, truth, truth + 0.1]
    return {
        "round": index,
        "alpha": 100.0,
        "effect": 1.0,
        "true_global": truth,
        "methods": {m: _method(truth, estimates[m], coverage[m], 0.01 if m == "ivw" else 0.5) for m in METHODS},
        "baseline": {"estimate": truth * 0.9, "ci_low": truth * 0.8, "ci_high": truth, "global_covered": True},
        "local": {
            m: [
                {"seq_id": f"sim{k:05d}", "truth": t, "estimate": t + 0.05, "ci_low": t - 0.2, "ci_high": t + 0.3}
                for k, t in enumerate(local_truth)
            ]
            for m in METHODS
        },
    }


TRUTHS = (1.0, 2.0, 4.0)


@pytest.fixture
def no_figures(monkeypatch):
    """Summaries without rendering figures (the tests that check figures do not use this)."""
    monkeypatch.setattr(plots, "write_experiment_figures", lambda summaries, out: [])


def _experiment(out: Path, scenario: str, offset: float = 0.0) -> dict:
    """Write three constructed rounds and the marker into ``out``, then summarise them."""
    coverages = (
        {"deepmr": 1.0, "ivw": 0.5, "weighted_median": 0.75},
        {"deepmr": 0.5, "ivw": 0.25, "weighted_median": 1.0},
    )
    for i, truth in enumerate(TRUTHS):
        estimates = {"deepmr": truth + offset, "ivw": truth * 0.5, "weighted_median": truth + 1.0}
        path = round_file(out, i)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_round(i, truth, estimates, coverages[i % 2])))
    identity = {"experiment": "simulation", "scenario": scenario, "size": "quick", "seed": 0}
    (out / MARKER).parent.mkdir(parents=True)
    (out / MARKER).write_text(json.dumps(identity))
    return write_summary(out, identity, len(TRUTHS))


def test_experiment_sim_summary_tables_and_figures(tmp_path) -> None:
    summary = _experiment(tmp_path, "sequence", offset=0.2)
    assert summary["figures"] == list(plots.FIGURES.values())
    for name in summary["figures"]:
        assert (tmp_path / name).read_bytes()[:8] == PNG
    markdown = (tmp_path / "summary.md").read_text()
    assert all(f"![{name}]({name})" in markdown for name in summary["figures"])
    assert "| Confounding | Method | Global CE (true) | Global CE (estimated) | Calibration |" in markdown
    seed = {row["method"]: row for row in summary["seed_table"]}
    assert set(seed) == {*METHODS, "naive_ratio"} and seed["deepmr"]["confounding"] == "Sequence-based"
    assert seed["deepmr"]["global_ce_true"]["mean"] == pytest.approx(np.mean(TRUTHS))
    assert seed["deepmr"]["global_ce_true"]["sd"] == pytest.approx(np.std(TRUTHS, ddof=1))
    assert seed["ivw"]["global_ce_estimated"]["mean"] == pytest.approx(0.5 * np.mean(TRUTHS))
    assert seed["deepmr"]["global_accuracy"] == pytest.approx(1.0)  # estimates are truth + 0.2
    assert seed["deepmr"]["global_coverage"] == 1.0 and seed["weighted_median"]["global_coverage"] == 0.0
    assert seed["deepmr"]["local_coverage"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)  # equal n_local per round
    assert "| Sequence-based | deepmr | 2.33 ± 1.53 | 2.53 ± 1.53; r = 1 |" in markdown
    agg = summary["aggregate"]
    assert agg["ivw"]["false_direction_rate"] == 1.0 and agg["deepmr"]["false_direction_rate"] == 0.0
    assert agg["ivw"]["reverse_significant_rate"] == 1.0 and agg["deepmr"]["found_rate"] == 1.0
    assert "local" not in summary["per_round"][0]  # kept in round.json only
    assert "local" in json.loads(round_file(tmp_path, 0).read_text())


def test_found_rate_counts_only_rounds_with_a_planted_effect() -> None:
    """A round whose drawn effect is 0 plants nothing: the planted direction cannot be found
    there, so it does not count against ``found_rate`` (it does count in the false-direction rate)."""
    estimates = dict.fromkeys(METHODS, 1.0)
    coverage = dict.fromkeys(METHODS, 1.0)
    rows = [_round(i, t, estimates, coverage) for i, t in enumerate(TRUTHS)]
    rows[1]["effect"] = 0.0
    for m in rows[1]["methods"].values():
        m["found"] = False
    rows[2]["methods"]["deepmr"]["found"] = False
    agg = simulation.aggregate(rows)
    assert agg["deepmr"]["found_rate"] == 0.5 and agg["ivw"]["found_rate"] == 1.0
    assert agg["ivw"]["false_direction_rate"] == 1.0  # reverse p 0.01 in every round, the effect-0 one too
    assert agg["deepmr"]["unplanted_finding_rate"] == 0.0
    rows[1]["methods"]["deepmr"]["found"] = True  # GATA → TAL1 a finding where nothing is planted
    agg = simulation.aggregate(rows)
    assert agg["deepmr"]["unplanted_finding_rate"] == pytest.approx(1 / 3)
    assert agg["deepmr"]["false_direction_rate"] == 0.0 and agg["deepmr"]["found_rate"] == 0.5


def test_experiment_sim_representative_round_is_nearest_the_pooled_coverage(tmp_path, no_figures) -> None:
    summary = _experiment(tmp_path, "none")
    rows = [json.loads(round_file(tmp_path, i).read_text()) for i in range(len(TRUTHS))]
    # deepmr pooled coverage 0.833: rounds 0 and 2 (1.0) are nearer than round 1 (0.5); the lower index wins
    chosen = plots.representative_round({**summary, "per_round": rows}, "deepmr")
    assert chosen is not None and chosen["round"] == 0
    assert plots.representative_round(summary, "deepmr") is None  # summary.json rows carry no local estimates


def test_experiment_sim_combined_table_across_scenarios(tmp_path, monkeypatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(plots, "write_experiment_figures", lambda summaries, out: [])
        both = _experiment(tmp_path / "both", "both")
        none = _experiment(tmp_path / "none", "none", offset=0.1)
    out = tmp_path / "combined"
    argv = ["experiment", "simulation-summary", str(tmp_path / "both"), str(tmp_path / "none"), "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "summary.json").read_text())
    assert [e["scenario"] for e in result["experiments"]] == ["none", "both"]  # scenario order, not argument order
    assert len(result["table"]) == 2 * (len(METHODS) + 1)
    for row in result["table"]:
        aggregate = (none if row["scenario"] == "none" else both)["aggregate"][row["method"]]
        for key in tables.SCORES:
            assert row[key] == aggregate.get(key), (row["scenario"], row["method"], key)
    assert result["figures"] == list(plots.FIGURES.values())
    for name in result["figures"]:
        assert (out / name).read_bytes()[:8] == PNG
    markdown = (out / "summary.md").read_text()
    assert "| none | quick | 3 | deepmr | 0.833 | 0.417 | 1 | 1 | 0 | 0 | 0 | 1 | 1 | 1 |" in markdown
    assert "| Both | ivw |" in markdown


def test_experiment_sim_combined_refuses_bad_inputs_before_writing(tmp_path, no_figures) -> None:
    _experiment(tmp_path / "a", "none")
    _experiment(tmp_path / "b", "none")
    out = tmp_path / "combined"
    with pytest.raises(simulation.InputError, match="same experiment"):
        combine_simulation_summaries([tmp_path / "a", tmp_path / "b"], out)
    with pytest.raises(simulation.InputError, match="no summary.json"):
        combine_simulation_summaries([tmp_path / "a", tmp_path / "missing"], out)
    assert not out.exists()
    (out).mkdir()
    (out / "user.txt").write_text("mine")
    with pytest.raises(simulation.InputError, match="not a dmr_ray simulation"):
        combine_simulation_summaries([tmp_path / "a"], out)
    assert sorted(p.name for p in out.iterdir()) == ["user.txt"]

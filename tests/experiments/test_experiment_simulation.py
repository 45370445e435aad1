"""``dmr-ray experiment simulation`` at the tiny size: scores, resume and errors."""

from __future__ import annotations

import json
import math

import pytest

from dmr_ray.cli import main
from dmr_ray.experiments import simulation

KEYS = {
    "global_accuracy",
    "global_coverage",
    "global_coverage_2tau",
    "global_coverage_unconfounded",
    "local_coverage",
    "local_coverage_unconfounded",
    "local_coverage_model",
    "reverse_coverage_model",
    "local_ci_width",
    "power",
    "false_direction_rate",
    "unplanted_finding_rate",
    "reverse_significant_rate",
    "found_rate",
}


def test_summary_has_every_method_and_fractions(experiment) -> None:
    out, _ = experiment
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "random" and len(summary["per_round"]) == 2
    aggregate = summary["aggregate"]
    for method in ("deepmr", "ivw", "weighted_median"):
        assert set(aggregate[method]) == KEYS
        assert aggregate[method]["global_accuracy"] is None  # fewer than 3 rounds
        for key in (
            "global_coverage",
            "global_coverage_2tau",
            "local_coverage",
            "power",
            "false_direction_rate",
            "unplanted_finding_rate",
            "reverse_significant_rate",
            "found_rate",
        ):
            assert 0.0 <= aggregate[method][key] <= 1.0, (method, key)
        assert aggregate[method]["local_ci_width"] > 0
    assert 0.0 <= aggregate["naive_ratio"]["global_coverage"] <= 1.0
    assert set(summary["model"]) == {
        "local_ratio_median",
        "local_ratio_median_unconfounded",
        "reverse_effect_mean",
        "direction_calls",
    }
    calls = summary["model"]["direction_calls"]
    assert set(calls) <= {"forward", "reverse", "both", "unresolved", "none", "sign_conflict", "untested"}
    assert sum(calls.values()) == pytest.approx(1.0)
    assert math.isfinite(summary["model"]["local_ratio_median"])
    for row in summary["per_round"]:
        assert row["true_global"] > 0 and row["true_global_unconfounded"] > 0  # the planted GATA -> TAL1 effect
        # b ~ Bernoulli(.5) shifts both counts; on the Anscombe scale that changes the local slopes
        assert row["true_global"] != pytest.approx(row["true_global_unconfounded"], rel=1e-3)
        assert row["scoring"] == simulation.SCORING
        assert row["methods"]["deepmr"]["n_local"] > 0
        for scores in row["methods"].values():
            # a false direction is a finding, so it is significant; dominance is tested (replicates)
            assert scores["reverse_significant"] or not scores["false_direction"]
            assert scores["dominance"] is not None and 0.0 <= scores["dominance"]["p_forward"] <= 1.0
    assert (out / "rounds" / "1" / "round.json").exists()
    assert "| random | deepmr |" in (out / "summary.md").read_text()


def test_rerun_computes_no_round(experiment, monkeypatch) -> None:
    out, argv = experiment
    before = (out / "rounds" / "0" / "round.json").read_bytes()

    def computed(*args, **kwargs):
        raise AssertionError("a finished round was recomputed")

    monkeypatch.setattr(simulation, "run_round", computed)
    assert main(argv) == 0
    assert (out / "rounds" / "0" / "round.json").read_bytes() == before


def test_round_of_an_older_scoring_is_scored_again_from_its_audit(experiment, monkeypatch) -> None:
    """A record of another scoring version is rewritten from the stored audit, with the same
    scores a fresh computation gave, and nothing is simulated into the round, trained or audited."""
    out, argv = experiment
    path = out / "rounds" / "1" / "round.json"
    fresh = path.read_text()
    old = json.loads(fresh)
    old["scoring"] = 1
    del old["true_global_unconfounded"]
    path.write_text(json.dumps(old))

    def computed(*args, **kwargs):
        raise AssertionError("a finished round was recomputed")

    monkeypatch.setattr(simulation, "run_round", computed)
    assert main(argv) == 0
    assert json.loads(path.read_text()) == json.loads(fresh)
    summary = json.loads((out / "summary.json").read_text())
    assert all(r["scoring"] == simulation.SCORING for r in summary["per_round"])


def test_round_draws_are_seeded_by_index() -> None:
    assert simulation.RoundDraw.for_round(0, 3) == simulation.RoundDraw.for_round(0, 3)
    assert simulation.RoundDraw.for_round(0, 3) != simulation.RoundDraw.for_round(0, 4)


def test_help(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["experiment", "simulation", "--help"])
    assert exc.value.code == 0
    assert "--scenario" in capsys.readouterr().out


def test_bad_scenario_is_one_line_before_any_output(tmp_path, capsys) -> None:
    out = tmp_path / "never"
    assert main(["experiment", "simulation", "--scenario", "bogus", "--rounds", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bogus" in err
    assert not out.exists()
    assert main(["experiment", "simulation", "--scenario", "nonee", "--rounds", "1", "--out", str(out)]) == 2
    assert "did you mean 'none'" in capsys.readouterr().err and not out.exists()


def test_foreign_directory_is_refused(tmp_path) -> None:
    (tmp_path / "user.txt").write_text("mine")
    with pytest.raises(simulation.InputError, match="not a dmr_ray simulation"):
        simulation.run_simulation_experiment("none", 1, tmp_path, size="tiny")
    assert (tmp_path / "user.txt").read_text() == "mine"


def test_a_small_cnn_directory_of_before_the_default_changed_is_refused_with_the_flag_to_resume_it(tmp_path) -> None:
    """A directory whose identity has no ``architecture`` holds small_cnn rounds: asked with the
    pooled_cnn default, the refusal says how to resume it; the other way round it says nothing
    of the kind. Nothing is written either time."""
    from dmr_ray.experiments.directory import MARKER

    marker = tmp_path / MARKER
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"experiment": "simulation", "scenario": "none", "size": "tiny", "seed": 0}))
    with pytest.raises(simulation.InputError) as refused:
        simulation.run_simulation_experiment("none", 1, tmp_path, size="tiny")
    assert "architecture absent (asked: 'pooled_cnn')" in str(refused.value)
    assert "add --architecture small_cnn to resume it" in str(refused.value)
    marker.write_text(json.dumps({"experiment": "simulation", "scenario": "none", "size": "tiny", "seed": 0,
                                  "architecture": "pooled_cnn"}))  # fmt: skip
    with pytest.raises(simulation.InputError) as refused:
        simulation.run_simulation_experiment("none", 1, tmp_path, size="tiny", architecture="small_cnn")
    assert "architecture 'pooled_cnn' (asked: absent)" in str(refused.value) and "resume" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [MARKER.parent.name, MARKER.name]


def test_bad_heads_is_refused_before_any_output(tmp_path) -> None:
    out = tmp_path / "never"
    with pytest.raises(simulation.InputError, match="heads: 'towers'"):
        simulation.run_simulation_experiment("none", 1, out, size="tiny", heads="towers")
    assert not out.exists()


def test_separate_heads_train_one_tower_per_task(tmp_path) -> None:
    """``--heads separate`` reaches the round's size and the trained spec: one dense tower per task."""
    import yaml

    from dmr_ray.demo import train_simulation_ensemble
    from dmr_ray.models import load_model_spec
    from dmr_ray.sim import simulate_tf_coop

    size = simulation.round_size({"size": "tiny", "heads": "separate"})
    assert size.settings.heads == "separate" and simulation.round_size({"size": "tiny"}).settings.heads == "shared"
    sim = simulate_tf_coop(60, seed=1)
    spec = train_simulation_ensemble(
        sim.tokens, sim.labels, tmp_path, members=2, epochs=1, batch_size=30, learning_rate=1e-3, length=100, seed=0,
        heads="separate",
    )  # fmt: skip
    assert yaml.safe_load(spec.read_text())["kwargs"]["heads"] == "separate"
    members = load_model_spec(spec).build_members()
    assert len(members) == 2 and all(len(m.head.towers) == 2 for m in members)


def test_pooled_architecture_reaches_the_size_the_identity_and_the_spec(tmp_path) -> None:
    """``--architecture pooled_cnn``: its recipe in the round's size, a trained spec of that
    network, and refusals (unknown name, towers with it) before anything is written."""
    import yaml

    from dmr_ray.demo import train_simulation_ensemble
    from dmr_ray.models import load_model_spec
    from dmr_ray.models.architectures import PooledCNN
    from dmr_ray.sim import simulate_tf_coop

    tiny = simulation.SIZES["tiny"].settings
    pooled = simulation.round_size({"size": "tiny", "architecture": "pooled_cnn"}).settings
    legacy = simulation.round_size({"size": "tiny"}).settings
    quick = simulation.round_size({"size": "quick", "architecture": "pooled_cnn"}).settings
    assert (pooled.architecture, pooled.epochs, pooled.learning_rate) == ("pooled_cnn", 4 * tiny.epochs, 1e-3)
    assert (quick.epochs, quick.n_train) == (100, 4000)  # the recipe the 50-round study ran
    assert (legacy.architecture, legacy.epochs, legacy.learning_rate) == ("small_cnn", tiny.epochs, tiny.learning_rate)
    sim = simulate_tf_coop(60, seed=1)
    spec = train_simulation_ensemble(
        sim.tokens, sim.labels, tmp_path / "model", members=2, epochs=1, batch_size=30, learning_rate=1e-3,
        length=100, seed=0, architecture="pooled_cnn",
    )  # fmt: skip
    assert yaml.safe_load(spec.read_text())["entrypoint"] == "dmr_ray.models.architectures:pooled_cnn"
    members = load_model_spec(spec).build_members()
    assert len(members) == 2 and all(isinstance(m, PooledCNN) for m in members)
    out = tmp_path / "never"
    with pytest.raises(simulation.InputError, match="architecture: 'resnet'"):
        simulation.run_simulation_experiment("none", 1, out, size="tiny", architecture="resnet")
    with pytest.raises(simulation.InputError, match="heads: 'separate' is small_cnn's"):
        simulation.run_simulation_experiment("none", 1, out, size="tiny", architecture="pooled_cnn", heads="separate")
    assert not out.exists()


def test_a_demo_identity_written_before_the_architecture_setting_is_kept() -> None:
    """Settings added later are left out of the demo's identity at their defaults."""
    from dataclasses import replace

    from dmr_ray.demo import DemoSettings, demo_identity

    recorded = demo_identity(0, DemoSettings())["settings"]
    assert "architecture" not in recorded and recorded["heads"] == "shared"
    assert (
        demo_identity(0, replace(DemoSettings(), architecture="pooled_cnn"))["settings"]["architecture"] == "pooled_cnn"
    )

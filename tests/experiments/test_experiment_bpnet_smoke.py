"""``dmr-ray experiment bpnet`` at the tiny size: outputs, resume, directory safety, errors."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import yaml

from dmr_ray.alphabet import tokens_to_onehot
from dmr_ray.cli import main
from dmr_ray.errors import InputError
from dmr_ray.experiments import bpnet
from dmr_ray.experiments.directory import claim_experiment_directory
from dmr_ray.models.architectures import bpnet as bpnet_model
from dmr_ray.sim.bpnet_grammar import TASKS

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("bpnet") / "exp"
    argv = ["experiment", "bpnet", "--size", "tiny", "--out", str(out)]
    assert main(argv) == 0
    return out, argv


def test_summary_scores_all_twelve_pairs_against_the_truth(experiment) -> None:
    out, _ = experiment
    summary = json.loads((out / "summary.json").read_text())
    assert summary["size"] == "tiny"
    pairs = {(p["exposure"], p["outcome"]): p for p in summary["pairs"]}
    assert set(pairs) == {(x, y) for x in TASKS for y in TASKS if x != y}
    planted = {pair for pair, p in pairs.items() if p["planted"]}
    assert planted == {("Oct4", y) for y in TASKS if y != "Oct4"} | {("Sox2", "Nanog"), ("Sox2", "Klf4")}
    for pair, p in pairs.items():
        assert (p["true_global"] > 0.05) if p["planted"] else (abs(p["true_global"]) < 0.02), pair
        for method in ("deepmr", "ivw", "weighted_median"):
            m = p["methods"][method]
            assert m["call"] in {"+", "−", "(+)", "(−)", "0"} and m["n_local"] > 0
            assert m["ci_low"] <= m["estimate"] <= m["ci_high"]
            assert m["correct"] == (m["call"] == "+" if p["planted"] else m["call"] not in {"+", "−"})
            # a call in brackets is significant but does not dominate the reverse pair
            assert (m["call"].startswith("(")) == (m["significant"] and m["direction"] == "not_dominant")
            assert (m["call"] == "0") == (not m["significant"])
    for a in summary["aggregate"].values():
        assert 0 <= a["planted_found"] <= a["n_planted"] == 5 and a["n_unplanted"] == 7
        assert set(a["unplanted_called"]) <= set(a["unplanted_significant"])
    for path in summary["figures"].values():
        assert (out / path).read_bytes().startswith(PNG)
    table = (out / "summary.md").read_text()
    assert len(re.findall(r"^\| \w+ → \w+ \| yes \|", table, re.M)) == 5
    assert len(re.findall(r"^\| \w+ → \w+ \| no \|", table, re.M)) == 7


def test_rerun_trains_nothing_and_reuses_the_audit(experiment, monkeypatch, capsys) -> None:
    out, argv = experiment
    member = out / "work" / "model" / "member0.safetensors"
    written = member.stat().st_mtime_ns

    def trained(*args, **kwargs):
        raise AssertionError("a kept member was retrained")

    monkeypatch.setattr(bpnet, "_train_member", trained)
    assert main(argv) == 0
    assert member.stat().st_mtime_ns == written
    printed = capsys.readouterr().out
    assert "0 of 2 members trained" in printed and "reused" in printed  # the audit's meta stage
    assert json.loads((out / "summary.json").read_text())["pairs"]


def test_overwrite_removes_only_what_the_experiment_wrote(tmp_path) -> None:
    identity = {"experiment": "bpnet", "size": "tiny", "seed": 0}
    claim_experiment_directory(tmp_path, identity, bpnet.OUTPUTS, overwrite=False)
    (tmp_path / "work").mkdir()
    (tmp_path / "summary.md").write_text("old")
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(InputError, match=r"holds the experiment .bpnet. with other inputs: seed 0 \(asked: 1\)"):
        claim_experiment_directory(tmp_path, {**identity, "seed": 1}, bpnet.OUTPUTS, overwrite=False)
    claim_experiment_directory(tmp_path, {**identity, "seed": 1}, bpnet.OUTPUTS, overwrite=True)
    assert not (tmp_path / "work").exists() and not (tmp_path / "summary.md").exists()
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_a_directory_of_another_grammar_is_refused_naming_what_changed(experiment, tmp_path) -> None:
    out, _ = experiment
    marker = json.loads((out / ".dmr_ray" / "experiment.json").read_text())
    assert marker["settings"]["instruments"] == bpnet.INSTRUMENTS
    assert yaml.safe_load((out / "work" / "audit.yaml").read_text())["instruments"]["direction_against"] == "all"
    marker["settings"]["grammar"]["sox2_recruited"] = 0.0  # as if trained on an earlier grammar
    (tmp_path / ".dmr_ray").mkdir()
    (tmp_path / ".dmr_ray" / "experiment.json").write_text(json.dumps(marker))
    with pytest.raises(InputError, match=r"other inputs: settings\.grammar\.sox2_recruited 0\.0 \(asked: 20\.0\); use"):
        bpnet.run_bpnet_experiment(tmp_path, size="tiny")


def test_foreign_directory_and_bad_size_are_refused_before_output(tmp_path, capsys) -> None:
    (tmp_path / "user.txt").write_text("mine")
    with pytest.raises(InputError, match="not a dmr_ray bpnet experiment"):
        bpnet.run_bpnet_experiment(tmp_path, size="tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user.txt"]
    out = tmp_path / "never"
    assert main(["experiment", "bpnet", "--size", "huge", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "huge" in err
    assert not out.exists()


def test_training_targets_match_the_view_layout() -> None:
    rng = np.random.default_rng(0)
    profiles = rng.poisson(0.3, size=(3, 4, 2, 20))
    profiles[0, 1, 0] = 0  # an empty strand: uniform shape
    targets = bpnet.training_targets(profiles, profile_weight=0.04)
    scale = math.sqrt(21)
    np.testing.assert_allclose(targets[:, :8], np.log1p(profiles.sum(-1)).reshape(3, 8) * scale, rtol=1e-6)
    shapes = targets[:, 8:].reshape(3, 4, 2, 20) / (20 * 0.2)
    np.testing.assert_allclose(shapes.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(shapes[0, 1, 0], 1 / 20, rtol=1e-6)
    torch.manual_seed(0)
    view = bpnet.ProfileCountView(bpnet_model(filters=4, n_layers=1, profile_kernel=5), 20, 0.04)
    onehot = torch.from_numpy(tokens_to_onehot(rng.integers(0, 4, size=(3, 20)).astype(np.uint8)))
    out = view(onehot)
    assert out.shape == targets.shape
    counts = view.model(onehot)["counts"].flatten(1) * scale
    torch.testing.assert_close(out[:, :8], counts)

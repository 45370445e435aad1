"""The attribution benchmark end to end: engine, resume per part, summary, bad configurations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dmr_ray.attribution.benchmark import run_benchmark
from dmr_ray.attribution.config import AttributionConfig
from dmr_ray.attribution.curves import ORDERINGS, gap_curves
from dmr_ray.attribution.gaps import GAPS, prediction_gap
from dmr_ray.attribution.metrics import top_k
from dmr_ray.attribution.simdata import load_simulation
from dmr_ray.attribution.task import load_classifier, model_path, record_path
from dmr_ray.attribution.train import predict
from dmr_ray.config import config_from_dict
from dmr_ray.errors import ConfigError

# 4 classes × 40 samples, 24 disjoint pathways of 10 genes, 3 over-expressed per class: an easy task.
TINY = {
    "kind": "attribution",
    "simulation": {"name": "SIMU1", "n_samples": 160, "n_subclasses": 4, "n_pathways": 24, "pathways_per_class": 3},
    "training": {"epochs": 8},
    "smoothgrad": {"n_samples": 4},
    "gaps": {"n_random": 2, "curve_points": 5},
    "engine": {"actors": 0},
}


def tiny(out: Path, **changes) -> AttributionConfig:
    data = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return config_from_dict({**data, "out": str(out)})


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check_summary(summary: dict, methods: set[str], seeds: list[int]) -> None:
    """Fractions in [0, 1], means and sds over the per-seed values, curves for every ordering."""
    assert summary["seeds"] == seeds
    assert set(summary["methods"]) == methods
    assert summary["classifier"]["test_balanced_accuracy"] > 0.8
    for block in summary["methods"].values():
        assert block["accuracy"] == summary["classifier"]["test_balanced_accuracy"]
        for key in ("local_agreement", "global_agreement", *GAPS):
            assert 0 <= block[key] <= 1, key
            assert len(block["per_seed"][key]) == len(seeds)
            assert block[key] == pytest.approx(np.mean(block["per_seed"][key]))
            assert block[f"{key}_sd"] == pytest.approx(np.std(block["per_seed"][key]))
        assert set(block["curves"]) == {"counts", *ORDERINGS}


def test_benchmark_on_ray_writes_summary_with_the_original_pattern(tmp_path, ray_local):
    config = tiny(tmp_path / "bench", seeds=2, methods=["ig"], engine={"actors": 1, "threads": 1})
    result = run_benchmark(config)
    assert result.computed == {"classifier": 2, "ig": 2}
    summary = json.loads(result.summary.read_text())
    check_summary(summary, {"ig"}, [0, 1])
    ig = summary["methods"]["ig"]
    # The paper's pattern: the dataset-wide ranking recovers the biomarkers better than each sample's own.
    assert ig["global_agreement"] >= ig["local_agreement"] + 0.1
    # Local rankings are sufficient: masking the top genes first moves the prediction more than random.
    assert ig["pgi_local"] > ig["pgr"] > ig["pgu_local"]
    assert ig["converged"] and ig["max_abs_delta"] <= config.ig.tolerance
    table = (result.out / "summary.md").read_text()
    assert "| SIMU1 | ig |" in table and "PGU local | PGU global | PGI local | PGI global | PGR" in table
    for figure in ("agreement.png", "gap_curves.png"):
        assert (result.out / figure).read_bytes()[:4] == b"\x89PNG"


def test_rerun_computes_nothing_and_a_changed_option_reruns_only_what_it_affects(tmp_path):
    out = tmp_path / "bench"
    first = run_benchmark(tiny(out, seeds=2))
    assert first.computed == {"classifier": 2, "ig": 2, "saliency": 2, "smoothgrad": 2}
    records = {seed: record_path(out / "seeds", seed).stat().st_mtime_ns for seed in (0, 1)}
    digests = json.loads(record_path(out / "seeds", 0).read_text())["methods"]
    summary = json.loads(first.summary.read_text())
    check_summary(summary, {"ig", "saliency", "smoothgrad"}, [0, 1])

    again = run_benchmark(tiny(out, seeds=2))
    assert again.computed == {}
    assert "simulation" not in again.stages_run and "summary" not in again.stages_run
    assert {seed: record_path(out / "seeds", seed).stat().st_mtime_ns for seed in (0, 1)} == records
    assert json.loads(again.summary.read_text()) == summary

    noisier = run_benchmark(tiny(out, seeds=2, smoothgrad={"noise": 0.5}))
    assert noisier.computed == {"smoothgrad": 2}
    changed = json.loads(noisier.summary.read_text())["methods"]
    assert changed["ig"] == summary["methods"]["ig"]
    redone = json.loads(record_path(out / "seeds", 0).read_text())["methods"]
    assert redone["ig"] == digests["ig"]
    assert redone["smoothgrad"]["digest"] != digests["smoothgrad"]["digest"]

    more = run_benchmark(tiny(out, seeds=3, smoothgrad={"noise": 0.5}))
    assert more.computed == {"classifier": 1, "ig": 1, "saliency": 1, "smoothgrad": 1}

    retrained = run_benchmark(tiny(out, seeds=1, smoothgrad={"noise": 0.5}, training={"epochs": 6}))
    assert retrained.computed == {"classifier": 1, "ig": 1, "saliency": 1, "smoothgrad": 1}
    assert json.loads(retrained.summary.read_text())["seeds"] == [0]


def test_gap_curves_agree_with_the_prediction_gap():
    # With G = 2c features and step c, the prediction gap is the mean of the drops after
    # masking c and 2c features: the curve's points at c and G.
    rng = np.random.default_rng(3)
    model = torch.nn.Sequential(torch.nn.Linear(8, 3)).eval()
    x = rng.normal(size=(1, 8)).astype(np.float32)
    target = np.array([1])
    attributions = rng.normal(size=(1, 8))
    curves = gap_curves(model, x, target, attributions, points=50, seed=0)
    assert curves.counts.tolist() == list(range(1, 9))
    order = top_k(attributions, 8, np.random.default_rng(0).permutation(8))
    expected = prediction_gap(model, x, target, order, step=4)[0]
    assert 0.5 * (curves.drops["important_local"][3] + curves.drops["important_local"][7]) == pytest.approx(expected)
    ends = {name: drops[-1] for name, drops in curves.drops.items()}
    assert len(set(np.round(list(ends.values()), 12))) == 1  # everything masked: the same input


def test_stored_classifier_reproduces_its_predictions(tmp_path):
    out = tmp_path / "bench"
    config = tiny(out, seeds=1, methods=["saliency"], gaps={"enabled": False})
    run_benchmark(config)
    data = load_simulation(out / "simulation")
    record = json.loads(record_path(out / "seeds", 0).read_text())
    classifier = load_classifier(model_path(out / "seeds", 0).read_bytes(), "lr", data.n_classes)
    test = classifier.split.test
    predicted = predict(classifier.model, classifier.standardizer.transform(np.asarray(data.x[test])))
    accuracy = float(np.mean(predicted == data.y[test]))
    assert accuracy == pytest.approx(record["classifier"]["test_accuracy"])
    assert "pgr" not in json.loads((out / "summary.json").read_text())["methods"]["saliency"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"seeds": 0}, "seeds"),
        ({"model": "svm"}, "model"),
        ({"methods": []}, "methods"),
        ({"methods": ["ig", "ig"]}, "methods"),
        ({"methods": ["deeplift"]}, "methods"),
        ({"simulation": {"name": "SIMU9"}}, "simulation.name"),
        ({"simulation": {"pathways_per_class": 30}}, "simulation"),
        ({"ig": {"start_steps": 100, "max_steps": 50}}, "ig"),
        ({"smoothgrad": {"noise": -0.1}}, "smoothgrad.noise"),
        ({"gaps": {"step": 0}}, "gaps.step"),
        ({"gaps": {"steps": 10}}, "gaps.steps"),
        ({"engine": {"actors": -1}}, "engine"),
    ],
)
def test_bad_values_are_one_line_naming_the_field(tmp_path, changes, field):
    with pytest.raises(ConfigError) as err:
        tiny(tmp_path / "never", **changes)
    message = str(err.value)
    assert "\n" not in message and field in message
    assert not (tmp_path / "never").exists()

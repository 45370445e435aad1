"""The benchmark's summary: means and spreads over seeds, as JSON and as the original's README tables.

:func:`summarise` turns the per-seed records (:mod:`dmr_ray.attribution.task`) into the
``summary.json`` mapping: per method, each metric's mean over seeds and its ``_sd`` (numpy's
``std``, ddof 0, as the reference reports), the per-seed values, and the mean gap curves.
Fractions stay in [0, 1]; :func:`markdown` prints them ×100 in the layout of the tables of
mbonto/XAI_for_genomics's README (attribution.md §5): test balanced accuracy, prediction gaps
(PGU local, PGU global, PGI local, PGI global, PGR) and feature agreement (local / global).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dmr_ray.attribution.config import AttributionConfig
from dmr_ray.attribution.curves import ORDERINGS
from dmr_ray.attribution.gaps import GAPS

AGREEMENT = ("local_agreement", "global_agreement")
ACCURACY = ("test_balanced_accuracy", "test_accuracy", "train_accuracy")
MODEL_NAMES = {"lr": "LR", "mlp": "MLP"}


def _spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population sd (ddof 0) of ``values``."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std())


def summarise(config: AttributionConfig, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``summary.json`` mapping of a benchmark from its seeds' records (one per seed, in order)."""
    seeds = [record["seed"] for record in records]
    classifier: dict[str, Any] = {"per_seed": {}}
    for key in ACCURACY:
        values = [record["classifier"][key] for record in records]
        classifier[key], classifier[f"{key}_sd"] = _spread(values)
        classifier["per_seed"][key] = values
    methods = {}
    for method in config.methods:
        results = [record["methods"][method] for record in records]
        metrics = AGREEMENT + (GAPS if config.gaps.enabled else ())
        block: dict[str, Any] = {}
        for key in metrics:
            block[key], block[f"{key}_sd"] = _spread([r[key] for r in results])
        block["accuracy"] = classifier["test_balanced_accuracy"]
        block["accuracy_sd"] = classifier["test_balanced_accuracy_sd"]
        block["n_explained"] = [r["n_explained"] for r in results]
        if method == "ig":
            block["n_steps"] = [r["n_steps"] for r in results]
            block["max_abs_delta"] = max(r["max_abs_delta"] for r in results)
            block["converged"] = all(r["converged"] for r in results)
        block["per_seed"] = {key: [r[key] for r in results] for key in metrics}
        if config.gaps.enabled:
            curves = [r["curves"] for r in results]
            block["curves"] = {
                "counts": curves[0]["counts"],
                **{name: np.mean([c[name] for c in curves], axis=0).tolist() for name in ORDERINGS},
            }
        methods[method] = block
    lda = config.simulation.lda_config()
    return {
        "simulation": {
            "name": config.simulation.name,
            "seed": config.simulation.seed,
            "n_samples": lda.samples_per_subclass * lda.n_subclasses,
            "n_genes": lda.n_genes,
            "n_classes": lda.n_classes,
        },
        "model": config.model,
        "seeds": seeds,
        "sd": "population standard deviation over seeds (ddof 0)",
        "classifier": classifier,
        "methods": methods,
    }


def _cell(block: Mapping[str, Any], key: str, digits: int = 2) -> str:
    """``mean ± sd`` of ``block[key]`` in %."""
    return f"{100 * block[key]:.{digits}f} ± {100 * block[f'{key}_sd']:.{digits}f}"


def markdown(summary: Mapping[str, Any]) -> str:
    """The summary as the original's three README tables (values in %, mean ± sd over seeds)."""
    name = summary["simulation"]["name"]
    model = MODEL_NAMES[summary["model"]]
    methods = summary["methods"]
    lines = [
        f"# Attribution benchmark: {name}, {model}, {len(summary['seeds'])} seeds",
        "",
        f"{summary['simulation']['n_samples']} samples × {summary['simulation']['n_genes']} genes, "
        f"{summary['simulation']['n_classes']} classes, simulation seed {summary['simulation']['seed']}; "
        "mean ± sd over training seeds, in %.",
        "",
        "**Test balanced accuracy (%)**",
        "",
        f"| Dataset | {model} |",
        "|---|---|",
        f"| {name} | {_cell(summary['classifier'], 'test_balanced_accuracy', 1)} |",
    ]
    if all("pgr" in block for block in methods.values()):
        lines += [
            "",
            "**Prediction gaps (%)**",
            "",
            "| Dataset | Method | PGU local | PGU global | PGI local | PGI global | PGR |",
            "|---|---|---|---|---|---|---|",
        ]
        order = ("pgu_local", "pgu_global", "pgi_local", "pgi_global", "pgr")
        for method, block in methods.items():
            lines.append(f"| {name} | {method} | " + " | ".join(_cell(block, key) for key in order) + " |")
    lines += [
        "",
        "**Feature agreement (%), local / global**",
        "",
        f"| Dataset | Method | {model} without diffusion |",
        "|---|---|---|",
    ]
    for method, block in methods.items():
        lines.append(f"| {name} | {method} | {_cell(block, 'local_agreement')} / {_cell(block, 'global_agreement')} |")
    return "\n".join(lines) + "\n"

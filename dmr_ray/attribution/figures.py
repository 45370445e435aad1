"""The benchmark's figures, built as :class:`matplotlib.figure.Figure` objects (no pyplot).

* :func:`agreement_figure`: local and global feature agreement per method, bars at the mean
  over seeds with the ±sd spread and each seed as a dot.
* :func:`gap_curve_figure`: one panel per method, the mean prediction drop after masking the
  first features of each ordering (important first, unimportant first, local solid and
  global dashed, random dotted).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dmr_ray.attribution.tables import MODEL_NAMES

_STYLES = {
    "important_local": ("important, local", "C3", "-"),
    "important_global": ("important, global", "C3", "--"),
    "unimportant_local": ("unimportant, local", "C0", "-"),
    "unimportant_global": ("unimportant, global", "C0", "--"),
    "random": ("random", "0.4", ":"),
}


def _title(summary: Mapping[str, Any]) -> str:
    return f"{summary['simulation']['name']}, {MODEL_NAMES[summary['model']]}, {len(summary['seeds'])} seeds"


def agreement_figure(summary: Mapping[str, Any]) -> Figure:
    """Feature agreement (%) per method: local and global bars, mean ± sd over seeds, seeds as dots."""
    methods = summary["methods"]
    figure = Figure(figsize=(1.8 + 1.6 * len(methods), 3.6))
    axes = figure.subplots()
    positions = np.arange(len(methods))
    width = 0.38
    rng = np.random.default_rng(0)  # horizontal jitter of the seed dots only
    for offset, (key, label, colour) in zip(
        (-width / 2, width / 2), (("local_agreement", "local", "C1"), ("global_agreement", "global", "C2")), strict=True
    ):
        means = [100 * block[key] for block in methods.values()]
        sds = [100 * block[f"{key}_sd"] for block in methods.values()]
        axes.bar(positions + offset, means, width, yerr=sds, capsize=3, color=colour, alpha=0.75, label=label)
        for position, block in zip(positions, methods.values(), strict=True):
            values = 100 * np.asarray(block["per_seed"][key])
            jitter = rng.uniform(-width / 6, width / 6, len(values))
            axes.scatter(position + offset + jitter, values, s=9, color="k", zorder=3)
    axes.set_xticks(positions, list(methods))
    axes.set_ylim(0, 105)
    axes.set_ylabel("feature agreement (%)")
    axes.set_title(_title(summary), fontsize=10)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def gap_curve_figure(summary: Mapping[str, Any]) -> Figure:
    """Mean prediction drop (%) against features masked, one panel per method."""
    methods = {name: block for name, block in summary["methods"].items() if "curves" in block}
    figure = Figure(figsize=(3.4 * max(1, len(methods)), 3.4))
    panels = figure.subplots(1, max(1, len(methods)), squeeze=False)[0]
    if not methods:
        panels[0].text(0.5, 0.5, "prediction gaps were not computed", ha="center", va="center")
        panels[0].set_axis_off()
        return figure
    for axes, (method, block) in zip(panels, methods.items(), strict=True):
        curves = block["curves"]
        for name, (label, colour, style) in _STYLES.items():
            axes.plot(curves["counts"], 100 * np.asarray(curves[name]), style, color=colour, label=label)
        axes.set_xscale("log")
        axes.set_ylim(-2, 102)
        axes.set_xlabel("features replaced by the baseline")
        axes.set_title(method)
    panels[0].set_ylabel("prediction drop (%)")
    panels[-1].legend(fontsize=7, loc="upper left")
    figure.suptitle(_title(summary), fontsize=10)
    figure.tight_layout()
    return figure

"""Figures of the simulation experiment, built as :class:`matplotlib.figure.Figure` objects (no pyplot).

Every figure takes one or several experiment summaries (one per scenario; ``per_round`` rows
as in ``round.json``), so a single experiment and the combined summary across scenarios
(:mod:`dmr_ray.experiments.combined`) draw the same figures.

* :func:`global_figure`: per method, the estimated against the true global effect of every
  round with its 95 % CI, and the identity line.
* :func:`score_bars_figure`: per method (and scenario), bars of chosen aggregate scores:
  local coverage, median local CI width and power; or the false-direction rate.
* :func:`local_scatter_figure`: for one representative round per scenario, each sequence's
  local estimate (95 % CI) against its local truth, per method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dmr_ray.experiments.tables import BASELINE, fmt, method_rows, methods_of

Summary = Mapping[str, Any]

FIGURES = {
    "global": "global_effects.png",
    "local": "local_scores.png",
    "direction": "false_direction.png",
    "scatter": "local_scatter.png",
}
"""File names of the figures :func:`write_experiment_figures` writes."""

LOCAL_SCORES = (
    ("local_coverage", "local coverage", (0.95, 0.90)),
    ("local_ci_width", "median local CI width", ()),
    ("power", "power", ()),
)
DIRECTION_SCORES = (
    ("false_direction_rate", "false-direction rate\n(unplanted direction a finding)", (0.05,)),
    ("reverse_significant_rate", "unplanted direction\nsignificant", (0.05,)),
    ("found_rate", "planted direction found", ()),
)


def write_experiment_figures(summaries: Sequence[Summary], out: Path) -> list[Path]:
    """Write the four figures of ``summaries`` into ``out`` (PNG, atomically); returns their paths."""
    from dmr_ray.report.attribution import save_figure

    figures = {
        "global": global_figure(summaries),
        "local": score_bars_figure(summaries, LOCAL_SCORES),
        "direction": score_bars_figure(summaries, DIRECTION_SCORES),
        "scatter": local_scatter_figure(summaries),
    }
    return [save_figure(figure, out / FIGURES[key]) for key, figure in figures.items()]


def _label(summary: Summary, *, wrap: bool = False) -> str:
    """``scenario (N rounds)``; ``wrap`` puts the round count on a line of its own (tick labels)."""
    return f"{summary['scenario']}{chr(10) if wrap else ' '}({len(summary['per_round'])} rounds)"


def global_figure(summaries: Sequence[Summary]) -> Figure:
    """Estimated vs true global effect per round, one panel per method (the baseline last).

    Points are coloured by scenario; bars are the 95 % CIs; the dashed line is identity.
    """
    methods = [*methods_of(summaries[0]), BASELINE]
    figure = Figure(figsize=(3.3 * len(methods), 3.5))
    axes = figure.subplots(1, len(methods), squeeze=False)[0]
    truths = [r["true_global"] for s in summaries for r in s["per_round"]]
    span = (min([0.0, *truths]), max([1.0, *truths]) * 1.05)
    for ax, method in zip(axes, methods, strict=True):
        for colour, summary in enumerate(summaries):
            rows = method_rows(summary, method)
            truth = np.array([r["true_global"] for r in summary["per_round"]])
            estimate = np.array([_float(s["estimate"]) for s in rows])
            low = estimate - np.array([_float(s["ci_low"]) for s in rows])
            high = np.array([_float(s["ci_high"]) for s in rows]) - estimate
            ax.errorbar(
                truth, estimate, yerr=[low, high], fmt="o", ms=3, lw=0.8, capsize=2, color=f"C{colour}",
                label=_label(summary),
            )  # fmt: skip
        ax.plot(span, span, "k--", lw=0.8, label="identity")
        ax.set_title(method, fontsize=10)
        ax.set_xlabel("true global effect")
    axes[0].set_ylabel("estimated global effect (95 % CI)")
    axes[0].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return figure


def score_bars_figure(summaries: Sequence[Summary], scores: Sequence[tuple[str, str, Sequence[float]]]) -> Figure:
    """One panel per score: a bar per method, grouped by scenario; dotted lines at the targets.

    Parameters
    ----------
    scores
        ``(aggregate key, axis label, reference lines)`` per panel.
    """
    methods = methods_of(summaries[0])
    figure = Figure(figsize=(0.6 + (1.2 + 0.8 * len(summaries)) * len(scores), 3.4))
    axes = figure.subplots(1, len(scores), squeeze=False)[0]
    width = 0.8 / len(methods)
    positions = np.arange(len(summaries))
    for ax, (key, label, lines) in zip(axes, scores, strict=True):
        for k, method in enumerate(methods):
            values = [_float(s["aggregate"][method].get(key)) for s in summaries]
            bars = ax.bar(positions + (k - (len(methods) - 1) / 2) * width, values, width, color=f"C{k}", label=method)
            ax.bar_label(bars, labels=[fmt(v) for v in values], fontsize=6, padding=1)
        for line in lines:
            ax.axhline(line, color="k", ls=":", lw=0.8)
        ax.set_xticks(positions, [_label(s, wrap=True) for s in summaries], fontsize=7)
        ax.set_ylabel(label)
        if key != "local_ci_width":
            ax.set_ylim(0, 1.08)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(methods), fontsize=7)
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    return figure


def representative_round(summary: Summary, method: str) -> Mapping[str, Any] | None:
    """The round whose ``method`` local coverage is nearest its pooled local coverage (the lowest such index).

    Only rounds that carry their local estimates (``local``) count; ``None`` if none does.
    """
    target = summary["aggregate"][method].get("local_coverage")
    candidates = [
        r for r in summary["per_round"] if r.get("local") and r["methods"][method]["local_coverage"] is not None
    ]
    if not candidates or target is None:
        return None
    return min(candidates, key=lambda r: (abs(r["methods"][method]["local_coverage"] - target), r["round"]))


def local_scatter_figure(summaries: Sequence[Summary]) -> Figure:
    """Local estimate (95 % CI) vs local truth per sequence: a row per scenario, a panel per method.

    Each row shows one representative round (:func:`representative_round` of the audit's
    default estimator, else the first method); a CI that misses the truth is drawn in red.
    """
    from dmr_ray.deepmr.config import DEFAULT_ESTIMATOR

    methods = methods_of(summaries[0])
    chooser = DEFAULT_ESTIMATOR if DEFAULT_ESTIMATOR in methods else methods[0]
    figure = Figure(figsize=(3.3 * len(methods), 3.2 * len(summaries)))
    axes = figure.subplots(len(summaries), len(methods), squeeze=False)
    for row_axes, summary in zip(axes, summaries, strict=True):
        chosen = representative_round(summary, chooser)
        for ax, method in zip(row_axes, methods, strict=True):
            if chosen is None:
                ax.text(0.5, 0.5, f"{summary['scenario']}: no local estimates", ha="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            local = chosen["local"][method]
            truth = np.array([r["truth"] for r in local])
            estimate = np.array([r["estimate"] for r in local])
            low, high = np.array([r["ci_low"] for r in local]), np.array([r["ci_high"] for r in local])
            covered = (low <= truth) & (truth <= high)
            for mask, colour in ((covered, "C0"), (~covered, "C3")):
                ax.errorbar(
                    truth[mask], estimate[mask], yerr=[estimate[mask] - low[mask], high[mask] - estimate[mask]],
                    fmt="o", ms=3, lw=0.7, capsize=1.5, color=colour,
                )  # fmt: skip
            if truth.size:
                span = (min(truth.min(), low.min(), 0.0), max(truth.max(), high.max()))
                ax.plot(span, span, "k--", lw=0.8)
            ax.set_title(
                f"{summary['scenario']}, round {chosen['round']}: {method}\n"
                f"coverage {fmt(chosen['methods'][method]['local_coverage'])}",
                fontsize=9,
            )
            ax.set_xlabel("local truth")
        row_axes[0].set_ylabel("local estimate (95 % CI)")
    figure.tight_layout()
    return figure


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)

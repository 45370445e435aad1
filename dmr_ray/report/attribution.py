"""Figures and tables of the sequence-attribution evaluation ("how far can this model's
attributions be trusted"), drawn from its JSON summary (``sequences.json`` or a Deep MR audit's
``attribution.json``; :meth:`dmr_ray.attribution.sequences.SequenceEvaluation.to_dict`).

No pyplot: figures are :class:`matplotlib.figure.Figure` objects, as in
:mod:`dmr_ray.report.figures`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dmr_ray._atomic import write_atomic

METHOD_LABELS = {"ism": "ISM", "ig": "Integrated gradients", "saliency": "Saliency", "grad_x_input": "Gradient × input"}


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _fmt(value: float | None, sd: float | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + ("" if sd is None else f" ± {sd:.3f}")


def metric_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """One row per method and output: method, output, AUROC (mean ± SD over members), AUROC of
    the ensemble attribution, the same for AUPRC, the random AUPRC and the number of sequences."""
    rows = []
    for method, per_output in summary["methods"].items():
        for output, r in per_output.items():
            rows.append(
                [
                    _label(method),
                    str(output),
                    _fmt(r["auroc"], r["auroc_sd"]),
                    _fmt(r["ensemble_auroc"]),
                    _fmt(r["auprc"], r["auprc_sd"]),
                    _fmt(r["ensemble_auprc"]),
                    _fmt(r["random_auprc"]),
                    str(r["n_sequences"]),
                ]
            )
    return rows


METRIC_HEADER = (
    "method",
    "output",
    "AUROC (members, mean ± SD)",
    "AUROC (ensemble)",
    "AUPRC (members, mean ± SD)",
    "AUPRC (ensemble)",
    "AUPRC (random)",
    "sequences",
)


def markdown_table(summary: Mapping[str, Any]) -> str:
    """The metrics as a Markdown table (random AUROC is 0.5)."""
    lines = ["| " + " | ".join(METRIC_HEADER) + " |", "|" + "---|" * len(METRIC_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in metric_rows(summary)]
    return "\n".join(lines)


def metrics_figure(summary: Mapping[str, Any]) -> Figure:
    """AUROC and AUPRC per method and output: bars are the member means, error bars ±1 SD over
    members, dots the members, diamonds the ensemble attribution; dashed lines are random."""
    methods = list(summary["methods"])
    outputs = list(summary["outputs"])
    fig = Figure(figsize=(4.0 + 1.6 * len(methods), 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    width = 0.8 / max(1, len(outputs))
    colours = [f"C{i}" for i in range(len(outputs))]
    for ax, metric, name in zip(axes, ("auroc", "auprc"), ("AUROC", "AUPRC"), strict=True):
        for j, output in enumerate(outputs):
            x = np.arange(len(methods)) + (j - (len(outputs) - 1) / 2) * width
            rows = [summary["methods"][m][output] for m in methods]
            mean = np.array([np.nan if r[metric] is None else r[metric] for r in rows])
            sd = np.array([np.nan if r[f"{metric}_sd"] is None else r[f"{metric}_sd"] for r in rows])
            ax.bar(x, mean, width * 0.9, yerr=sd, color=colours[j], alpha=0.55, label=output, capsize=3)
            for k, r in enumerate(rows):
                members = [v for v in r[f"member_{metric}"] if v is not None]
                ax.plot(np.full(len(members), x[k]), members, "o", ms=3, color="k", alpha=0.6)
                if r[f"ensemble_{metric}"] is not None:
                    ax.plot(x[k], r[f"ensemble_{metric}"], "D", ms=5, color=colours[j], mec="k")
            if metric == "auprc":
                chance = [r["random_auprc"] for r in rows if r["random_auprc"] is not None]
                if chance:
                    ax.axhline(float(np.mean(chance)), ls="--", lw=1, color=colours[j])
        if metric == "auroc":
            ax.axhline(0.5, ls="--", lw=1, color="grey")
        ax.set_xticks(np.arange(len(methods)), [_label(m) for m in methods], rotation=20, ha="right")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(f"{name} per sequence (mean)")
        ax.set_title(name)
    axes[0].legend(title="output", fontsize=8)
    return fig


def example_tracks_figure(summary: Mapping[str, Any]) -> Figure:
    """One sequence's per-position ensemble scores, one row per method, motif positions shaded."""
    example = summary["example"]
    scores = example["scores"]
    motif = np.asarray(example["motif"], dtype=bool)
    fig = Figure(figsize=(9.0, 1.3 * max(1, len(scores)) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(max(1, len(scores)), 1, sharex=True))
    starts = np.flatnonzero(np.diff(np.r_[0, motif.astype(int)]) == 1)
    ends = np.flatnonzero(np.diff(np.r_[motif.astype(int), 0]) == -1)
    for ax, (method, track) in zip(axes, scores.items(), strict=False):
        values = np.array([np.nan if v is None else v for v in track])
        for s, e in zip(starts, ends, strict=True):
            ax.axvspan(s - 0.5, e + 0.5, color="gold", alpha=0.35, lw=0)
        ax.bar(np.arange(values.size), values, width=1.0, color="C0")
        ax.set_ylabel(_label(method), fontsize=8)
    axes[0].set_title(
        f"{example['seq_id']}, output {example['output']}: ensemble attribution per position "
        "(shaded: planted motif positions)",
        fontsize=9,
    )
    axes[-1].set_xlabel("position")
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically; returns ``path``."""
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    return path

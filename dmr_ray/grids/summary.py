"""The tables and figures of a GRIDS run, in the layout of the original's results (grids.md §10).

:func:`summary_table` flattens every task's ``result.json`` into one row per (task, method);
:func:`cell_type_table` averages Avg Δ and Rel Δ (%) per cell type and L, with an ``Avg.`` row
over cell types; :func:`hit_table` gives the hit ratio (HR: a selected peak overlaps the gene)
and soft hit ratio (SHR: the closest selected peak within 10 Mb on the gene's chromosome) over
tasks, in %. :func:`write_summary` writes ``summary.md``, ``summary.parquet`` (the flat rows)
and ``summary.html`` (the tables and, per task, the target's predicted expression before and
after per test cell, and the selected peaks on the chromosome around the gene).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from matplotlib.figure import Figure

from dmr_ray._atomic import write_parquet_atomic, write_text_atomic

SUMMARY_FILES = ("summary.md", "summary.parquet", "summary.html")

LABELS = {
    "random": "Random",
    "saliency": "Saliency",
    "smoothgrad": "SmoothGrad",
    "integrated_gradients": "IG",
    "fimap": "FIMAP",
    "sage": "SAGE",
    "grids": "GRIDS",
}
"""Column titles of the methods, in the tables' order."""


def summary_table(out: Path, tasks: Sequence[str]) -> pd.DataFrame:
    """One row per (task, method) of ``out/<task>/result.json``: Avg Δ, Rel Δ (%), locality, recovery."""
    rows = []
    for name in tasks:
        document = json.loads((out / name / "result.json").read_text(encoding="utf-8"))
        task = document["task"]
        for method, record in document["methods"].items():
            metrics = record["metrics"]
            change, where = metrics["expression_change"], metrics["locality"]
            found = metrics.get("recovery") or {}
            rows.append(
                {
                    "task": name,
                    "cell_type": task["cell_type"],
                    "gene": task["gene"],
                    "L": int(task["L"]),
                    "direction": task["direction"],
                    "method": method,
                    "avg_delta": change["avg_delta"],
                    "rel_delta_pct": None if change["rel_delta"] is None else 100.0 * change["rel_delta"],
                    "mean_before": change["mean_before"],
                    "mean_after": change["mean_after"],
                    "hit": where["hit"],
                    "soft_hit": where["soft_hit"],
                    "closest_dist_mb": where["closest_dist_mb"],
                    "inchr_ratio": where["inchr_ratio"],
                    "groups_recovered": found.get("n_groups_recovered"),
                    "groups_planted": None if not found else len(found["groups_recovered"]),
                    "planted_found": found.get("planted_found"),
                    "selected_peaks": ",".join(record["selected_peaks"]),
                }
            )
    return pd.DataFrame(rows)


def _methods(rows: pd.DataFrame) -> list[str]:
    present = set(rows["method"])
    return [m for m in LABELS if m in present]


def cell_type_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per L and cell type (then ``Avg.`` over cell types): mean Avg Δ and Rel Δ (%) of each method."""
    means = rows.groupby(["L", "cell_type", "method"], sort=True)[["avg_delta", "rel_delta_pct"]].mean()
    per_type = means.reset_index()
    average = per_type.groupby(["L", "method"])[["avg_delta", "rel_delta_pct"]].mean().reset_index()
    average["cell_type"] = "Avg."
    return pd.concat([per_type, average], ignore_index=True)[["L", "cell_type", "method", "avg_delta", "rel_delta_pct"]]


def hit_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method and L: HR and SHR (%) over the tasks whose gene has coordinates."""
    known = rows.dropna(subset=["hit", "soft_hit"])
    table = known.groupby(["method", "L"])[["hit", "soft_hit"]].agg(lambda v: 100.0 * np.mean(v.astype(float)))
    return table.rename(columns={"hit": "HR", "soft_hit": "SHR"}).reset_index()


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _delta_grid(rows: pd.DataFrame) -> pd.DataFrame:
    """The seed's layout: one row per (L, cell type), one ``Avg Δ / Rel Δ (%)`` column per method."""
    table = cell_type_table(rows)
    methods = _methods(rows)
    lines = []
    for (L, cell_type), group in table.groupby(["L", "cell_type"], sort=False):
        values = group.set_index("method")
        line = {"L": L, "Cell type": cell_type}
        for m in methods:
            line[LABELS[m]] = (
                f"{values.at[m, 'avg_delta']:+.3f} / {values.at[m, 'rel_delta_pct']:+.3f}" if m in values.index else ""
            )
        lines.append(line)
    return pd.DataFrame(lines)


def _hit_grid(rows: pd.DataFrame) -> pd.DataFrame:
    table = hit_table(rows)
    lines = []
    for method in _methods(rows):
        line: dict[str, Any] = {"Method": LABELS[method]}
        for _, row in table[table["method"] == method].iterrows():
            line[f"HR (L={row['L']})"] = f"{row['HR']:.2f}"
            line[f"SHR (L={row['L']})"] = f"{row['SHR']:.2f}"
        lines.append(line)
    return pd.DataFrame(lines).fillna("")


def _recovery_grid(rows: pd.DataFrame) -> pd.DataFrame | None:
    if rows["groups_planted"].isna().all():
        return None
    table = rows.dropna(subset=["groups_planted"])
    lines = []
    for method in _methods(table):
        mine = table[table["method"] == method]
        lines.append({
            "Method": LABELS[method],
            "planted groups recovered": f"{int(mine['groups_recovered'].sum())} / {int(mine['groups_planted'].sum())}",
            "planted peaks found (mean)": f"{mine['planted_found'].mean():.3f}",
        })  # fmt: skip
    return pd.DataFrame(lines)


def markdown_summary(rows: pd.DataFrame) -> str:
    """``summary.md``: Avg Δ / Rel Δ (%) per cell type, HR / SHR over tasks, planted recovery."""
    parts = [
        "# GRIDS summary",
        "",
        "Avg Δ / Rel Δ (%) of the target gene's predicted expression on held-out test cells, "
        "averaged over each cell type's tasks (exp of log-normalised predictions, as the original).",
        "",
        _markdown(_delta_grid(rows)),
        "",
        "Hit ratio / soft hit ratio (%) over tasks:",
        "",
        _markdown(_hit_grid(rows)),
    ]
    recovery = _recovery_grid(rows)
    if recovery is not None:
        parts += ["", "Recovery of the planted redundant groups (all peaks of a group selected):", "",
                  _markdown(recovery)]  # fmt: skip
    return "\n".join(parts) + "\n"


def expression_figure(expression: pd.DataFrame, title: str) -> Figure:
    """Per method, the target's predicted expression per test cell before (x) and after (y) the perturbation."""
    methods = [m for m in LABELS if m in set(expression["method"])]
    fig = Figure(figsize=(2.4 * len(methods), 2.6))
    axes = fig.subplots(1, len(methods), sharex=True, sharey=True, squeeze=False)[0]
    low = float(min(expression["before"].min(), expression["after"].min()))
    high = float(max(expression["before"].max(), expression["after"].max()))
    for ax, method in zip(axes, methods, strict=True):
        mine = expression[expression["method"] == method]
        ax.plot([low, high], [low, high], color="#999", lw=0.8)
        ax.scatter(mine["before"], mine["after"], s=6, alpha=0.6, color="#b2182b" if method == "grids" else "#2166ac")
        ax.set_title(LABELS[method], fontsize=9)
        ax.set_xlabel("before", fontsize=8)
    axes[0].set_ylabel("after", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def peaks_figure(rows: pd.DataFrame, document: dict[str, Any], title: str) -> Figure:
    """Each method's selected peaks on the gene's chromosome (Mb), the gene shaded."""
    from dmr_ray.grids.coordinates import parse_interval

    gene_where = document.get("gene_interval")
    methods = [m for m in LABELS if m in set(rows["method"])]
    fig = Figure(figsize=(7.5, 0.45 * len(methods) + 1.2))
    ax = fig.subplots()
    chrom = None if gene_where is None else gene_where[0]
    for y, method in enumerate(methods):
        names = [p for p in rows.loc[rows["method"] == method, "selected_peaks"].iloc[0].split(",") if p]
        spots = [parse_interval(name) for name in names]
        xs = [(s + e) / 2e6 for c, s, e in spots if chrom is None or c == chrom]
        ax.scatter(xs, [y] * len(xs), marker="|", s=160, linewidths=2, zorder=3,
                   color="#b2182b" if method == "grids" else "#2166ac")  # fmt: skip
        ax.text(1.01, y, f"{len(xs)}/{len(spots)} on {chrom or 'any chromosome'}", transform=ax.get_yaxis_transform(),
                fontsize=7, va="center")  # fmt: skip
    if gene_where is not None:
        ax.axvspan(gene_where[1] / 1e6, gene_where[2] / 1e6, color="#fdb863", alpha=0.5, zorder=0)
        ax.text(gene_where[1] / 1e6, 1.0, "gene", transform=ax.get_xaxis_transform(), fontsize=7, va="bottom")
    ax.set_yticks(range(len(methods)), [LABELS[m] for m in methods], fontsize=8)
    ax.set_xlabel(f"{chrom or ''} position (Mb)", fontsize=8)
    ax.set_title(title, fontsize=10, pad=12)
    fig.tight_layout()
    return fig


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def html_summary(out: Path, rows: pd.DataFrame, tasks: Sequence[str]) -> str:
    """``summary.html``: the tables, then per task its two figures (self-contained: inline PNGs)."""

    def table(frame: pd.DataFrame) -> str:
        return frame.to_html(index=False, escape=True, border=0)

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>GRIDS summary</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.2em .6em}"
        "img{max-width:100%}</style></head><body><h1>GRIDS summary</h1>",
        "<h2>Avg &Delta; / Rel &Delta; (%) per cell type</h2>",
        table(_delta_grid(rows)),
        "<h2>Hit ratio / soft hit ratio (%)</h2>",
        table(_hit_grid(rows)),
    ]
    recovery = _recovery_grid(rows)
    if recovery is not None:
        parts += ["<h2>Planted groups recovered</h2>", table(recovery)]
    for name in tasks:
        mine = rows[rows["task"] == name]
        document = json.loads((out / name / "result.json").read_text(encoding="utf-8"))
        title = f"{document['task']['cell_type']}: {document['task']['gene']} (L = {document['task']['L']})"
        expression = pd.read_parquet(out / name / "expression.parquet")
        figures = [expression_figure(expression, title), peaks_figure(mine, document["task"], title)]
        parts += [
            f"<h2>{html.escape(title)}</h2>",
            f"<p>best configuration: {html.escape(json.dumps(document['best_config']))}</p>",
            *(f"<img alt='{html.escape(title)}' src='data:image/png;base64,{_png(fig)}'>" for fig in figures),
        ]
    return "\n".join([*parts, "</body></html>\n"])


def write_summary(out: Path, tasks: Sequence[str]) -> str:
    """Write ``summary.md``, ``summary.parquet`` and ``summary.html`` of ``tasks`` (directories in ``out``)."""
    rows = summary_table(out, tasks)
    write_parquet_atomic(out / "summary.parquet", pa.Table.from_pandas(rows, preserve_index=False))
    write_text_atomic(out / "summary.md", markdown_summary(rows))
    write_text_atomic(out / "summary.html", html_summary(out, rows, tasks))
    return f"{len(tasks)} task(s), {rows['method'].nunique()} method(s)"

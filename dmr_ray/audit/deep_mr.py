"""Deep MR in audit plans: the cell's model and sequence store go into ``model`` and ``store``;
the headline metrics and the diff come from ``global_effects.parquet``.

A pooled effect is *significant* when its confidence interval excludes 0, and two versions'
effects *separate* when their intervals do not overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from dmr_ray.audit.kinds import AuditKind, KindDiff
from dmr_ray.deepmr.pipeline import GLOBAL

_KEY = ("exposure", "outcome", "method")


def inject(config: Mapping[str, Any], spec: Path, data: str, out: Path) -> dict[str, Any]:
    """``config`` with the cell's model spec, sequence store and output directory."""
    return {**config, "kind": "deep_mr", "model": str(spec), "store": data, "out": str(out)}


def _effects(out: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    rows = pq.read_table(out / GLOBAL).to_pylist()
    return {tuple(row[k] for k in _KEY): row for row in rows}


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def significant(row: Mapping[str, Any]) -> bool:
    """Whether the row's confidence interval excludes 0."""
    return _float(row["ci_low"]) > 0 or _float(row["ci_high"]) < 0


def separate(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two rows' confidence intervals do not overlap."""
    return _float(a["ci_high"]) < _float(b["ci_low"]) or _float(b["ci_high"]) < _float(a["ci_low"])


def headline(out: Path) -> dict[str, float]:
    """``effects`` (pooled effects), ``significant`` (CI excludes 0) and ``max_abs_estimate``."""
    rows = list(_effects(out).values())
    estimates = [abs(_float(r["estimate"])) for r in rows if math.isfinite(_float(r["estimate"]))]
    return {
        "effects": float(len(rows)),
        "significant": float(sum(significant(r) for r in rows)),
        "max_abs_estimate": max(estimates) if estimates else math.nan,
    }


def diff(old: Path, new: Path, figure: Path, labels: tuple[str, str] = ("from", "to")) -> KindDiff:
    """Global effects per (exposure, outcome, method) of two versions: both estimates, their
    difference, whether the CIs separate and whether significance was gained or lost; a PNG
    at ``figure`` with, per method, both heatmaps (one colour scale) and their difference
    (its own scale), titled with ``labels``."""
    before, after = _effects(old), _effects(new)
    rows = []
    gained: list[str] = []
    lost: list[str] = []
    separated: list[str] = []
    for key in sorted(before.keys() & after.keys()):
        a, b = before[key], after[key]
        change = ""
        if significant(a) != significant(b):
            change = "gained" if significant(b) else "lost"
            (gained if significant(b) else lost).append(f"{key[0]}→{key[1]} ({key[2]})")
        apart = separate(a, b)
        if apart:
            separated.append(f"{key[0]}→{key[1]} ({key[2]})")
        estimate_a, estimate_b = _float(a["estimate"]), _float(b["estimate"])
        rows.append((*key, estimate_a, estimate_b, estimate_b - estimate_a, "yes" if apart else "no", change))
    only = sorted(before.keys() ^ after.keys())
    summary = [
        f"{len(rows)} global effects compared; CIs separate for {len(separated)}"
        + (f": {', '.join(separated)}" if separated else ""),
        f"gained significance: {', '.join(gained) or 'none'}",
        f"lost significance: {', '.join(lost) or 'none'}",
    ]
    if only:
        summary.append(f"{len(only)} effects in one version only: {', '.join('→'.join(k[:2]) for k in only)}")
    _figure(before, after, labels).savefig(figure, dpi=100)
    header = ("exposure", "outcome", "method", *labels, "difference", "CIs separate", "significance")
    return KindDiff(header, tuple(rows), tuple(summary), figure)


def _matrix(rows: Mapping[tuple[str, str, str], Mapping[str, Any]], method: str, tasks: list[str]) -> np.ndarray:
    index = {t: i for i, t in enumerate(tasks)}
    matrix = np.full((len(tasks), len(tasks)), np.nan)
    for (exposure, outcome, m), row in rows.items():
        if m == method:
            matrix[index[exposure], index[outcome]] = _float(row["estimate"])
    return matrix


def _limit(*matrices: np.ndarray) -> float:
    finite = np.abs(np.concatenate([m[np.isfinite(m)] for m in matrices]))
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def _figure(before: Mapping, after: Mapping, labels: tuple[str, str]) -> Figure:
    methods = sorted({k[2] for k in (*before, *after)})
    tasks = sorted({t for k in (*before, *after) for t in k[:2]})
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#e8e8e8")
    fig = Figure(figsize=(12, 3.6 * max(len(methods), 1)), layout="constrained")
    axes = fig.subplots(max(len(methods), 1), 3, squeeze=False)
    for row, method in zip(axes, methods, strict=False):
        a, b = _matrix(before, method, tasks), _matrix(after, method, tasks)
        shared = _limit(a, b)
        panels = ((a, labels[0], shared), (b, labels[1], shared), (b - a, f"{labels[1]} − {labels[0]}", _limit(b - a)))
        for ax, (matrix, title, limit) in zip(row, panels, strict=True):
            image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-limit, vmax=limit)
            ax.set_xticks(range(len(tasks)), labels=tasks, rotation=45, ha="right")
            ax.set_yticks(range(len(tasks)), labels=tasks)
            ax.set_xlabel("outcome")
            ax.set_ylabel("exposure")
            ax.set_title(f"{title} · {method}")
            fig.colorbar(image, ax=ax, shrink=0.8, label="global effect" if "−" not in title else "difference")
    return fig


DEEP_MR = AuditKind("deep_mr", inject, ("kind", "model", "store", "out"), headline, diff)
"""The Deep MR hooks (registered in :data:`dmr_ray.audit.kinds.AUDIT_KINDS`)."""

"""Tables of the simulation experiment: the original's layout and the scores per scenario × method.

Both take experiment summaries (``summary.json`` of :mod:`dmr_ray.experiments.simulation`:
``scenario``, ``size``, ``rounds``, ``aggregate`` and the ``per_round`` rows), one per scenario.

* :func:`seed_table_rows`: the Deep MR draft's table (deep_mr.md §9, the seed's "Simulation
  Estimated Effects"): confounding; global CE true; global CE estimated; calibration, a row
  per scenario and method.
* :func:`score_rows`: local coverage, median local CI width, power, false-direction rate and
  the global scores, a row per scenario and method (the naive ratio baseline has global
  scores only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CONFOUNDING = {"none": "None", "sequence": "Sequence-based", "random": "Random", "both": "Both"}
"""The seed's names of the four scenarios."""

BASELINE = "naive_ratio"

SCORES = (
    "local_coverage",
    "local_coverage_unconfounded",
    "local_ci_width",
    "power",
    "false_direction_rate",
    "unplanted_finding_rate",
    "reverse_significant_rate",
    "found_rate",
    "global_accuracy",
    "global_coverage",
)
"""The columns of :func:`score_rows` after scenario, size, rounds and method."""

SCORE_HEADERS = (
    "local coverage",
    "local coverage of the original's truth (confounders removed)",
    "median local CI width",
    "power",
    "false-direction rate (unplanted direction a finding)",
    "any unplanted finding (also GATA → TAL1 where nothing is planted)",
    "unplanted direction significant",
    "planted direction found",
    "global accuracy",
    "global coverage (95 % CI)",
)


def methods_of(summary: Mapping[str, Any]) -> list[str]:
    """The MR methods of a summary, in its order (the baseline excluded)."""
    return [m for m in summary["aggregate"] if m != BASELINE]


def method_rows(summary: Mapping[str, Any], method: str) -> list[Mapping[str, Any]]:
    """Per round, ``method``'s scores (the baseline's for ``naive_ratio``)."""
    return [r["baseline"] if method == BASELINE else r["methods"][method] for r in summary["per_round"]]


def seed_table_rows(summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The original's table, one row per scenario and method (the baseline included).

    Global CE true and estimated are means (and SDs) over rounds; calibration is the fraction
    of rounds whose 95 % CI holds the true global effect and the pooled local coverage.
    """
    rows = []
    for summary in summaries:
        truth = [r["true_global"] for r in summary["per_round"]]
        for method in (*methods_of(summary), BASELINE):
            estimates = [s["estimate"] for s in method_rows(summary, method)]
            scores = summary["aggregate"][method]
            rows.append(
                {
                    "confounding": CONFOUNDING.get(summary["scenario"], summary["scenario"]),
                    "scenario": summary["scenario"],
                    "method": method,
                    "rounds": len(truth),
                    "global_ce_true": _mean_sd(truth),
                    "global_ce_estimated": _mean_sd(estimates),
                    "global_accuracy": scores.get("global_accuracy"),
                    "global_coverage": scores.get("global_coverage"),
                    "local_coverage": scores.get("local_coverage"),
                }
            )
    return rows


def seed_table_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """:func:`seed_table_rows` as a markdown table in the seed's columns (method added)."""
    lines = [
        "| Confounding | Method | Global CE (true) | Global CE (estimated) | Calibration |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        true, estimated = row["global_ce_true"], row["global_ce_estimated"]
        accuracy = f"; r = {fmt(row['global_accuracy'])}" if row["global_accuracy"] is not None else ""
        calibration = f"global 95 % CI covers {fmt(row['global_coverage'])}"
        if row["local_coverage"] is not None:
            calibration += f"; local CIs cover {fmt(row['local_coverage'])}"
        lines.append(
            f"| {row['confounding']} | {row['method']} | {fmt(true['mean'])} ± {fmt(true['sd'])} "
            f"| {fmt(estimated['mean'])} ± {fmt(estimated['sd'])}{accuracy} | {calibration} |"
        )
    return "\n".join(lines) + "\n"


def score_rows(summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per scenario and method: :data:`SCORES` (None where a score does not apply)."""
    rows = []
    for summary in summaries:
        for method in (*methods_of(summary), BASELINE):
            scores = summary["aggregate"][method]
            rows.append(
                {
                    "scenario": summary["scenario"],
                    "size": summary["size"],
                    "rounds": summary["rounds"],
                    "method": method,
                    **{key: scores.get(key) for key in SCORES},
                }
            )
    return rows


def score_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """:func:`score_rows` as a markdown table."""
    lines = [
        "| scenario | size | rounds | method | " + " | ".join(SCORE_HEADERS) + " |",
        "|---|---|---|---|" + "---|" * len(SCORE_HEADERS),
    ]
    for row in rows:
        cells = [row["scenario"], row["size"], str(row["rounds"]), row["method"], *(fmt(row[k]) for k in SCORES)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fmt(value: float | None, digits: int = 3) -> str:
    """``digits`` significant digits; an en dash for a missing or non-finite value."""
    return "–" if not finite(value) else f"{value:.{digits}g}"


def finite(*values: Any) -> bool:
    """Whether every value is a number that is neither None, NaN nor infinite."""
    return all(v is not None and math.isfinite(v) for v in values)


def mean_of(values: Sequence[Any]) -> float | None:
    """The mean of the values that are not None (booleans count 0/1); None if there are none."""
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def weighted_mean(values: Sequence[float | None], weights: Sequence[int]) -> float | None:
    """The mean of the values that are not None, weighted by positive ``weights``; None if none."""
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None and w > 0]
    if not pairs:
        return None
    return float(sum(v * w for v, w in pairs) / sum(w for _, w in pairs))


def median_of(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not None; None if there are none."""
    kept = [v for v in values if v is not None]
    return float(np.median(kept)) if kept else None


def _mean_sd(values: Sequence[float]) -> dict[str, float | None]:
    kept = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if kept.size == 0:
        return {"mean": None, "sd": None}
    return {"mean": float(kept.mean()), "sd": float(kept.std(ddof=1)) if kept.size > 1 else None}

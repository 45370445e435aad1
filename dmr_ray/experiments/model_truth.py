"""What the audited model itself learned, on the ground truth's own substitutions.

The simulation's local truth (deep_mr.md §9) is the slope through the origin of the oracle's
Δ outcome on Δ exposure over every substitution of the exposure-motif span. The same slope
computed from the audited ensemble's effects (``effects.zarr``, the ISM the audit ran) is
the model's own local effect: where MR intervals miss the oracle truth, comparing them with
this value separates the model's error (it learned a different slope) from MR's error (its
intervals miss the slope the model has). The slope of Δ exposure on Δ outcome over the
outcome-motif span is the model's own reverse effect, which the simulation plants at 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MotifSpans:
    """Where the planted motifs lie in one audited sequence (0-based starts, −1 if absent)."""

    exposure_start: int
    exposure_length: int
    outcome_start: int
    outcome_length: int


def span_slope(beta: np.ndarray, start: int, length: int, x: int, y: int) -> float:
    """Slope through the origin of ``beta[..., y]`` on ``beta[..., x]`` over a span.

    Parameters
    ----------
    beta
        ``[L, 3, T]`` effects of one sequence.
    start, length
        The span's first position and its length.
    x, y
        Task indices of the regressor and the response.

    Returns
    -------
    float
        ``Σ bx·by / Σ bx²`` over the span's finite substitutions; NaN for an empty span or
        when every ``bx`` is 0.
    """
    if start < 0:
        return float("nan")
    window = beta[start : start + length]
    bx, by = window[..., x].ravel(), window[..., y].ravel()
    keep = np.isfinite(bx) & np.isfinite(by)
    denominator = float(np.sum(bx[keep] ** 2))
    return float(np.sum(bx[keep] * by[keep]) / denominator) if denominator > 0 else float("nan")


def model_local_effects(
    beta: np.ndarray, seq_ids: np.ndarray, spans: Mapping[str, MotifSpans], *, exposure: int = 0, outcome: int = 1
) -> dict[str, tuple[float, float]]:
    """The model's forward and reverse local effects per audited sequence.

    Parameters
    ----------
    beta
        ``[n, L, 3, T]`` ensemble effects of the audited sequences.
    seq_ids
        ``[n]`` their identifiers.
    spans
        Motif spans by sequence id; sequences without an entry are skipped.
    exposure, outcome
        Task indices of the planted exposure and outcome.

    Returns
    -------
    dict
        ``seq_id → (forward, reverse)``: the slope of Δ outcome on Δ exposure over the
        exposure-motif span, and of Δ exposure on Δ outcome over the outcome-motif span.
    """
    out = {}
    for row, seq_id in enumerate(np.asarray(seq_ids).astype(str)):
        span = spans.get(seq_id)
        if span is None:
            continue
        out[seq_id] = (
            span_slope(beta[row], span.exposure_start, span.exposure_length, exposure, outcome),
            span_slope(beta[row], span.outcome_start, span.outcome_length, outcome, exposure),
        )
    return out

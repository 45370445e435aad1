"""Instrument selection: which substitutions count as instruments for an exposure.

The original Deep MR keeps substitutions whose exposure effect is far from the mean of all
exposure effects, pooled over every sequence, position and alternative allele
(``|x - mean(x)| / sd(x) >= threshold``, sd with ddof 0). That needs the pooled moments first,
computed in one streaming pass over ``effects.zarr`` (:func:`exposure_moments`). The per-variant
Wald filter (``|beta / se| >= threshold``) needs no pooled statistics.

Substitutions that cannot be instruments whatever the filter (exposure effect exactly 0, a
non-finite effect, or a standard error that is not a positive number) are excluded before MR
and counted, rather than passed on to fail inside an estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmr_ray.errors import InputError


@dataclass(frozen=True)
class ExposureMoments:
    """Pooled mean and SD (ddof 0) of every task's effects over the whole effects store."""

    tasks: tuple[str, ...]
    count: np.ndarray
    mean: np.ndarray
    sd: np.ndarray

    def to_dict(self) -> dict:
        """A JSON-safe form, recorded with the run."""
        return {"tasks": list(self.tasks), "count": self.count.tolist(),
                "mean": self.mean.tolist(), "sd": self.sd.tolist()}


def _chunk_moments(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat = beta.reshape(-1, beta.shape[-1]).astype(np.float64)
    finite = np.isfinite(flat)
    count = finite.sum(axis=0)
    total = np.where(finite, flat, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    m2 = (np.where(finite, flat - mean, 0.0) ** 2).sum(axis=0)
    return count.astype(np.float64), mean, m2


def _combine(a: tuple, b: tuple) -> tuple:
    """Chan et al.'s pairwise combination of (count, mean, M2)."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    n = n_a + n_b
    delta = mean_b - mean_a
    safe_n = np.where(n > 0, n, 1.0)
    mean = mean_a + delta * n_b / safe_n
    m2 = m2_a + m2_b + delta**2 * n_a * n_b / safe_n
    return n, mean, m2


def exposure_moments(effects) -> ExposureMoments:
    """Pooled moments of every task's ``beta`` over all chunks of an effects store.

    Parameters
    ----------
    effects : EffectsStore
        A complete effects store.

    Returns
    -------
    ExposureMoments
        Per task: number of finite effects, their mean and their SD (ddof 0).
    """
    state = None
    for index in range(effects.n_chunks):
        moments = _chunk_moments(effects.read_chunk(index)["beta"])
        state = moments if state is None else _combine(state, moments)
    count, mean, m2 = state
    sd = np.sqrt(np.divide(m2, count, out=np.zeros_like(m2), where=count > 0))
    return ExposureMoments(tuple(effects.tasks), count, mean, sd)


def usable(beta_x: np.ndarray, se_x: np.ndarray, beta_y: np.ndarray, se_y: np.ndarray) -> np.ndarray:
    """Substitutions that can be instruments at all: finite effects, positive SEs, bx != 0."""
    with np.errstate(invalid="ignore"):
        return (np.isfinite(beta_x) & np.isfinite(beta_y) & (beta_x != 0)
                & (se_x > 0) & (se_y > 0) & np.isfinite(se_x) & np.isfinite(se_y))


def passes_filter(beta_x: np.ndarray, se_x: np.ndarray, *, kind: str, threshold: float,
                  mean: float | None = None, sd: float | None = None) -> np.ndarray:
    """Boolean mask of substitutions whose exposure effect passes the instrument filter.

    Parameters
    ----------
    beta_x, se_x
        Exposure effects and their standard errors, any shape.
    kind
        ``"zscore"`` (the original, needs the pooled ``mean`` and ``sd``) or ``"wald"``.
    threshold
        Minimum |z|.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "wald":
            return np.abs(beta_x / se_x) >= threshold
        if kind == "zscore":
            if sd is None or mean is None:
                raise InputError("the zscore instrument filter needs the pooled exposure moments")
            if not sd > 0:
                return np.zeros(beta_x.shape, dtype=bool)
            return np.abs(beta_x - mean) / sd >= threshold
    raise InputError(f"unknown instrument filter {kind!r}; choose 'zscore' or 'wald'")

"""Instrument selection: which substitutions count as instruments for an exposure.

The original Deep MR keeps substitutions whose exposure effect is far from the mean of all
exposure effects, pooled over every sequence, position and alternative allele
(``|x - mean(x)| / sd(x) >= threshold``, sd with ddof 0). That needs the pooled moments first,
computed in one streaming pass over ``effects.zarr`` (:func:`exposure_moments`, each chunk's
moments merged by :func:`dmr_ray.stats.moments.combine`); a rerun reuses
them while the effects' :func:`effects_fingerprint` is unchanged. The per-variant Wald filter
(``|beta / se| >= threshold``) needs no pooled statistics.

The optional direction filter is the in-silico analogue of Steiger filtering: a substitution
is kept as an instrument for exposure X on outcome Y only if it moves X more than Y, each on
its own scale (``|bx| / s_X > |by| / s_Y``). The default scale is the region's own: the root
mean square of each output's effects over all substitutions of the region being fitted
(:func:`region_rms`). A variant acting on Y only through X moves Y by θ·bx while
``s_Y ≥ |θ|·s_X`` in every region, whatever its local slope θ, so it passes; a variant acting
on Y directly (reverse causation) fails. The first version scaled by each output's SD over
the reference sequences (``direction_scale: reference``): one ratio for all regions, which
sits near the typical local slope, so regions with steeper slopes lose their instruments in
the true direction and lend them to the reverse one (docs/direction.md). Without a direction
filter, variants of the outcome's own drivers make the reverse direction look causal.

Substitutions that cannot be instruments whatever the filter (exposure effect exactly 0, a
non-finite effect, or a standard error that is not a positive number) are excluded before MR
and counted, rather than passed on to fail inside an estimator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmr_ray.errors import InputError
from dmr_ray.stats.moments import Moments, combine, finite_moments


@dataclass(frozen=True)
class ExposureMoments:
    """Pooled mean and SD (ddof 0) of every task's effects over the whole effects store, and
    the SD of every task's reference prediction over the sequences (``reference_sd``)."""

    tasks: tuple[str, ...]
    count: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    reference_sd: np.ndarray

    def to_dict(self) -> dict:
        """A JSON-safe form, recorded with the run."""
        return {
            "tasks": list(self.tasks),
            "count": self.count.tolist(),
            "mean": self.mean.tolist(),
            "sd": self.sd.tolist(),
            "reference_sd": self.reference_sd.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExposureMoments:
        """The moments recorded by :meth:`to_dict` (floats round-trip exactly through JSON)."""
        return cls(
            tuple(data["tasks"]),
            *(np.asarray(data[name], dtype=np.float64) for name in ("count", "mean", "sd", "reference_sd")),
        )


def exposure_moments(effects) -> ExposureMoments:
    """Pooled moments of every task's ``beta`` (and ``ref_mean``) over an effects store.

    Parameters
    ----------
    effects : EffectsStore
        A complete effects store.

    Returns
    -------
    ExposureMoments
        Per task: number of finite effects, their mean and their SD (ddof 0), and the SD of
        the reference predictions over sequences.
    """
    chunk = effects.read_chunk(0)
    effect, reference = finite_moments(chunk["beta"]), finite_moments(chunk["ref_mean"])
    for index in range(1, effects.n_chunks):
        chunk = effects.read_chunk(index)
        effect = combine(effect, finite_moments(chunk["beta"]))
        reference = combine(reference, finite_moments(chunk["ref_mean"]))
    count = np.asarray(effect.count, dtype=np.float64)
    return ExposureMoments(tuple(effects.tasks), count, effect.mean, _sd(effect), _sd(reference))


def effects_fingerprint(effects) -> str | None:
    """A digest of an effects store's content that reads its manifest, not its effects.

    It covers the store's attributes (identity and provenance), shape, tasks, chunk size and
    manifest: which chunks are complete and the run that committed each. Every engine run
    commits under a fresh run id, so effects rewritten in any way change the digest.

    Parameters
    ----------
    effects : EffectsStore
        The store.

    Returns
    -------
    str or None
        A sha256 hex digest, or None when a chunk records no committing run (written outside
        the engine): then the manifest cannot vouch for the content.
    """
    committed = effects.committed_by().tolist()
    if not all(committed):
        return None
    content = {
        "attrs": effects.attrs,
        "n_seq": effects.n_seq,
        "length": effects.length,
        "tasks": effects.tasks,
        "chunk_size": effects.chunk_size,
        "complete": sorted(effects.completed_chunks()),
        "committed_by": committed,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _sd(moments: Moments[np.ndarray]) -> np.ndarray:
    """SD (ddof 0) per task, 0 for a task without finite values."""
    count, m2 = moments.count, moments.m2
    return np.sqrt(np.divide(m2, count, out=np.zeros_like(m2), where=count > 0))


def passes_direction(
    beta_x: np.ndarray, beta_y: np.ndarray, sd_x: float | np.ndarray, sd_y: float | np.ndarray
) -> np.ndarray:
    """Substitutions that move the exposure more than the outcome, each on its own scale.

    Parameters
    ----------
    beta_x, beta_y
        Exposure and outcome effects, any shape.
    sd_x, sd_y
        Their scales: floats (the SDs over the reference sequences, which must be positive)
        or arrays broadcasting against the effects (:func:`region_rms`; a zero scale means
        the output does not move in that region, so it counts as moved by 0).

    Returns
    -------
    numpy.ndarray
        ``|beta_x| / sd_x > |beta_y| / sd_y``, False where an effect is not finite.
    """
    if np.ndim(sd_x) == 0 and np.ndim(sd_y) == 0 and not (sd_x > 0 and sd_y > 0):
        raise InputError(
            f"the direction filter needs outputs that vary over the reference "
            f"sequences; their SDs are {sd_x} and {sd_y}"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        moved_x = np.where(np.asarray(sd_x) > 0, np.abs(beta_x) / sd_x, 0.0)
        moved_y = np.where(np.asarray(sd_y) > 0, np.abs(beta_y) / sd_y, 0.0)
        return moved_x > moved_y


def region_rms(beta: np.ndarray, width: int) -> np.ndarray:
    """Root mean square of the effects over each region's finite substitutions, per substitution.

    Parameters
    ----------
    beta
        ``[n, L, 3]`` effects of one output.
    width
        Region width in bp (the last region of a sequence may be shorter).

    Returns
    -------
    numpy.ndarray
        ``float64 [n, L, 3]``: every substitution carries ``sqrt(mean(beta²))`` of its region
        (0 for a region without a finite effect).

    Notes
    -----
    This is the region's own scale for the direction filter. For substitutions acting on the
    outcome Y only through the exposure X (``by = θ·bx``) and Y's own drivers (``bx = 0``),
    ``rms(by)² = θ²·rms(bx)² + (mean square of Y's own effects)``, so ``rms(by) / rms(bx) ≥ |θ|``
    whatever the local slope θ of the region: mediated substitutions pass and Y's own
    drivers fail. The SDs over reference sequences give one ratio for every region, below the
    local slope of the regions with the steepest slopes.
    """
    beta = np.asarray(beta, dtype=np.float64)
    n, length, alts = beta.shape
    n_regions = -(-length // width)
    padded = np.full((n, n_regions * width, alts), np.nan)
    padded[:, :length] = beta
    blocks = padded.reshape(n, n_regions, width * alts)
    finite = np.isfinite(blocks)
    count = finite.sum(axis=2)
    square = np.where(finite, blocks, 0.0) ** 2
    rms = np.sqrt(np.divide(square.sum(axis=2), count, out=np.zeros(count.shape), where=count > 0))
    return np.repeat(rms, width, axis=1)[:, :length, None].repeat(alts, axis=2)


def usable(beta_x: np.ndarray, se_x: np.ndarray, beta_y: np.ndarray, se_y: np.ndarray) -> np.ndarray:
    """Substitutions that can be instruments at all: finite effects, positive SEs, bx != 0."""
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(beta_x)
            & np.isfinite(beta_y)
            & (beta_x != 0)
            & (se_x > 0)
            & (se_y > 0)
            & np.isfinite(se_x)
            & np.isfinite(se_y)
        )


def passes_filter(
    beta_x: np.ndarray,
    se_x: np.ndarray,
    *,
    kind: str,
    threshold: float,
    mean: float | None = None,
    sd: float | None = None,
) -> np.ndarray:
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

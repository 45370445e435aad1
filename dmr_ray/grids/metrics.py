"""How good a selected peak set is (grids.md §7): expression change, locality and planted-truth recovery.

* :func:`expression_change`: the target gene's predicted expression on held-out cells before
  and after setting the selected peaks to p, on the original's scale: ``orig = exp(ŷ(x))``,
  ``after = exp(ŷ(x∖r))`` with ŷ the (clamped) log1p-normalised prediction; ``Avg Δ =
  mean_c(after − orig)`` and ``Rel Δ = mean_c((after − orig)/orig)`` (a mean of ratios, a
  fraction). The ``expm1`` variants use ``expm1`` (normalised counts): Avg Δ is the same, Rel Δ
  is averaged over the cells with ``expm1(ŷ(x)) > 0`` only. For direction "up" the quantities
  are the same (a successful search makes them positive).
* :func:`locality`: ``dist(a, b) = max(0, max(starts) − min(ends))`` (overlapping and touching
  intervals are 0 apart; another chromosome is ∞); hit = the closest selected peak overlaps the
  gene, soft hit = it lies within ``soft_window`` (10 Mb).
* :func:`recovery`: which planted redundant groups the selection contains entirely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.grids.baselines import dense_batches
from dmr_ray.grids.coordinates import Intervals
from dmr_ray.grids.objective import Objective
from dmr_ray.grids.perturb import perturb

NO_CHROMOSOME_MB = 1000.0
"""``closest_dist_mb`` when no selected peak is on the gene's chromosome (the original's value)."""


def _json(value: Any) -> Any:
    """numpy scalars → Python; NaN and ±inf floats → None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    return value


@dataclass(frozen=True)
class ExpressionChange:
    """The target gene's predicted expression before and after the perturbation, per held-out cell.

    Attributes
    ----------
    before, after
        ``float64 [cells]`` predictions ŷ (log1p-normalised units) of ``x`` and of ``x∖r``.
    """

    before: np.ndarray
    after: np.ndarray

    @property
    def avg_delta(self) -> float:
        """``mean_c(exp(after) − exp(before))``; identical on the expm1 scale."""
        return float(np.mean(np.exp(self.after) - np.exp(self.before)))

    @property
    def rel_delta(self) -> float:
        """``mean_c((exp(after) − exp(before)) / exp(before))``, a fraction (× 100 for %)."""
        return float(np.mean(np.expm1(self.after - self.before)))

    @property
    def avg_delta_expm1(self) -> float:
        """``mean_c(expm1(after) − expm1(before))`` (equal to :attr:`avg_delta`)."""
        return float(np.mean(np.expm1(self.after) - np.expm1(self.before)))

    @property
    def rel_delta_expm1(self) -> float:
        """``mean_c((expm1(after) − expm1(before)) / expm1(before))`` over cells with ``before > 0``; NaN if none."""
        expressed = self.before > 0
        if not expressed.any():
            return float("nan")
        orig = np.expm1(self.before[expressed])
        return float(np.mean((np.expm1(self.after[expressed]) - orig) / orig))

    def as_dict(self) -> dict[str, Any]:
        """Summary numbers (no per-cell arrays), JSON-ready (NaN → None)."""
        summary = {
            "n_cells": len(self.before),
            "mean_before": float(np.mean(self.before)),
            "mean_after": float(np.mean(self.after)),
            "avg_delta": self.avg_delta,
            "rel_delta": self.rel_delta,
            "avg_delta_expm1": self.avg_delta_expm1,
            "rel_delta_expm1": self.rel_delta_expm1,
        }
        return {key: _json(value) for key, value in summary.items()}


def _target_prediction(model: nn.Module, x: sp.csr_matrix, gene: int, batch_size: int) -> np.ndarray:
    """``float64 [cells]``: ŷ[:, gene] in eval mode, densifying batches."""
    model.eval()
    out = []
    with torch.no_grad():
        for dense in dense_batches(x, batch_size):
            out.append(model(torch.from_numpy(dense))[:, gene].double().numpy())
    return np.concatenate(out)


def expression_change(
    model: nn.Module,
    x_test: sp.csr_matrix,
    objective: Objective,
    selected: np.ndarray,
    *,
    batch_size: int = 512,
) -> ExpressionChange:
    """ŷ of the target gene on held-out cells ``x_test [cells, n_peaks]``, as they are and with ``selected`` set to p.

    Raises
    ------
    InputError
        If there are no cells or ``selected`` is not a set of peak indices.
    """
    x_test = sp.csr_matrix(x_test)
    if x_test.shape[0] < 1:
        raise InputError("expression_change needs at least one held-out cell")
    perturbed = perturb(x_test, np.asarray(selected), objective.p)
    before = _target_prediction(model, x_test, objective.gene, batch_size)
    after = _target_prediction(model, perturbed, objective.gene, batch_size)
    return ExpressionChange(before=before, after=after)


@dataclass(frozen=True)
class Locality:
    """Where the selected peaks lie relative to the target gene; every field is None for a gene without coordinates.

    Attributes
    ----------
    hit
        The closest selected peak overlaps (or touches) the gene.
    soft_hit
        The closest selected peak is within the soft window (on the gene's chromosome).
    soft_hit_num
        Selected peaks within the soft window.
    closest_dist_mb
        Distance of the closest selected peak in Mb; 1000 if none is on the gene's chromosome.
    inchr_num, inchr_ratio
        Selected peaks on the gene's chromosome, and their fraction of the selection.
    """

    hit: bool | None
    soft_hit: bool | None
    soft_hit_num: int | None
    closest_dist_mb: float | None
    inchr_num: int | None
    inchr_ratio: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "hit": self.hit,
            "soft_hit": self.soft_hit,
            "soft_hit_num": self.soft_hit_num,
            "closest_dist_mb": self.closest_dist_mb,
            "inchr_num": self.inchr_num,
            "inchr_ratio": self.inchr_ratio,
        }


def _selection(selected: np.ndarray | list[int], n: int) -> np.ndarray:
    """``int64 [L]`` distinct indices in ``[0, n)``."""
    r = np.asarray(selected)
    if r.ndim != 1 or (r.size and (r.dtype.kind not in "iu" or r.min() < 0 or r.max() >= n)):
        raise InputError(f"selected must be peak indices in [0, {n})")
    r = r.astype(np.int64)
    if len(np.unique(r)) != len(r):
        raise InputError("selected has repeated peaks")
    return r


def locality(
    peaks: Intervals,
    genes: Intervals,
    gene: int,
    selected: np.ndarray | list[int],
    soft_window: int = 10_000_000,
) -> Locality:
    """Distances of the selected peaks to gene ``gene`` (grids.md §7).

    Parameters
    ----------
    peaks, genes
        Coordinates of all peaks and genes.
    gene
        Row of the target gene in ``genes``.
    selected
        ``int [L]`` selected peak indices (distinct, L >= 1).
    soft_window
        Largest distance in bp of a soft hit.
    """
    if not is_int(gene) or not 0 <= gene < len(genes):
        raise InputError(f"gene must be a row of the gene table [0, {len(genes)}), got {gene!r}")
    if not is_int(soft_window) or soft_window < 0:
        raise InputError(f"soft_window must be an integer >= 0 bp, got {soft_window!r}")
    r = _selection(selected, len(peaks))
    if not len(r):
        raise InputError("selected is empty")
    if not genes.known[gene]:
        return Locality(None, None, None, None, None, None)
    same = (peaks.chrom[r] == genes.chrom[gene]) & peaks.known[r]
    gap = np.maximum(peaks.start[r], genes.start[gene]) - np.minimum(peaks.end[r], genes.end[gene])
    distance = np.where(same, np.maximum(0, gap), np.inf)
    closest = float(distance.min())
    return Locality(
        hit=closest == 0,
        soft_hit=closest <= soft_window,
        soft_hit_num=int((distance <= soft_window).sum()),
        closest_dist_mb=closest / 1e6 if np.isfinite(closest) else NO_CHROMOSOME_MB,
        inchr_num=int(same.sum()),
        inchr_ratio=float(same.mean()),
    )


@dataclass(frozen=True)
class Recovery:
    """How much of the planted truth a selection contains.

    Attributes
    ----------
    groups_recovered
        Per planted group: whether every member is selected.
    planted_found
        Fraction of the planted peaks (union of the groups) that are selected.
    precision
        Fraction of the selected peaks that are planted.
    """

    groups_recovered: tuple[bool, ...]
    planted_found: float
    precision: float

    @property
    def n_groups_recovered(self) -> int:
        return sum(self.groups_recovered)

    def as_dict(self) -> dict[str, Any]:
        return {
            "groups_recovered": list(self.groups_recovered),
            "n_groups_recovered": self.n_groups_recovered,
            "planted_found": self.planted_found,
            "precision": self.precision,
        }


def recovery(selected: np.ndarray | list[int], groups: list[list[int]]) -> Recovery:
    """Compare ``selected`` (``int [L]`` distinct, L >= 1) with planted ``groups`` of peak indices (non-empty)."""
    if not groups or any(len(g) == 0 for g in groups):
        raise InputError("recovery needs at least one planted group, each with at least one peak")
    if not all(is_int(j) and j >= 0 for g in groups for j in g):
        raise InputError("planted groups must hold peak indices >= 0")
    planted = {int(j) for g in groups for j in g}
    r = _selection(selected, np.iinfo(np.int64).max)
    if not len(r):
        raise InputError("selected is empty")
    chosen = set(r.tolist())
    return Recovery(
        groups_recovered=tuple(all(int(j) in chosen for j in g) for g in groups),
        planted_found=len(planted & chosen) / len(planted),
        precision=len(planted & chosen) / len(chosen),
    )

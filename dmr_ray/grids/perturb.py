"""The perturbation operator of GRIDS (grids.md §1) and the peaks near a gene's TSS.

x'_j = x_j + 1[j ∈ r]·(p − x_j): the peaks in ``r`` are set to ``p`` in every cell and the
others are left as they are. ``p = 0`` removes peaks (the "down" experiments; a peak already
closed in a cell changes nothing there), ``p = 1`` opens them ("up").
"""

from __future__ import annotations

from typing import TypeVar, overload

import numpy as np
import scipy.sparse as sp
import torch

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.grids.coordinates import Intervals

Peaks = TypeVar("Peaks", torch.Tensor, sp.csr_matrix)


def _membership(peaks: np.ndarray | torch.Tensor | list[int], n_peaks: int) -> np.ndarray:
    """``bool [n_peaks]``: 1[j ∈ r]; repeated members count once."""
    r = np.asarray(peaks.cpu() if isinstance(peaks, torch.Tensor) else peaks)
    if r.size and (r.dtype.kind not in "iu" or r.min() < 0 or r.max() >= n_peaks):
        raise InputError(f"peak indices must be integers in [0, {n_peaks}), got {r.tolist()[:10]}")
    inside = np.zeros(n_peaks, bool)
    inside[r.astype(np.int64)] = True
    return inside


@overload
def perturb(x: torch.Tensor, peaks: np.ndarray | torch.Tensor | list[int], p: float = 0.0) -> torch.Tensor: ...
@overload
def perturb(x: sp.csr_matrix, peaks: np.ndarray | torch.Tensor | list[int], p: float = 0.0) -> sp.csr_matrix: ...
def perturb(x: Peaks, peaks: np.ndarray | torch.Tensor | list[int], p: float = 0.0) -> Peaks:
    """Set the peaks ``peaks`` to ``p`` in every cell.

    Parameters
    ----------
    x
        ``[n_cells, n_peaks]`` accessibility: a dense ``torch.Tensor`` (any float or integer
        dtype; gradients flow through the untouched entries) or a ``scipy.sparse`` matrix.
    peaks
        Column indices ``r`` (``int [L]``).
    p
        The value written: 0 removes, 1 opens.

    Returns
    -------
    x'
        Same type, shape and dtype as ``x`` (sparse input gives CSR); ``x`` is not modified.
    """
    inside = _membership(peaks, x.shape[1])
    if isinstance(x, torch.Tensor):
        mask = torch.from_numpy(inside).to(x.device)
        return torch.where(mask, torch.as_tensor(p, dtype=x.dtype, device=x.device), x)
    result = sp.csr_matrix(x, copy=True)
    result.data[inside[result.indices]] = 0
    if p != 0:
        columns = np.flatnonzero(inside)
        rows = np.repeat(np.arange(x.shape[0]), len(columns))
        written = sp.csr_matrix(
            (np.full(rows.size, p, dtype=x.dtype), (rows, np.tile(columns, x.shape[0]))), shape=x.shape
        )
        result = sp.csr_matrix(result + written)
    result.eliminate_zeros()
    return result


def tss(genes: Intervals, strand: np.ndarray) -> np.ndarray:
    """``int64 [n_genes]`` transcription start sites: ``end`` on the minus strand, else ``start``.

    Genes of unknown strand (0) take ``start``; genes without coordinates give −1.
    """
    return np.where(strand < 0, genes.end, genes.start)


def peaks_near_tss(peaks: Intervals, genes: Intervals, strand: np.ndarray, gene: int, window: int) -> np.ndarray:
    """Peaks on the gene's chromosome whose interval comes within ``window`` bp of its TSS.

    A window of 0 keeps peaks that contain the TSS. The original searches all peaks (grids.md
    §1); this restricts the candidates of a search or a baseline when asked.

    Returns
    -------
    ``int64 [n_near]`` ascending peak indices.

    Raises
    ------
    InputError
        If ``window`` is not an integer >= 0 or the gene has no coordinates.
    """
    if not is_int(window) or window < 0:
        raise InputError(f"window must be an integer >= 0 bp, got {window!r}")
    if not genes.known[gene]:
        raise InputError(f"gene {gene} has no coordinates")
    site = int(tss(genes, strand)[gene])
    distance = np.maximum(0, np.maximum(peaks.start - site, site - peaks.end))
    return np.flatnonzero((peaks.chrom == genes.chrom[gene]) & (distance <= window)).astype(np.int64)

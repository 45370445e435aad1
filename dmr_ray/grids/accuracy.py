"""Held-out accuracy of a surrogate: per-gene correlation and cell-type mean expression."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def column_correlation(predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``float64 [n_columns]`` Pearson correlation of each column pair; NaN where either is constant."""
    p = predicted - predicted.mean(axis=0)
    o = observed - observed.mean(axis=0)
    denominator = np.sqrt((p**2).sum(axis=0) * (o**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (p * o).sum(axis=0) / denominator, np.nan)


@dataclass(frozen=True)
class SurrogateAccuracy:
    """How well predictions match observed expression on held-out cells.

    Attributes
    ----------
    gene_correlation
        ``float64 [n_genes]`` Pearson r over cells, per gene (NaN for a gene constant in either).
    mean_gene_correlation
        Mean of the finite entries of ``gene_correlation``.
    cell_types
        ``str [n_types]`` sorted.
    predicted_means, observed_means
        ``float64 [n_types, n_genes]`` mean expression per cell type.
    cell_type_mean_correlation
        Pearson r between the two mean tables, all entries together.
    """

    gene_correlation: np.ndarray
    mean_gene_correlation: float
    cell_types: np.ndarray
    predicted_means: np.ndarray
    observed_means: np.ndarray
    cell_type_mean_correlation: float


def heldout_accuracy(predicted: np.ndarray, observed: np.ndarray, cell_types: np.ndarray) -> SurrogateAccuracy:
    """Compare ``predicted`` and ``observed`` ``[n_cells, n_genes]`` (same units) on held-out cells.

    ``cell_types`` is ``str [n_cells]``.
    """
    r = column_correlation(predicted.astype(np.float64), observed.astype(np.float64))
    types, label = np.unique(np.asarray(cell_types, dtype=str), return_inverse=True)
    counts = np.bincount(label, minlength=len(types))[:, None]
    means = [np.stack([m[label == t].sum(axis=0) for t in range(len(types))]) / counts for m in (predicted, observed)]
    finite = r[np.isfinite(r)]
    return SurrogateAccuracy(
        gene_correlation=r,
        mean_gene_correlation=float(finite.mean()) if finite.size else float("nan"),
        cell_types=types,
        predicted_means=means[0],
        observed_means=means[1],
        cell_type_mean_correlation=float(column_correlation(means[0].ravel()[:, None], means[1].ravel()[:, None])[0]),
    )

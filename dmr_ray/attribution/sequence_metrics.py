"""How well per-position attribution scores find planted motif positions (attribution.md §9).

Each sequence is one ranking problem: its positions are scored by an attribution method and
the positives are the positions covered by a planted motif instance (Koo & Ploenzke 2021).

* :func:`auroc`: the area under the ROC curve from average ranks (Mann–Whitney U / (P·N)), so
  tied scores count one half, as scikit-learn's ``roc_auc_score``.
* :func:`average_precision`: the step-wise area under the precision–recall curve,
  ``Σ_k (R_k − R_{k−1}) P_k`` over the distinct score thresholds in descending order, as
  scikit-learn's ``average_precision_score`` (no interpolation).
* :func:`per_sequence`: both for every row of ``[n, L]`` scores; positions whose score is not
  finite (e.g. ``N`` bases, which ISM leaves as NaN) are left out; a row without a positive or
  without a negative gets NaN.
* :func:`spread`: the mean over sequences per replicate, then the mean and SD over replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmr_ray.errors import InputError


def _flat_pair(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positives)
    if s.ndim != 1 or y.shape != s.shape or y.dtype != np.bool_:
        raise InputError(
            f"scores must be 1-D and positives a bool array of the same shape, got {s.shape} and {y.dtype} {y.shape}"
        )
    return s, y


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` ``[m]`` in ascending order, ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    first = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    sizes = np.diff(np.r_[first, values.size])
    mean_rank = first + (sizes + 1) / 2.0  # the mean of ranks first+1 .. first+size
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(mean_rank, sizes)
    return ranks


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` ``[m]`` against ``positives`` ``bool [m]``.

    Returns NaN when there is no positive or no negative (the curve is undefined).
    """
    s, y = _flat_pair(scores, positives)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = average_ranks(s)[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Average precision (step-wise area under the precision–recall curve).

    Thresholds are the distinct scores in descending order; tied positions enter together.
    Returns NaN when there is no positive.
    """
    s, y = _flat_pair(scores, positives)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    ends = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s.size - 1]  # last index of each tie group
    tp = np.cumsum(y_sorted)[ends]
    precision = tp / (ends + 1)
    recall_step = np.diff(np.r_[0, tp]) / n_pos
    return float((recall_step * precision).sum())


def per_sequence(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision of each sequence.

    Parameters
    ----------
    scores
        ``[n, L]`` per-position attribution scores (higher = more important); non-finite
        entries are left out of their row.
    positives
        ``bool [n, L]``: positions covered by a planted motif instance.

    Returns
    -------
    tuple of numpy.ndarray
        ``float64 [n]`` AUROC and ``float64 [n]`` AUPRC (NaN where undefined).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positives)
    if s.ndim != 2 or y.shape != s.shape or y.dtype != np.bool_:
        raise InputError(f"scores must be [n, L] and positives bool [n, L], got {s.shape} and {y.dtype} {y.shape}")
    roc = np.full(s.shape[0], np.nan)
    prc = np.full(s.shape[0], np.nan)
    for i in range(s.shape[0]):
        keep = np.isfinite(s[i])
        roc[i] = auroc(s[i, keep], y[i, keep])
        prc[i] = average_precision(s[i, keep], y[i, keep])
    return roc, prc


@dataclass(frozen=True)
class Spread:
    """A metric summarised over sequences and replicates (ensemble members).

    Attributes
    ----------
    per_replicate
        ``float64 [R]``: the mean over sequences for each replicate.
    mean, sd
        Mean and SD (ddof 0, as ``np.std``) of ``per_replicate``.
    n_sequences
        Sequences with a defined value (the same for every replicate).
    """

    per_replicate: np.ndarray
    mean: float
    sd: float
    n_sequences: int


def spread(values: np.ndarray) -> Spread:
    """Summarise ``float [R, n]`` per-sequence values (NaN = undefined) as a :class:`Spread`."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise InputError(f"values must be [replicates, sequences], got shape {v.shape}")
    defined = np.isfinite(v).all(axis=0)
    per_replicate = v[:, defined].mean(axis=1) if defined.any() else np.full(v.shape[0], np.nan)
    return Spread(per_replicate, float(per_replicate.mean()), float(per_replicate.std()), int(defined.sum()))

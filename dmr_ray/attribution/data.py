"""Preprocessing of expression matrices for the attribution study (attribution.md §2).

The split is 60/40, shuffled with a seed and not stratified, as in the reference; genes are
z-scored with training statistics only. A gene with zero training variance (never expressed,
e.g. the ≈ 13.5 % of SIMU2 genes in no pathway) is centred and left unscaled, so it is 0 on
every training sample, or dropped with ``drop_constant``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError

_ROWS = 256  # samples per block of the variance pass


@dataclass(frozen=True)
class Split:
    """Sample indices of a train/test split.

    Attributes
    ----------
    train, test
        ``int64 [n_train]``, ``int64 [n_test]``: disjoint, together ``0 … n_samples − 1``.
    """

    train: np.ndarray
    test: np.ndarray


def train_test_split(n_samples: int, *, test_fraction: float = 0.4, seed: int | np.random.Generator) -> Split:
    """Shuffle ``n_samples`` indices and hold out ``round(test_fraction · n_samples)`` of them.

    Raises
    ------
    InputError
        If ``n_samples`` is not an integer >= 2 or ``test_fraction`` leaves either side empty.
    """
    if not is_int(n_samples) or n_samples < 2:
        raise InputError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    n_test = round(float(test_fraction) * n_samples)
    if not 0 < n_test < n_samples:
        raise InputError(f"test_fraction {test_fraction!r} of {n_samples} samples leaves an empty train or test set")
    order = np.random.default_rng(seed).permutation(n_samples)
    return Split(train=order[n_test:], test=order[:n_test])


@dataclass(frozen=True)
class Standardizer:
    """A per-gene z-score fitted on training samples.

    Attributes
    ----------
    mean
        ``float64 [n_genes]`` training mean of every input gene.
    scale
        ``float64 [n_genes]`` training standard deviation; 1 where it is 0.
    keep
        ``bool [n_genes]`` genes passed on by :meth:`transform` (all, unless constant genes
        were dropped).
    """

    mean: np.ndarray
    scale: np.ndarray
    keep: np.ndarray

    @property
    def n_features(self) -> int:
        """Number of genes :meth:`transform` returns."""
        return int(self.keep.sum())

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``float32 [n, n_features]``: ``(x − mean) / scale`` on the kept genes of ``x [n, n_genes]``.

        Computed in float32 in the one output array.

        Raises
        ------
        InputError
            If ``x`` is not 2-D with ``n_genes`` columns.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.keep.size:
            raise InputError(f"expected an array [n, {self.keep.size}], got shape {x.shape}")
        keep = self.keep
        z = x[:, keep].astype(np.float32, copy=False)  # a fresh float32 copy, never a float64 one
        z -= self.mean[keep].astype(np.float32)
        z /= self.scale[keep].astype(np.float32)
        return z


def fit_standardizer(x_train: np.ndarray, *, drop_constant: bool = False) -> Standardizer:
    """Fit the per-gene z-score on ``x_train [n_train, n_genes]`` (float64 statistics, population sd).

    Raises
    ------
    InputError
        If ``x_train`` is not 2-D with at least 2 rows, or holds non-finite values.
    """
    x_train = np.asarray(x_train)
    if x_train.ndim != 2 or x_train.shape[0] < 2:
        raise InputError(f"x_train must be [n_train >= 2, n_genes], got shape {x_train.shape}")
    mean = x_train.mean(axis=0, dtype=np.float64)
    squares = np.zeros(x_train.shape[1])
    for start in range(0, x_train.shape[0], _ROWS):  # blocks: no float64 copy of the whole matrix
        squares += ((x_train[start : start + _ROWS] - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / x_train.shape[0])
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise InputError("x_train holds non-finite values")
    constant = std == 0
    keep = ~constant if drop_constant else np.ones(std.size, dtype=bool)
    return Standardizer(mean=mean, scale=np.where(constant, 1.0, std), keep=keep)

"""Moments of disjoint samples, merged exactly (Chan, Golub and LeVeque's updates).

The moments of a sample are its count ``n``, its ``mean`` and its sum of squared deviations
``m2 = sum((x - mean)**2)``. Samples that arrive one after another (a stream of chunks or of
replicates) are folded two at a time by :func:`combine`; disjoint samples ``a`` and ``b``
merge as

    n     = n_a + n_b
    delta = mean_b - mean_a
    mean  = mean_a + delta * n_b / n
    m2    = m2_a + m2_b + delta**2 * n_a * n_b / n

evaluated left to right exactly as written (``delta * n_b`` first, then the division); where
``n == 0`` (two empty samples) the division is by 1, so the merge keeps the first mean.
Folding in one observation ``x`` as ``(1, x, 0)`` is Welford's streaming update, and folding
groups one after another is exact whatever their sizes.

Groups that are all at hand (replicate groups computed on different actors) are merged in
one pass by :func:`merge`, the parallel form of the same update,

    n    = sum(n_g)
    mean = sum(n_g * mean_g) / n
    m2   = sum(m2_g + n_g * (mean_g - mean)**2)

(sums in group order), whose mean is the plain weighted mean, as a pass over all the data
computes it. The variance with ``ddof`` delta degrees of freedom is ``m2 / (n - ddof)``.

The arithmetic uses operators only, so the same code merges numpy arrays and torch tensors
(the ISM fast path folds replicates on the compute device); this module imports neither
torch nor anything beyond the standard library. ``n`` is an ``int`` or an array of counts
broadcasting against the means (one per column, e.g. per task, when some values are missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

__all__ = ["Arithmetic", "Moments", "combine", "finite_moments", "merge"]


class Arithmetic(Protocol):
    """What the merge needs of an array type: ``+ - * / **`` (numpy arrays, torch tensors)."""

    def __add__(self, other: Any, /) -> Any: ...
    def __sub__(self, other: Any, /) -> Any: ...
    def __mul__(self, other: Any, /) -> Any: ...
    def __truediv__(self, other: Any, /) -> Any: ...
    def __pow__(self, other: Any, /) -> Any: ...


ArrayT = TypeVar("ArrayT", bound=Arithmetic)


@dataclass(frozen=True)
class Moments(Generic[ArrayT]):
    """Count, mean and sum of squared deviations of a sample (see the module docstring).

    Attributes
    ----------
    count
        ``n``: an ``int``, or an array of counts broadcasting against ``mean``.
    mean
        The sample mean, any shape.
    m2
        ``sum((x - mean)**2)``, the shape of ``mean``.
    """

    count: int | np.ndarray
    mean: ArrayT
    m2: ArrayT

    def variance(self, ddof: int = 0) -> ArrayT:
        """``m2 / (n - ddof)``."""
        return self.m2 / (self.count - ddof)


def combine(a: Moments[ArrayT], b: Moments[ArrayT]) -> Moments[ArrayT]:
    """The moments of the union of two disjoint samples (the formula of the module docstring).

    Parameters
    ----------
    a, b
        Moments of the two samples, with broadcasting means and ``m2``.

    Returns
    -------
    Moments
        ``(n_a + n_b, mean, m2)``.
    """
    n = a.count + b.count
    divisor = n + (n == 0)  # 1 where both samples are empty
    delta = b.mean - a.mean
    mean = a.mean + delta * b.count / divisor
    m2 = a.m2 + b.m2 + delta**2 * a.count * b.count / divisor
    return Moments(n, mean, m2)


def merge(groups: Sequence[Moments[ArrayT]]) -> Moments[ArrayT]:
    """The moments of the union of disjoint samples, in one pass (the parallel form of the
    module docstring).

    Parameters
    ----------
    groups
        Moments of each sample (at least one), with broadcasting means and ``m2``; counts
        must sum to a positive number.

    Returns
    -------
    Moments
        ``(sum(n_g), mean, m2)``.
    """
    n: Any = sum(g.count for g in groups)
    mean: Any = sum((g.mean * g.count for g in groups), start=0) / n
    m2: Any = sum((g.m2 + (g.mean - mean) ** 2 * g.count for g in groups), start=0)
    return Moments(n, mean, m2)


def finite_moments(values: np.ndarray) -> Moments[np.ndarray]:
    """Moments of each column (last axis) of ``values`` over its finite entries, two-pass.

    Parameters
    ----------
    values
        ``[..., T]``; NaN and infinite entries are left out.

    Returns
    -------
    Moments
        ``count``, ``mean`` and ``m2`` float64 ``[T]``; a column without finite entries has
        count 0, mean 0 and m2 0.
    """
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    finite = np.isfinite(flat)
    count = finite.sum(axis=0)
    total = np.where(finite, flat, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    m2 = (np.where(finite, flat - mean, 0.0) ** 2).sum(axis=0)
    return Moments(count.astype(np.float64), mean, m2)

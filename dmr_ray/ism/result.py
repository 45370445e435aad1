"""The result of saturation mutagenesis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class ISMResult:
    """Effects of every single-base substitution of a batch of reference sequences.

    Attributes
    ----------
    beta : numpy.ndarray
        ``float32 [n, L, 3, T]``: mean over replicates of ``f_r(mut) - f_r(ref)``; axis 2
        holds the alternative alleles in ACGT order skipping the reference base (see
        :func:`dmr_ray.ism.alt_alleles`). NaN at positions holding N.
    se : numpy.ndarray
        ``float32 [n, L, 3, T]``: standard deviation over replicates of the paired
        differences (with ``ddof``; no ``1/sqrt(R)``). NaN at positions holding N.
    ref_mean, ref_se : numpy.ndarray
        ``float32 [n, T]``: mean and standard deviation (same ``ddof``) over replicates of
        ``f_r(ref)``.
    task_names : tuple of str or None
        Task names of axis ``T`` (``None`` for a bare module).
    n_replicates : int
        Number of replicates ``R``.
    replicate_kind : str
        ``"ensemble"``, ``"mc_dropout"`` or ``"single"``.
    ddof : int
        Delta degrees of freedom of ``se`` and ``ref_se``.
    replicate_beta : numpy.ndarray or None
        ``float32 [R, n, L, 3, T]``: every replicate's paired differences ``f_r(mut) -
        f_r(ref)`` (``keep_replicates``; NaN at positions holding N), else ``None``.
    """

    beta: np.ndarray
    se: np.ndarray
    ref_mean: np.ndarray
    ref_se: np.ndarray
    task_names: tuple[str, ...] | None
    n_replicates: int
    replicate_kind: str
    ddof: int
    replicate_beta: np.ndarray | None = None

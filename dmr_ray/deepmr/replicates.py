"""Replicate-wise global effects: one audit per ensemble member, inference across members.

The effects of an ensemble's mean share each member's error at every substitution of every
sequence: a member that has learned a small spurious dependence moves all instruments of all
regions together. The per-instrument SEs (the replicate SD of each substitution) then count
one shared error as thousands of independent draws, and IVW or the weighted median can call
an unplanted direction significant (docs/direction.md). Here every replicate's effects go
through the same local MR (:func:`dmr_ray.deepmr.local.local_effects_table`) and
meta-analysis (:func:`dmr_ray.deepmr.stages.global_effects_table`); the global estimate is the
mean over replicates, its SE the between-replicate SD / sqrt(R), and the CI and p-value come
from Student's t on R - 1 degrees of freedom.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from scipy import stats

from dmr_ray.deepmr.local import LocalMROptions, local_effects_table
from dmr_ray.deepmr.stages import GROUP_KEYS, global_effects_table
from dmr_ray.errors import InputError


def replicate_global_effects(
    replicate_beta: np.ndarray,
    se: np.ndarray,
    seq_ids: np.ndarray,
    options: LocalMROptions,
    *,
    meta_method: str = "DL",
    alpha: float = 0.05,
) -> pa.Table:
    """Global causal effects inferred from the spread over replicates.

    Parameters
    ----------
    replicate_beta
        ``[R, n, L, 3, T]`` effects of each replicate (``f_r(mut) - f_r(ref)``), R >= 2.
    se
        ``[n, L, 3, T]`` standard errors of the ensemble effects: the weights of every
        replicate's fits and, through the filters of ``options``, part of instrument selection.
    seq_ids
        ``[n]`` sequence identifiers.
    options
        Instrument filters and estimators, as for the audit's local stage.
    meta_method, alpha
        τ² method of each replicate's meta-analysis, and 1 - confidence level.

    Returns
    -------
    pyarrow.Table
        One row per (exposure, outcome, method): ``estimate`` (mean over replicates), ``se``,
        ``ci_low``, ``ci_high``, ``p_value`` (t on R - 1 df), ``n_replicates`` and the
        ``replicate_estimates`` themselves.

    Raises
    ------
    InputError
        Fewer than two replicates, or shapes that do not match.
    """
    replicate_beta = np.asarray(replicate_beta)
    if replicate_beta.ndim != 5 or replicate_beta.shape[0] < 2 or replicate_beta.shape[1:] != np.shape(se):
        raise InputError(
            f"replicate_beta must be [R >= 2, n, L, 3, T] matching se {np.shape(se)}, got {replicate_beta.shape}"
        )
    tables = [
        global_effects_table(local_effects_table(beta, se, seq_ids, options), method=meta_method, alpha=alpha)
        for beta in replicate_beta
    ]
    keys = {name: tables[0].column(name).to_pylist() for name in GROUP_KEYS}
    estimates = np.stack([t.column("estimate").to_numpy(zero_copy_only=False) for t in tables], axis=1)
    n_rep = estimates.shape[1]
    mean = estimates.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sem = estimates.std(axis=1, ddof=1) / np.sqrt(n_rep)
        half = stats.t.ppf(1 - alpha / 2, n_rep - 1) * sem
        p_value = 2 * stats.t.sf(np.abs(mean / sem), n_rep - 1)
    return pa.table(
        {
            **keys,
            "estimate": mean,
            "se": sem,
            "ci_low": mean - half,
            "ci_high": mean + half,
            "p_value": p_value,
            "n_replicates": np.full(mean.shape, n_rep, dtype=np.int32),
            "replicate_estimates": pa.array(estimates.tolist(), type=pa.list_(pa.float64())),
        }
    )

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

In an audit the local stage writes every replicate's local effects
(:func:`~dmr_ray.deepmr.local.replicate_local_effects`, ``local_replicates.parquet``) beside the ensemble's, and
the meta stage with ``meta.inference: replicate`` turns them into ``global_effects.parquet``
(:func:`with_replicate_inference`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dmr_ray.deepmr.local import (
    REPLICATE,
    LocalMROptions,
    across_replicates,
    instrument_masks,
    replicate_local_effects,
)
from dmr_ray.deepmr.stages import GROUP_KEYS, global_effects_table
from dmr_ray.errors import InputError


def replicate_inference(
    local_replicates: pa.Table, *, method: str = "DL", test: str = "z", alpha: float = 0.05
) -> pa.Table:
    """Global effects inferred from the spread of per-replicate meta-analyses.

    Each replicate's local effects are pooled by
    :func:`~dmr_ray.deepmr.stages.global_effects_table`; per (exposure, outcome, method) the
    global estimate is the mean of the R replicate estimates, its SE their SD (ddof 1) / sqrt(R),
    and the CI and p-value come from Student's t on R - 1 df.

    Parameters
    ----------
    local_replicates
        Local effects with the column :data:`~dmr_ray.deepmr.local.REPLICATE`.
    method, test, alpha
        τ² method and test of each replicate's meta-analysis, and 1 - confidence level.

    Returns
    -------
    pyarrow.Table
        One row per (exposure, outcome, method), in ascending order: ``estimate``, ``se``,
        ``ci_low``, ``ci_high``, ``p_value``, ``n_replicates`` and ``replicate_estimates``
        (list, replicate order).

    Raises
    ------
    InputError
        Fewer than two replicates.
    """
    column = local_replicates.column(REPLICATE).to_numpy()
    replicates = np.unique(column)
    if replicates.size < 2:
        raise InputError(f"replicate inference needs at least 2 replicates, got {replicates.size}")
    tables = [
        global_effects_table(local_replicates.filter(column == r), method=method, test=test, alpha=alpha)
        for r in replicates
    ]
    keys = {name: tables[0].column(name) for name in GROUP_KEYS}
    estimates = np.stack([t.column("estimate").to_numpy(zero_copy_only=False) for t in tables], axis=1)
    return pa.table(
        {
            **keys,
            **across_replicates(estimates, alpha),
            "n_replicates": np.full(estimates.shape[0], estimates.shape[1], dtype=np.int32),
            "replicate_estimates": pa.array(estimates.tolist(), type=pa.list_(pa.float64())),
        }
    )


INFERENCE_FIELDS = ("estimate", "se", "ci_low", "ci_high", "p_value", "n_replicates", "replicate_estimates")
"""The columns of ``global_effects.parquet`` that replicate inference provides."""


def with_replicate_inference(pooled: pa.Table, local_replicates: pa.Table, *, alpha: float = 0.05) -> pa.Table:
    """``pooled`` (the ensemble-mean meta-analysis) with its inference replaced by the replicates'.

    The estimate, SE, CI and p-value come from :func:`replicate_inference` (with ``pooled``'s
    τ² method and test); the heterogeneity columns (``tau2``, ``i2``, ``q``, ``q_p``, ``k``,
    ``n_regions``) still describe the ensemble-mean regions, the prediction interval (which
    belongs to the pooled inference) is NaN, and ``inference`` says ``"replicate"``.

    Raises
    ------
    InputError
        The two tables do not hold the same (exposure, outcome, method) groups.
    """
    method, test = (pooled.column(name)[0].as_py() if pooled.num_rows else "DL" for name in ("meta_method", "test"))
    wise = replicate_inference(local_replicates, method=method, test=test, alpha=alpha)
    for name in GROUP_KEYS:
        if wise.column(name).to_pylist() != pooled.column(name).to_pylist():
            raise InputError("replicate and ensemble local effects hold different (exposure, outcome, method) groups")
    table = pooled
    for name in ("pi_low", "pi_high"):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(np.full(table.num_rows, np.nan)))
    for name in INFERENCE_FIELDS:
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), name, wise.column(name))
        else:
            table = table.append_column(name, wise.column(name))
    return table.append_column("inference", pa.array(["replicate"] * table.num_rows))


def replicate_global_effects(
    replicate_beta: np.ndarray,
    se: np.ndarray,
    seq_ids: np.ndarray,
    options: LocalMROptions,
    *,
    meta_method: str = "DL",
    alpha: float = 0.05,
    select_on: np.ndarray | None = None,
) -> pa.Table:
    """:func:`replicate_inference` of :func:`replicate_local_effects` (in memory; the audit runs
    the two through its local and meta stages). ``select_on``: the ensemble's effects, whose
    instruments every replicate is fitted on (each replicate's own by default).

    Returns
    -------
    pyarrow.Table
        As :func:`replicate_inference`.

    Raises
    ------
    InputError
        Fewer than two replicates, or shapes that do not match.
    """
    instruments = None if select_on is None else instrument_masks(select_on, se, options)
    local = replicate_local_effects(replicate_beta, se, seq_ids, options, instruments=instruments)
    return replicate_inference(local, method=meta_method, alpha=alpha)

"""The resumable MR stages of a Deep MR audit.

``local_effects.parquet`` is a directory of Parquet parts, one per chunk of ``effects.zarr``,
computed by the engine (:class:`~dmr_ray.deepmr.local_task.LocalMRTask` on CPU actors) and
each written to a temporary name and renamed into place, so a part either exists whole or not
at all. A rerun computes only the missing parts. ``global_effects.parquet`` pools the local
effects per (exposure, outcome, method) with a random-effects meta-analysis.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from dmr_ray._atomic import write_parquet_atomic
from dmr_ray.deepmr.local import LocalMROptions
from dmr_ray.deepmr.local_task import LocalMRTask
from dmr_ray.deepmr.local_task import part_path as part_path  # re-exported: the pipeline's tests use it
from dmr_ray.engine import EngineOptions, run_task
from dmr_ray.errors import InputError
from dmr_ray.stats.meta import meta_analysis_batched

log = logging.getLogger(__name__)


def run_local_stage(
    effects_path: str,
    directory: Path,
    options: LocalMROptions,
    engine: EngineOptions | None = None,
    replicates: Path | None = None,
) -> int:
    """Compute the missing parts of ``local_effects.parquet`` with the engine (CPU actors).

    Parameters
    ----------
    effects_path
        A complete ``effects.zarr``.
    directory
        The ``local_effects.parquet`` dataset directory; it must exist (its identity is the
        caller's business).
    options
        What to compute.
    engine
        How (default :class:`~dmr_ray.engine.EngineOptions` (): one actor per CPU on Ray;
        ``actors=0`` computes in this process).
    replicates
        The ``local_replicates.parquet`` directory (it must exist) for every replicate's
        local effects (the effects store must keep them), or None.

    Returns
    -------
    int
        The number of parts computed by this call (existing parts are skipped).

    Raises
    ------
    InputError
        ``directory`` does not exist.
    ChunkFailedError
        Naming the first failed chunks and their seq_ids, after all other parts are written;
        ``<directory>/_failed_chunks.txt`` lists every failed chunk.
    StalledRunError
        No chunk finished within ``engine.stall_timeout_s``.
    """
    for where in (directory, replicates):
        if where is not None and not where.is_dir():
            raise InputError(f"{where}: the local-MR directory does not exist; create it first")
    return run_task(LocalMRTask(str(effects_path), directory, options, replicates), engine).computed


def read_local_effects(directory: Path) -> pa.Table:
    """All parts of a ``local_effects.parquet`` directory as one table."""
    return ds.dataset(directory, format="parquet").to_table()


GROUP_KEYS = ("exposure", "outcome", "method")
"""The columns of ``local_effects.parquet`` that :func:`global_effects_table` pools by."""

GLOBAL_FIELDS = (
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "p_value",
    "tau2",
    "tau",
    "q",
    "q_p",
    "i2",
    "h2",
    "pi_low",
    "pi_high",
)


def global_effects_table(local: pa.Table, *, method: str = "DL", test: str = "z", alpha: float = 0.05) -> pa.Table:
    """Pool local effects per (exposure, outcome, method) by meta-analysis.

    Only regions with a finite estimate and a positive SE enter (failed or skipped regions
    stay visible in ``local_effects.parquet`` with their reason). ``n_regions`` counts every
    region of the group, ``k`` those pooled.

    Parameters
    ----------
    local
        Local effects (at least the key columns, ``estimate`` and ``se``).
    method, test, alpha
        As for :func:`dmr_ray.stats.meta.meta_analysis`.

    Returns
    -------
    pyarrow.Table
        One row per group, in ascending (exposure, outcome, method) order; within a group the
        regions are pooled in their order in ``local``.
    """
    keys, inverse = group_rows(local, GROUP_KEYS)
    n_groups = len(keys[GROUP_KEYS[0]])
    estimate, standard_errors = (local.column(name).to_numpy() for name in ("estimate", "se"))
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(estimate) & np.isfinite(standard_errors) & (standard_errors > 0)
    n_regions = np.bincount(inverse, minlength=n_groups)
    k = np.bincount(inverse[ok], minlength=n_groups)
    width = max(int(k.max(initial=0)), 1)
    y = np.zeros((n_groups, width))
    se = np.ones((n_groups, width))
    mask = np.zeros((n_groups, width), dtype=bool)
    rows = inverse[ok]
    slot = _rank_within(rows)
    y[rows, slot] = estimate[ok]
    se[rows, slot] = standard_errors[ok]
    mask[rows, slot] = True
    result = meta_analysis_batched(y, se, mask, method=method, test=test, alpha=alpha)
    columns = {**keys, "meta_method": [method] * n_groups, "test": [test] * n_groups}
    columns.update({name: getattr(result, name) for name in GLOBAL_FIELDS})
    columns["k"] = k
    columns["n_regions"] = n_regions
    return pa.table(columns)


def group_rows(table: pa.Table, names: tuple[str, ...]) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Group the rows of ``table`` by the values of the columns ``names``, vectorised.

    Parameters
    ----------
    table
        Any table holding the columns ``names``.
    names
        Key columns, most significant first.

    Returns
    -------
    keys : dict of pyarrow.Array
        Per key column, its value in each group; groups in ascending lexicographic order of
        their key (values compared as Arrow sorts them: strings by code point).
    inverse : numpy.ndarray
        Each row's group index.
    """
    values, codes = zip(*(_ranked(table.column(name)) for name in names), strict=True)
    dims = tuple(len(v) for v in values)
    flat, inverse = np.unique(np.ravel_multi_index(codes, dims), return_inverse=True)
    digits = np.unravel_index(flat, dims)
    return {name: v.take(d) for name, v, d in zip(names, values, digits, strict=True)}, inverse


def _ranked(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The distinct values of ``column`` in ascending order, and each row's index among them."""
    distinct = pc.unique(column)
    distinct = distinct.take(pc.sort_indices(distinct))
    return distinct, pc.index_in(column, value_set=distinct).to_numpy()


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """Position of each element among the earlier elements of the same group."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(groups)) - run_start
    return rank


def run_global_stage(
    local_dir: Path,
    out: Path,
    *,
    method: str,
    test: str,
    alpha: float = 0.05,
    replicates: Path | None = None,
) -> pa.Table:
    """Meta-analyse ``local_effects.parquet`` into ``global_effects.parquet`` (atomically).

    With ``replicates`` (the ``local_replicates.parquet`` directory) the inference is the
    replicates' (:func:`~dmr_ray.deepmr.replicates.with_replicate_inference`), else the pooled
    one; the column ``inference`` says which (``"replicate"`` or ``"pooled"``).
    """
    from dmr_ray.deepmr.replicates import with_replicate_inference  # it builds on this module

    started = time.monotonic()
    table = global_effects_table(read_local_effects(local_dir), method=method, test=test, alpha=alpha)
    if replicates is None:
        table = table.append_column("inference", pa.array(["pooled"] * table.num_rows, type=pa.string()))
    else:
        table = with_replicate_inference(table, read_local_effects(replicates), alpha=alpha)
    write_parquet_atomic(out, table)
    log.info(
        "global effects: %d (exposure, outcome, method) groups in %.1f s", table.num_rows, time.monotonic() - started
    )
    return table

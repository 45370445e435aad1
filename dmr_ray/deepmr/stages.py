"""The resumable MR stages of a Deep MR audit.

``local_effects.parquet`` is a directory of Parquet parts, one per chunk of ``effects.zarr``,
each written by a Ray CPU task to a temporary name and renamed into place, so a part either
exists whole or not at all. A rerun computes only the missing parts; a rerun with different
options is refused (``_stage.json`` records them). ``global_effects.parquet`` pools the local
effects per (exposure, outcome, method) with a random-effects meta-analysis.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dmr_ray.deepmr.local import LocalMROptions, local_effects_table
from dmr_ray.engine.progress import Progress
from dmr_ray.errors import ChunkFailedError, ResumeConflictError
from dmr_ray.stats.meta import meta_analysis_batched

log = logging.getLogger(__name__)

STAGE_FILE = "_stage.json"


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temporary name and rename it into place."""
    tmp = _temporary(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_text_atomic(text: str, path: Path) -> None:
    """Write a text file under a temporary name and rename it into place."""
    tmp = _temporary(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def part_path(directory: Path, index: int) -> Path:
    """The Parquet part of effects chunk ``index``."""
    return directory / f"part-{index:06d}.parquet"


def claim_directory(directory: Path, identity: dict, *, overwrite: bool = False) -> None:
    """Create ``directory`` for a stage, or check that its recorded identity matches.

    Raises
    ------
    ResumeConflictError
        When the directory holds results computed with a different ``identity``.
    """
    stage_file = directory / STAGE_FILE
    if overwrite and directory.exists():
        for child in directory.iterdir():
            child.unlink()
    if stage_file.exists():
        recorded = json.loads(stage_file.read_text())
        if recorded != identity:
            keys = sorted(k for k in set(recorded) | set(identity) if recorded.get(k) != identity.get(k))
            raise ResumeConflictError(
                f"{directory} holds results computed with different settings ({', '.join(keys)}); "
                "rerun with --overwrite to start fresh, or choose another output directory"
            )
        return
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(identity, indent=1, sort_keys=True), stage_file)


def _local_chunk(effects_path: str, index: int, options: LocalMROptions, out: str) -> int:
    from dmr_ray.store import EffectsStore

    chunk = EffectsStore.open(effects_path, mode="r").read_chunk(index)
    table = local_effects_table(chunk["beta"], chunk["se"], chunk["seq_id"], options)
    write_atomic(table, Path(out))
    return table.num_rows


def run_local_stage(
    effects_path: str,
    directory: Path,
    options: LocalMROptions,
    *,
    overwrite: bool = False,
    max_in_flight: int | None = None,
    stall_timeout_s: float = 1800.0,
) -> int:
    """Compute the missing parts of ``local_effects.parquet`` as Ray CPU tasks.

    Parameters
    ----------
    effects_path
        A complete ``effects.zarr``.
    directory
        The ``local_effects.parquet`` dataset directory.
    options
        What to compute; recorded and compared on resume.
    overwrite
        Discard existing parts first.
    max_in_flight
        Tasks submitted at once (default: twice the cluster's CPUs).
    stall_timeout_s
        Fail with a clear error when no task finishes for this long.

    Returns
    -------
    int
        The number of parts computed by this call (existing parts are skipped).

    Raises
    ------
    ChunkFailedError
        Naming every chunk whose task failed, after all other parts are written.
    """
    import ray

    from dmr_ray.store import EffectsStore

    effects = EffectsStore.open(effects_path, mode="r")
    claim_directory(directory, {"effects": str(effects_path), **_jsonable(asdict(options))}, overwrite=overwrite)
    todo = [i for i in range(effects.n_chunks) if not part_path(directory, i).exists()]
    task = ray.remote(num_cpus=1, max_retries=2)(_local_chunk)
    limit = max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    progress = Progress(len(todo), "local MR", mutants_per_sequence=1, rate_unit="sequences")
    pending: dict = {}
    failures: list[str] = []
    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                index = queue.pop(0)
                ref = task.remote(str(effects_path), index, options, str(part_path(directory, index)))
                pending[ref] = index
            done, _ = ray.wait(list(pending), num_returns=1, timeout=stall_timeout_s)
            if not done:
                raise ChunkFailedError(
                    f"local MR stalled: no chunk finished within {stall_timeout_s:.0f} s "
                    f"(chunks in flight: {sorted(pending.values())}); check the Ray cluster's CPUs"
                )
            for ref in done:
                index = pending.pop(ref)
                start, stop = effects.chunk_bounds(index)
                try:
                    ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - reported with the chunk below
                    ids = effects.seq_ids(start, stop)
                    failures.append(f"chunk {index} (seq_ids {ids[0]}..{ids[-1]}): {_cause(exc)}")
                progress.advance(stop - start)
    finally:
        progress.close()
    if failures:
        raise ChunkFailedError(
            "local MR failed for "
            + "; ".join(failures)
            + "; the other chunks are written and a rerun retries only these"
        )
    return len(todo)


def _cause(exc: Exception) -> str:
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {cause}"


def _jsonable(data: dict) -> dict:
    return json.loads(json.dumps(data, default=list))


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


def run_global_stage(local_dir: Path, out: Path, *, method: str, test: str, alpha: float = 0.05) -> pa.Table:
    """Meta-analyse ``local_effects.parquet`` into ``global_effects.parquet`` (atomically)."""
    started = time.monotonic()
    table = global_effects_table(read_local_effects(local_dir), method=method, test=test, alpha=alpha)
    write_atomic(table, out)
    log.info(
        "global effects: %d (exposure, outcome, method) groups in %.1f s", table.num_rows, time.monotonic() - started
    )
    return table

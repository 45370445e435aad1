"""The task protocol: what the engine needs to know to run any chunked, resumable work.

A :class:`ChunkTask` is a small, picklable description of the work (paths and options, no
open models). The engine asks it, in the driver, which chunks are still to do
(:meth:`~ChunkTask.pending`), how much each chunk counts for progress
(:meth:`~ChunkTask.units`) and how to name a chunk in an error
(:meth:`~ChunkTask.describe_chunk`). In each actor (or once in process) it calls
:meth:`~ChunkTask.setup` for one *shard* (ISM: a replicate group; GRIDS: a block of cells),
which loads what the shard needs and returns a :class:`ChunkWorker`; the worker computes one
chunk of its shard into a *partial*. The partials of all shards of a chunk are combined by
:meth:`~ChunkTask.reduce`; the reduced value is either committed (:meth:`~ChunkTask.commit`,
in a worker) or, for a task with ``returns_values``, handed back to the driver in
:attr:`TaskRun.values`.

A persistent pool (:func:`~dmr_ray.engine.run.open_pool`) runs any number of calls on the same
workers; a call may carry a small picklable input (``params``, e.g. the current subset of a
search step), which reaches :meth:`StepWorker.compute`. A call without input (``params`` is
``None``, as in :func:`~dmr_ray.engine.run.run_task`) calls ``compute(index)``, so workers
that take no input need no change (:func:`compute_partial`).

With one shard and a committing task, the actor that computed a chunk commits it itself, so
neither partials nor results pass through the driver.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from dmr_ray.engine.resources import ActorResources


class ChunkWorker(Protocol):
    """What :meth:`ChunkTask.setup` returns: one shard's state, kept across chunks."""

    def compute(self, index: int) -> Any:
        """The partial result of chunk ``index`` for this worker's shard.

        Raises
        ------
        Exception
            Any error is recorded as a deterministic failure of the chunk.
        """
        ...

    def describe(self) -> str:
        """One line saying what the worker holds (device, shard), for logs."""
        ...


class StepWorker(Protocol):
    """A :class:`ChunkWorker` that takes a per-call input (the ``params`` of a pool's call)."""

    def compute(self, index: int, params: Any = None) -> Any:
        """The partial result of chunk ``index`` for this worker's shard, given the call's ``params``.

        ``params`` is ``None`` for calls without input (e.g. :func:`~dmr_ray.engine.run.run_task`).
        """
        ...

    def describe(self) -> str:
        """One line saying what the worker holds (device, shard), for logs."""
        ...


def compute_partial(worker: ChunkWorker, index: int, params: Any = None) -> Any:
    """``worker``'s partial of chunk ``index``: ``compute(index)`` without input, else ``compute(index, params)``.

    Parameters
    ----------
    worker
        A shard's worker; it must be a :class:`StepWorker` when ``params`` is not ``None``.
    index
        The chunk.
    params
        The call's input, or ``None``.
    """
    if params is None:
        return worker.compute(index)
    return cast(StepWorker, worker).compute(index, params)


class ChunkTask(abc.ABC):
    """Chunked, resumable work the engine can run in process or on a pool of actors.

    Attributes
    ----------
    label : str
        What is computed, for progress lines and errors (``"ism"``, ``"local MR"``).
    unit : str
        What progress counts (``"mutants"``, ``"sequences"``, ``"cells"``).
    n_shards : int
        Shards each chunk is split into; one actor serves one shard.
    returns_values : bool
        True: each chunk's reduced value comes back to the driver (:attr:`TaskRun.values`)
        and nothing is committed. False: the reduced value is committed by a worker.
    device : str or None
        Torch device the workers need (``None``: CUDA when the cluster has GPUs).
    location : str
        Where committed results go, for messages.
    failure_file : str or None
        Path or fsspec URL where a failed run lists every failed chunk, one per line.
    shard_name : str
        What a shard is, for errors (``"replicate group"``).
    """

    label: str
    unit: str
    n_shards: int = 1
    returns_values: bool = False
    device: str | None = None
    location: str = ""
    failure_file: str | None = None
    shard_name: str = "shard"

    @abc.abstractmethod
    def pending(self) -> list[int]:
        """Chunk indices still to compute, in order (committed ones are skipped: resume)."""

    @property
    @abc.abstractmethod
    def n_chunks(self) -> int:
        """Chunks of the whole work, done or not."""

    @abc.abstractmethod
    def units(self, index: int) -> int:
        """Units of progress (:attr:`unit`) that chunk ``index`` accounts for."""

    @abc.abstractmethod
    def describe_chunk(self, index: int) -> str:
        """Chunk ``index`` and its items for an error, e.g. ``chunk 2 (rows 8..12, seq_ids [...])``."""

    @abc.abstractmethod
    def setup(self, shard: int, resources: ActorResources) -> ChunkWorker:
        """Load what shard ``shard`` needs (a model, plans) on ``resources.device``; runs once per actor."""

    def reduce(self, index: int, partials: Sequence[Any]) -> Any:
        """Combine the shards' partials of chunk ``index`` (in shard order); default: the only one."""
        if len(partials) != 1:
            raise NotImplementedError(f"{type(self).__name__} has {len(partials)} shards but no reduce()")
        return partials[0]

    def commit(self, index: int, value: Any) -> None:  # noqa: B027 - optional hook
        """Write chunk ``index``'s reduced value (in a worker); unused with ``returns_values``."""

    def is_committed(self, index: int) -> bool:
        """Whether chunk ``index`` is already committed (an earlier attempt whose reply was lost)."""
        return False


@dataclass(frozen=True)
class ChunkReport:
    """What finishing one chunk did.

    Attributes
    ----------
    index : int
        The chunk.
    units : int
        Units of progress of the chunk (:attr:`ChunkTask.units`).
    computed : bool
        False when the chunk was found committed already, so nothing was recomputed.
    pid : int
        Process that committed (or reduced) it: an actor, a reduce task or the driver.
    seconds : float
        Wall time spent on it by that process.
    """

    index: int
    units: int
    computed: bool
    pid: int
    seconds: float


@dataclass(frozen=True)
class TaskRun:
    """What one run of a :class:`ChunkTask` did.

    Attributes
    ----------
    n_chunks : int
        Chunks of the whole work.
    computed : int
        Chunks finished by this run.
    skipped : int
        Chunks of the task this run did not compute: found done before it (resume), or not
        among the chunks a pool's call asked for.
    units : int
        Units of progress (the task's :attr:`~ChunkTask.unit`) of the finished chunks.
    startup_s : float
        Seconds until the first worker was ready (Ray start, actor placement, model load).
    compute_s : float
        Seconds from then until the last chunk finished.
    reassigned : int
        Units of work given to another (or a restarted) actor after a worker was lost.
    values : Mapping[int, Any]
        Per chunk, the reduced value (tasks with ``returns_values``; empty otherwise).
    """

    n_chunks: int
    computed: int
    skipped: int
    units: int
    startup_s: float
    compute_s: float
    reassigned: int = 0
    values: Mapping[int, Any] = field(default_factory=dict)


def commit_chunk(task: ChunkTask, index: int, partials: Callable[[], Sequence[Any]]) -> ChunkReport:
    """Reduce and commit chunk ``index`` of ``task`` unless it is committed already.

    ``partials`` computes (or fetches) the shards' partials; it is not called for a chunk
    already committed. Used alike by actors, reduce tasks and the in-process runner.
    """
    began = time.perf_counter()
    if task.is_committed(index):
        return ChunkReport(index, task.units(index), False, os.getpid(), 0.0)
    task.commit(index, task.reduce(index, partials()))
    return ChunkReport(index, task.units(index), True, os.getpid(), time.perf_counter() - began)

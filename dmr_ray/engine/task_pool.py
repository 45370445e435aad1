"""Persistent pools: set up each shard's workers once, then run any number of calls on them.

A :class:`TaskPool` holds the workers of one :class:`~dmr_ray.engine.task.ChunkTask`: Ray
actors (:class:`ActorPool`) or, for ``actors=0``, one worker per shard in this process
(:class:`InProcessPool`). Each :meth:`TaskPool.run` computes the chunks it is given (default:
the task's pending ones) with the call's input ``params`` and returns a
:class:`~dmr_ray.engine.task.TaskRun` (the reduced values, for tasks with
``returns_values``). The workers are set up by the first call that has chunks to compute and
kept until :meth:`TaskPool.close` (the end of a ``with`` block, also on an exception or
Ctrl-C), so a search that runs many steps loads each shard once.

Inside each call the engine's fault handling holds as in a single run: an actor lost between
or during calls is restarted by Ray, set up again, and given its chunks of the current call
again; a call in which nothing finishes for ``stall_timeout_s`` raises
:class:`~dmr_ray.errors.StalledRunError`; chunks that fail deterministically are reported
after the call's other chunks (:class:`~dmr_ray.errors.ChunkFailedError`).
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import ray

from dmr_ray._checks import is_int
from dmr_ray.engine.failures import FailureLog
from dmr_ray.engine.options import EngineOptions
from dmr_ray.engine.pool import PoolActor, PoolPlan, start_actors
from dmr_ray.engine.progress import Progress
from dmr_ray.engine.resources import ActorResources
from dmr_ray.engine.scheduler import ChunkScheduler
from dmr_ray.engine.task import ChunkReport, ChunkTask, ChunkWorker, TaskRun, commit_chunk, compute_partial
from dmr_ray.errors import EngineError, InputError

OnCommit = Callable[[ChunkReport], None]
"""Called in the driver with the report of each finished chunk."""


class TaskPool(abc.ABC):
    """The workers of ``task``, kept across calls; a context manager that closes them.

    Parameters
    ----------
    task
        The work; its shards are set up once, by the first call with chunks to compute.
    """

    def __init__(self, task: ChunkTask) -> None:
        self.task = task
        self._closed = False

    def run(
        self, chunks: Sequence[int] | None = None, *, params: Any = None, on_commit: OnCommit | None = None
    ) -> TaskRun:
        """Compute ``chunks`` with the input ``params`` on the pool's workers.

        Parameters
        ----------
        chunks
            Distinct chunk indices, in order; default the task's pending chunks.
        params
            A small picklable value passed to every worker's ``compute(index, params)``
            (:class:`~dmr_ray.engine.task.StepWorker`); ``None`` calls ``compute(index)``.
        on_commit
            Called in the driver with each finished chunk's report.

        Returns
        -------
        TaskRun
            This call's chunks, timings and (tasks with ``returns_values``) reduced values.

        Raises
        ------
        InputError
            ``chunks`` holds a duplicate or an index outside the task.
        EngineError
            The pool is closed, or every worker of a shard is lost.
        ChunkFailedError
            After the call's other chunks are finished, naming the failed ones.
        StalledRunError
            Nothing finished for ``stall_timeout_s`` seconds.
        """
        if self._closed:
            raise EngineError(f"{self.task.label}: the pool is closed; open a new one")
        todo = self.task.pending() if chunks is None else _checked(chunks, self.task.n_chunks)
        progress = Progress(len(todo), self.task.label, self.task.unit)
        failures = FailureLog(self.task)
        values: dict[int, Any] = {}
        reassigned = 0
        try:
            if todo:
                values, reassigned = self._compute(todo, params, progress, failures, on_commit)
        finally:
            progress.close()
        failures.raise_if_any()
        return TaskRun(
            n_chunks=self.task.n_chunks,
            computed=progress.done,
            skipped=self.task.n_chunks - len(todo),
            units=progress.units,
            startup_s=progress.startup_s,
            compute_s=progress.compute_s,
            reassigned=reassigned,
            values=values,
        )

    def close(self) -> None:
        """Stop the workers (kill the actors); later calls raise :class:`EngineError`."""
        self._closed = True
        self._stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    @abc.abstractmethod
    def _compute(
        self, todo: list[int], params: Any, progress: Progress, failures: FailureLog, on_commit: OnCommit | None
    ) -> tuple[dict[int, Any], int]:
        """Finish or fail every chunk of ``todo``; the reduced values (if returned) and units reassigned."""

    @abc.abstractmethod
    def _stop(self) -> None:
        """Release the workers."""


class InProcessPool(TaskPool):
    """One worker per shard in this process (``actors=0``), chunk by chunk.

    A chunk is finished whole before the next begins, so an interrupted call loses at most the
    chunk in flight.
    """

    def __init__(self, task: ChunkTask) -> None:
        super().__init__(task)
        self._workers: list[ChunkWorker] = []

    def _compute(
        self, todo: list[int], params: Any, progress: Progress, failures: FailureLog, on_commit: OnCommit | None
    ) -> tuple[dict[int, Any], int]:
        task = self.task
        if not self._workers:
            resources = _in_process_resources(task.device)
            self._workers = [task.setup(shard, resources) for shard in range(task.n_shards)]
        progress.start()
        values: dict[int, Any] = {}
        for index in todo:

            def partials(index: int = index) -> list[Any]:
                return [compute_partial(worker, index, params) for worker in self._workers]

            try:
                if task.returns_values:
                    began = time.perf_counter()
                    values[index] = task.reduce(index, partials())
                    report = ChunkReport(index, task.units(index), True, os.getpid(), time.perf_counter() - began)
                else:
                    report = commit_chunk(task, index, partials)
            except Exception as err:  # noqa: BLE001 - recorded and reported after the other chunks
                failures.add(index, err)
                continue
            progress.advance(report.units)
            if on_commit is not None:
                on_commit(report)
        return values, 0

    def _stop(self) -> None:
        self._workers = []


class ActorPool(TaskPool):
    """Ray actors sized by ``plan`` (Ray connected), started by the first call with chunks.

    Parameters
    ----------
    task
        The work; actor ``k`` serves shard ``k % task.n_shards``.
    plan
        How many actors of what size, in which placement group (:func:`~dmr_ray.engine.pool.plan_pool`).
    options
        Restarts, backpressure, stall timeout, runtime environment.
    """

    def __init__(self, task: ChunkTask, plan: PoolPlan, options: EngineOptions) -> None:
        super().__init__(task)
        self.plan = plan
        self.options = options
        self._actors: list[PoolActor] = []

    def _compute(
        self, todo: list[int], params: Any, progress: Progress, failures: FailureLog, on_commit: OnCommit | None
    ) -> tuple[dict[int, Any], int]:
        if not self._actors:
            self._actors = start_actors(self.task, self.plan, self.options)
        scheduler = ChunkScheduler(
            self.task,
            self._actors,
            todo,
            self.plan,
            self.options,
            failures=failures,
            progress=progress,
            on_commit=on_commit,
            params=None if params is None else ray.put(params),
        )
        scheduler.run()
        return scheduler.values, scheduler.reassigned

    def _stop(self) -> None:
        actors, self._actors = self._actors, []
        for actor in actors:
            ray.kill(actor.handle, no_restart=True)


def _checked(chunks: Sequence[int], n_chunks: int) -> list[int]:
    """``chunks`` as a list, refused unless distinct integer indices below ``n_chunks``."""
    todo = list(chunks)
    bad = [c for c in todo if not is_int(c) or not 0 <= c < n_chunks]
    if bad:
        raise InputError(f"chunks: {bad[:5]} are not chunk indices of the task (0..{n_chunks - 1})")
    if len(set(todo)) < len(todo):
        raise InputError(f"chunks: {sorted({c for c in todo if todo.count(c) > 1})} are asked for more than once")
    return todo


def _in_process_resources(device: str | None) -> ActorResources:
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return ActorResources(num_cpus=0.0, num_gpus=0.0, threads=torch.get_num_threads(), device=device)

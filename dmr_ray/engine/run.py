"""Run any :class:`~dmr_ray.engine.task.ChunkTask`: in this process, or on a pool of Ray actors.

The same code runs on a laptop, on a cluster and inside a Ray Tune trial: with no address
(and no ``RAY_ADDRESS``) :func:`connect` starts a local Ray instance without a dashboard;
``"auto"`` or an explicit address joins a running cluster; an existing connection (a Ray
worker, a Tune trial) is reused and never shut down. The pool is sized from the current
placement group's bundles when there is one (:mod:`dmr_ray.engine.pool`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import ray

from dmr_ray.engine.failures import FailureLog
from dmr_ray.engine.options import EngineOptions
from dmr_ray.engine.pool import PoolActor, PoolPlan, plan_pool, start_actors
from dmr_ray.engine.progress import Progress
from dmr_ray.engine.resources import ActorResources
from dmr_ray.engine.scheduler import ChunkScheduler
from dmr_ray.engine.task import ChunkReport, ChunkTask, TaskRun, commit_chunk

OnCommit = Callable[[ChunkReport], None]
"""Called in the driver with the report of each finished chunk."""


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Make this process a Ray driver, unless it already is (or is a Ray worker).

    Parameters
    ----------
    address
        As :attr:`EngineOptions.address`.
    num_cpus
        Logical CPUs of a local instance (ignored when joining a cluster).

    Returns
    -------
    bool
        Whether this call connected (and the caller should call ``ray.shutdown()``).
    """
    if ray.is_initialized():
        return False
    if address is not None or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False, num_cpus=num_cpus)
    return True


def run_task(task: ChunkTask, options: EngineOptions | None = None, *, on_commit: OnCommit | None = None) -> TaskRun:
    """Run ``task``'s pending chunks: in this process for ``actors=0``, else on Ray.

    Raises
    ------
    ChunkFailedError
        After every other chunk is finished, naming the first failed chunks and the file
        that lists them all.
    StalledRunError, EngineError
        The run could not go on (committed chunks are kept), or the resources can never
        hold the pool.
    """
    options = options or EngineOptions()
    if options.actors == 0:
        return run_in_process_task(task, on_commit=on_commit)
    started = connect(options.address)
    try:
        plan = plan_pool(task.n_shards, task.device, options)
        return run_on_pool(task, plan, options, on_commit=on_commit)
    finally:
        if started:
            ray.shutdown()


def run_in_process_task(task: ChunkTask, *, on_commit: OnCommit | None = None) -> TaskRun:
    """Run ``task``'s pending chunks in this process, one shard worker each, chunk by chunk.

    A chunk is finished whole before the next begins, so an interrupted run loses at most the
    chunk in flight. Failed chunks are reported (as :func:`run_task`) after the others.
    """
    todo = task.pending()
    progress = Progress(len(todo), task.label, task.unit)
    failures = FailureLog(task)
    values: dict[int, Any] = {}
    try:
        if todo:
            resources = _in_process_resources(task.device)
            workers = [task.setup(shard, resources) for shard in range(task.n_shards)]
            progress.start()
        for index in todo:

            def partials(index: int = index) -> list[Any]:
                return [worker.compute(index) for worker in workers]

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
    finally:
        progress.close()
    failures.raise_if_any()
    return _summary(task, todo, progress, values)


def run_on_pool(
    task: ChunkTask, plan: PoolPlan, options: EngineOptions, *, on_commit: OnCommit | None = None
) -> TaskRun:
    """Run ``task``'s pending chunks on a pool of actors sized by ``plan`` (Ray connected)."""
    todo = task.pending()
    progress = Progress(len(todo), task.label, task.unit)
    failures = FailureLog(task)
    actors: list[PoolActor] = []
    values: dict[int, Any] = {}
    reassigned = 0
    try:
        if todo:
            actors = start_actors(task, plan, options)
            scheduler = ChunkScheduler(
                task, actors, todo, plan, options, failures=failures, progress=progress, on_commit=on_commit
            )
            scheduler.run()
            values, reassigned = scheduler.values, scheduler.reassigned
    finally:
        progress.close()
        for actor in actors:
            ray.kill(actor.handle, no_restart=True)
    failures.raise_if_any()
    return _summary(task, todo, progress, values, reassigned)


def _summary(
    task: ChunkTask, todo: list[int], progress: Progress, values: dict[int, Any], reassigned: int = 0
) -> TaskRun:
    return TaskRun(
        n_chunks=task.n_chunks,
        computed=progress.done,
        skipped=task.n_chunks - len(todo),
        units=progress.units,
        startup_s=progress.startup_s,
        compute_s=progress.compute_s,
        reassigned=reassigned,
        values=values,
    )


def _in_process_resources(device: str | None) -> ActorResources:
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return ActorResources(num_cpus=0.0, num_gpus=0.0, threads=torch.get_num_threads(), device=device)

"""Run any :class:`~dmr_ray.engine.task.ChunkTask`: in this process, or on a pool of Ray actors.

The same code runs on a laptop, on a cluster and inside a Ray Tune trial: with no address
(and no ``RAY_ADDRESS``) :func:`connect` starts a local Ray instance without a dashboard;
``"auto"`` or an explicit address joins a running cluster; an existing connection (a Ray
worker, a Tune trial) is reused and never shut down. The pool is sized from the current
placement group's bundles when there is one (:mod:`dmr_ray.engine.pool`).

:func:`open_pool` keeps a task's workers across any number of calls
(:mod:`dmr_ray.engine.task_pool`); :func:`run_task` is one call on such a pool.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from dmr_ray.engine.options import EngineOptions
from dmr_ray.engine.pool import plan_pool
from dmr_ray.engine.task import ChunkTask, TaskRun
from dmr_ray.engine.task_pool import ActorPool, InProcessPool, OnCommit, TaskPool


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


@contextmanager
def open_pool(task: ChunkTask, options: EngineOptions | None = None) -> Iterator[TaskPool]:
    """A persistent pool of ``task``'s workers: in this process for ``actors=0``, else Ray actors.

    Connects to Ray when this process is not connected yet (and disconnects on exit); sizes
    the pool from the cluster or the current placement group (:func:`plan_pool`). The actors
    are killed when the block ends, also on an exception or Ctrl-C.

    Raises
    ------
    InputError, EngineError
        Fewer actors than shards, or resources that can never hold the pool (before any
        actor starts).
    """
    options = options or EngineOptions()
    if options.actors == 0:
        with InProcessPool(task) as local:
            yield local
        return
    started = connect(options.address)
    try:
        with ActorPool(task, plan_pool(task.n_shards, task.device, options), options) as pool:
            yield pool
    finally:
        if started:
            ray.shutdown()


def run_task(task: ChunkTask, options: EngineOptions | None = None, *, on_commit: OnCommit | None = None) -> TaskRun:
    """Run ``task``'s pending chunks: in this process for ``actors=0``, else on Ray (one call of :func:`open_pool`).

    Raises
    ------
    ChunkFailedError
        After every other chunk is finished, naming the first failed chunks and the file
        that lists them all.
    StalledRunError, EngineError
        The run could not go on (committed chunks are kept), or the resources can never
        hold the pool.
    """
    with open_pool(task, options) as pool:
        return pool.run(on_commit=on_commit)

"""The chunk actor and the reduce task: the code that runs in Ray workers.

A :class:`ChunkActor` sets up one shard of a :class:`~dmr_ray.engine.task.ChunkTask` once
(:meth:`~dmr_ray.engine.task.ChunkTask.setup`: load the model, build plans) and computes
chunks by index. With one shard it reduces and commits each chunk itself (:meth:`ChunkActor.run`);
otherwise it returns its shard's partial to the object store (:meth:`ChunkActor.partial`),
where :func:`reduce_task` picks up every shard's partial and commits the chunk, or the driver
fetches them (tasks whose values come back to the driver).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import ray

from dmr_ray.engine.resources import ActorResources, configure_worker, configure_zarr
from dmr_ray.engine.task import ChunkReport, ChunkTask, commit_chunk, compute_partial


@dataclass(frozen=True)
class ActorInfo:
    """Where a chunk actor runs, as reported once it is ready."""

    pid: int
    node: str
    threads: int
    shard: int
    worker: str

    def describe(self) -> str:
        """One line for logs."""
        return f"pid {self.pid} on {self.node}, {self.threads} thread(s), shard {self.shard}: {self.worker}"


@ray.remote(concurrency_groups={"control": 1})  # type: ignore[call-overload]
class ChunkActor:
    """Holds one shard of a task (e.g. a model or one replicate group) and computes chunks by index.

    Chunk methods run one at a time; :meth:`ready` runs in a separate concurrency group so it
    answers while a chunk is being computed.

    Parameters
    ----------
    task
        The task (picklable; :meth:`~dmr_ray.engine.task.ChunkTask.setup` runs here).
    shard
        The shard this actor serves.
    resources
        Its device and torch thread count.
    """

    def __init__(self, task: ChunkTask, shard: int, resources: ActorResources) -> None:
        configure_worker(resources.threads)
        self.task = task
        self.worker = task.setup(shard, resources)
        self._info = ActorInfo(
            pid=os.getpid(),
            node=ray.util.get_node_ip_address(),
            threads=resources.threads,
            shard=shard,
            worker=self.worker.describe(),
        )

    @ray.method(concurrency_group="control")
    def ready(self) -> ActorInfo:
        """Where the actor runs; answers once its shard is set up."""
        return self._info

    def run(self, index: int, params: Any = None) -> ChunkReport:
        """Compute with the call's ``params``, reduce and commit chunk ``index`` (one-shard tasks that commit)."""
        return commit_chunk(self.task, index, lambda: [compute_partial(self.worker, index, params)])

    @ray.method(num_returns=2)
    def partial(self, index: int, params: Any = None) -> tuple[ChunkReport, Any]:
        """This shard's partial of chunk ``index`` for the call's ``params``, and a small report.

        The report lets the driver learn that the chunk succeeded without fetching the partial.
        """
        began = time.perf_counter()
        value = compute_partial(self.worker, index, params)
        report = ChunkReport(index, self.task.units(index), True, os.getpid(), time.perf_counter() - began)
        return report, value


@ray.remote
def reduce_task(task: ChunkTask, index: int, *partials: Any) -> ChunkReport:
    """Reduce every shard's partial of chunk ``index`` and commit it (a Ray task)."""
    configure_zarr()
    return commit_chunk(task, index, lambda: partials)

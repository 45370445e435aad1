"""The driver's loop: keep every replica actor fed, commit each chunk once, survive lost
workers, and fail clearly on deterministic errors and on stalls.

Work is a queue of chunk indices per replicate group. Each live actor holds at most
``max_in_flight`` chunks (backpressure; 2 keeps an actor busy between replies). With
replicate groups, a chunk is *open* from its first group's dispatch until its merge is
committed, and at most ``window`` chunks are open, which bounds the group results waiting in
the object store.

Faults:

* an actor task that fails with :class:`ray.exceptions.RayActorError` (the worker died or
  became unreachable) is put back at the front of its group's queue; the actor is probed
  with :meth:`ReplicaActor.ready`, which answers once Ray has restarted it
  (``max_restarts``) or fails if it cannot, and the actor gets work again only then;
* a chunk whose workers are lost ``max_chunk_attempts`` times, or whose computation raises
  (non-finite predictions, a model error), is recorded in the :class:`FailureLog`; the rest
  of the run goes on;
* a run in which nothing finishes for ``stall_timeout_s`` seconds (actors that cannot be
  placed, a hung model) raises :class:`StalledRunError` describing what is waiting.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError

from dmr_ray.engine.actor import ActorInfo
from dmr_ray.engine.chunks import ChunkReport, FailureLog
from dmr_ray.engine.progress import Progress
from dmr_ray.errors import EngineError, StalledRunError

log = logging.getLogger(__name__)

_WAIT_SLICE_S = 1.0
"""Longest single ``ray.wait``: Python handles Ctrl-C (KeyboardInterrupt) only between waits."""

MergeSubmitter = Callable[[int, list[ray.ObjectRef]], ray.ObjectRef]
"""Starts the merge-and-commit task of a chunk from its groups' result references."""


@dataclass
class PoolActor:
    """A replica actor as the scheduler tracks it.

    Attributes
    ----------
    handle
        The Ray actor handle.
    group
        Index of the replicate group it evaluates (0 when every actor holds all replicates).
    state
        ``"starting"`` (loading, or being restarted), ``"alive"`` or ``"dead"``.
    load
        Chunks submitted to it and not yet answered.
    info
        Where it runs, once it has answered :meth:`ReplicaActor.ready`.
    error
        Why it is dead.
    """

    handle: Any
    group: int
    state: str = "starting"
    load: int = 0
    info: ActorInfo | None = None
    error: str = ""


@dataclass(frozen=True)
class _Task:
    kind: str  # "ready", "run", "partial" or "merge"
    chunk: int
    group: int
    actor: int  # -1 for merge tasks
    since: float


class ChunkScheduler:
    """Distribute ``todo`` chunks over ``actors`` until each is committed or has failed.

    Parameters
    ----------
    actors
        The pool; with ``n_groups > 1`` every group needs at least one actor.
    todo
        Chunk indices to compute, in order.
    n_groups
        Replicate groups. 1: each actor computes and commits whole chunks. More: actors
        return group results and ``merge`` commits each chunk.
    merge
        Submits a chunk's merge task (used when ``n_groups > 1``).
    failures
        Where failed chunks are recorded.
    progress
        Advanced once per committed chunk.
    on_commit
        Called in the driver with each committed chunk's report.
    max_in_flight
        Chunks submitted to one actor and not yet answered.
    max_chunk_attempts
        Worker losses a chunk may suffer before it is recorded as failed.
    stall_timeout_s
        Seconds without any finished work before :class:`StalledRunError`.
    resources
        Description of what each actor requests, for the stall message.
    """

    def __init__(
        self,
        actors: list[PoolActor],
        todo: list[int],
        n_groups: int,
        *,
        merge: MergeSubmitter,
        failures: FailureLog,
        progress: Progress,
        on_commit: Callable[[ChunkReport], None] | None,
        max_in_flight: int,
        max_chunk_attempts: int,
        stall_timeout_s: float,
        resources: str,
    ) -> None:
        self.actors = actors
        self.n_groups = n_groups
        self.merge = merge
        self.failures = failures
        self.progress = progress
        self.on_commit = on_commit
        self.max_in_flight = max_in_flight
        self.max_chunk_attempts = max_chunk_attempts
        self.stall_timeout_s = stall_timeout_s
        self.resources = resources
        self.reassigned = 0
        self._n_todo = len(todo)
        self._queues = [deque(todo) for _ in range(n_groups)]
        per_group = Counter(actor.group for actor in actors)
        self._window = max_in_flight * max(per_group.values()) + 1
        self._open: dict[int, dict[int, ray.ObjectRef]] = {}
        self._committed: set[int] = set()
        self._attempts: Counter[int] = Counter()
        self._tasks: dict[ray.ObjectRef, _Task] = {}
        self._results: dict[ray.ObjectRef, ray.ObjectRef] = {}

    def run(self) -> None:
        """Run until every chunk is committed or failed.

        Raises
        ------
        StalledRunError
            Nothing finished for ``stall_timeout_s`` seconds.
        EngineError
            Every actor of some replicate group is dead.
        """
        for k in range(len(self.actors)):
            self._probe(k)
        last = time.monotonic()
        while len(self._committed) + len(self.failures) < self._n_todo:
            self._check_groups()
            self._dispatch()
            timeout = last + self.stall_timeout_s - time.monotonic()
            if timeout <= 0:
                raise StalledRunError(self._stall_message())
            ready, _ = ray.wait(list(self._tasks), num_returns=1, timeout=min(timeout, _WAIT_SLICE_S))
            for ref in ready:
                self._handle(ref)
                last = time.monotonic()

    def _probe(self, k: int) -> None:
        self.actors[k].state = "starting"
        ref = self.actors[k].handle.ready.remote()
        self._tasks[ref] = _Task("ready", -1, self.actors[k].group, k, time.monotonic())

    def _check_groups(self) -> None:
        for group in range(self.n_groups):
            members = [a for a in self.actors if a.group == group]
            if all(a.state == "dead" for a in members):
                reasons = "; ".join(sorted({a.error for a in members}))
                raise EngineError(
                    f"every actor of replicate group {group} is lost, so the run cannot finish "
                    f"({len(self._committed)} chunks were committed and a rerun resumes): {reasons}"
                )

    def _dispatch(self) -> None:
        submitted = True
        while submitted:
            submitted = False
            alive = [k for k, a in enumerate(self.actors) if a.state == "alive" and a.load < self.max_in_flight]
            for k in sorted(alive, key=lambda k: self.actors[k].load):
                chunk = self._next_chunk(self.actors[k].group)
                if chunk is not None:
                    self._submit(k, chunk)
                    submitted = True

    def _next_chunk(self, group: int) -> int | None:
        queue = self._queues[group]
        while queue and (queue[0] in self.failures or queue[0] in self._committed):
            queue.popleft()
        if not queue:
            return None
        chunk = queue[0]
        if self.n_groups > 1 and chunk not in self._open:
            if len(self._open) >= self._window:
                return None
            self._open[chunk] = {}
        return queue.popleft()

    def _submit(self, k: int, chunk: int) -> None:
        actor = self.actors[k]
        if self.n_groups == 1:
            ref = actor.handle.run.remote(chunk)
        else:
            ref, result = actor.handle.partial.remote(chunk)
            self._results[ref] = result
        self._tasks[ref] = _Task("run" if self.n_groups == 1 else "partial", chunk, actor.group, k, time.monotonic())
        actor.load += 1

    def _handle(self, ref: ray.ObjectRef) -> None:
        task = self._tasks.pop(ref)
        result = self._results.pop(ref, None)
        if task.kind in ("run", "partial"):
            self.actors[task.actor].load -= 1
        try:
            value = ray.get(ref)
        except RayActorError as err:
            self._lost(task, err)
        except RayTaskError as err:
            self._fail(task.chunk, err.cause if isinstance(err.cause, BaseException) else err)
        except RayError as err:
            self._retry(task.chunk, list(range(self.n_groups)), err)
        else:
            self._succeeded(task, value, result)

    def _succeeded(self, task: _Task, value: Any, result: ray.ObjectRef | None) -> None:
        if task.kind == "ready":
            actor = self.actors[task.actor]
            actor.state, actor.info = "alive", value
            log.info("actor %d ready: %s", task.actor, value.describe())
        elif task.kind == "partial":
            parts = self._open.get(task.chunk)
            if parts is None:  # the chunk failed in another group meanwhile
                return
            parts[task.group] = result
            if len(parts) == self.n_groups:
                merge = self.merge(task.chunk, [parts[g] for g in range(self.n_groups)])
                self._tasks[merge] = _Task("merge", task.chunk, -1, -1, time.monotonic())
        else:
            self._commit(value)

    def _commit(self, report: ChunkReport) -> None:
        self._committed.add(report.index)
        self._open.pop(report.index, None)
        self.progress.advance(report.n_sequences)
        if self.on_commit is not None:
            self.on_commit(report)

    def _lost(self, task: _Task, err: RayActorError) -> None:
        actor = self.actors[task.actor]
        if task.kind == "ready":
            actor.state, actor.error = "dead", _loss_reason(err)
            log.warning("actor %d is lost: %s", task.actor, actor.error)
            return
        self.reassigned += 1
        log.warning("actor %d was lost while computing chunk %d; reassigning it", task.actor, task.chunk)
        self._retry(task.chunk, [task.group], err)
        if actor.state == "alive":
            self._probe(task.actor)

    def _retry(self, chunk: int, groups: list[int], err: RayError) -> None:
        self._attempts[chunk] += 1
        if self._attempts[chunk] >= self.max_chunk_attempts:
            self._fail(chunk, f"its workers were lost {self._attempts[chunk]} times while computing it; last: {err}")
            return
        if len(groups) > 1:
            self._open[chunk] = {}
        for group in groups:
            self._queues[group].appendleft(chunk)

    def _fail(self, chunk: int, cause: BaseException | str) -> None:
        if chunk in self.failures:
            return
        self.failures.add(chunk, cause)
        self._open.pop(chunk, None)
        log.error("%s", self.failures.messages[chunk])

    def _stall_message(self) -> str:
        now = time.monotonic()
        lines = [
            f"no work finished for {self.stall_timeout_s:g} s ({len(self._committed)} of {self._n_todo} chunks "
            f"committed by this run; they are kept and a rerun resumes)"
        ]
        starting = [k for k, a in enumerate(self.actors) if a.state == "starting"]
        if starting:
            available = {key: value for key, value in ray.available_resources().items() if key in ("CPU", "GPU")}
            lines.append(
                f"actors {starting} have not started or restarted (each requests {self.resources}; Ray reports "
                f"{available} available): other jobs may hold the resources, or loading the model is slow"
            )
        for task in self._tasks.values():
            if task.kind in ("run", "partial"):
                info = self.actors[task.actor].info
                where = f" (pid {info.pid} on {info.node})" if info else ""
                lines.append(f"chunk {task.chunk} has been on actor {task.actor}{where} for {now - task.since:.0f} s")
            elif task.kind == "merge":
                lines.append(f"the merge of chunk {task.chunk} has waited {now - task.since:.0f} s for a CPU slot")
        lines.append("if one chunk legitimately takes longer, raise the stall timeout (--stall-timeout)")
        return "; ".join(lines)


def _loss_reason(err: RayActorError) -> str:
    """One line saying why an actor is gone: its constructor's exception, or Ray's account."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if err.actor_init_failed:
        return f"its constructor raised {lines[-1]}"
    return " ".join(lines)

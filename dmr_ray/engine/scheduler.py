"""The driver's loop: keep every actor fed, finish each chunk once, survive lost workers, and
fail clearly on deterministic errors and on stalls.

Work is a queue of chunk indices per shard. Each live actor holds at most ``max_in_flight``
chunks (backpressure; 2 keeps an actor busy between replies). A one-shard task that commits
sends whole chunks to its actors (:meth:`ChunkActor.run`). Otherwise each shard's actors
return partials (:meth:`ChunkActor.partial`); a chunk is *open* from its first shard's
dispatch until its partials are reduced, and at most ``window`` chunks are open, which
bounds the partials waiting in the object store. The reduction runs in a reduce task that
commits the chunk, or, for tasks whose values come back to the driver, in the driver.

Faults:

* an actor task that fails with :class:`ray.exceptions.RayActorError` (the worker died or
  became unreachable) is put back at the front of its shard's queue; the actor is probed
  with :meth:`ChunkActor.ready`, which answers once Ray has restarted it (``max_restarts``)
  or fails if it cannot, and the actor gets work again only then;
* a chunk whose workers are lost ``max_chunk_attempts`` times, or whose computation raises
  (non-finite predictions, a model error), is recorded in the :class:`FailureLog`; the rest
  of the run goes on;
* a run in which nothing finishes for ``stall_timeout_s`` seconds (actors that cannot be
  placed, a hung model) raises :class:`StalledRunError` describing what is waiting.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayActorError, RayError, RayTaskError

from dmr_ray.engine.actor import reduce_task
from dmr_ray.engine.failures import FailureLog
from dmr_ray.engine.options import EngineOptions
from dmr_ray.engine.pool import PoolActor, PoolPlan
from dmr_ray.engine.progress import Progress
from dmr_ray.engine.resources import SMALL_TASK_CPUS
from dmr_ray.engine.task import ChunkReport, ChunkTask
from dmr_ray.errors import EngineError, StalledRunError

log = logging.getLogger(__name__)

_WAIT_SLICE_S = 1.0
"""Longest single ``ray.wait``: Python handles Ctrl-C (KeyboardInterrupt) only between waits."""

_REPROBE_S = 0.5
"""Delay before probing again an actor that Ray reported temporarily unavailable (restarting)."""


@dataclass(frozen=True)
class _Call:
    kind: str  # "ready", "run", "partial" or "reduce"
    chunk: int
    shard: int
    actor: int  # -1 for reduce tasks
    since: float


class ChunkScheduler:
    """Distribute ``todo`` chunks of ``task`` over ``actors`` until each is finished or has failed.

    Parameters
    ----------
    task
        The work; its ``n_shards`` and ``returns_values`` decide how chunks are finished.
    actors
        The pool; every shard needs at least one actor.
    todo
        Chunk indices to compute, in order.
    plan
        The pool's plan (resources asked for, placement group for reduce tasks).
    options
        ``max_in_flight``, ``max_chunk_attempts``, ``stall_timeout_s``, ``runtime_env``.
    failures
        Where failed chunks are recorded.
    progress
        Started when the first actor is ready; advanced once per finished chunk.
    on_commit
        Called in the driver with each finished chunk's report.
    params
        The call's input for the workers' ``compute`` (``None``: none), sent with every chunk;
        best an ``ObjectRef`` (put once per call), which Ray resolves in the actor.

    A scheduler serves one call of a pool: the actors' loads are reset (chunks a previous call
    left in flight are no longer tracked) and every actor is probed again when it runs.
    """

    def __init__(
        self,
        task: ChunkTask,
        actors: list[PoolActor],
        todo: list[int],
        plan: PoolPlan,
        options: EngineOptions,
        *,
        failures: FailureLog,
        progress: Progress,
        on_commit: Callable[[ChunkReport], None] | None = None,
        params: Any = None,
    ) -> None:
        self.task = task
        self.actors = actors
        self.plan = plan
        self.options = options
        self.failures = failures
        self.progress = progress
        self.on_commit = on_commit
        self.params = params
        self.reassigned = 0
        self.values: dict[int, Any] = {}
        self._n_shards = task.n_shards
        self._whole = task.n_shards == 1 and not task.returns_values
        self._n_todo = len(todo)
        self._queues = [deque(todo) for _ in range(task.n_shards)]
        per_shard = Counter(actor.shard for actor in actors)
        self._window = options.max_in_flight * max(per_shard.values()) + 1
        self._open: dict[int, dict[int, ray.ObjectRef]] = {}
        self._finished: set[int] = set()
        self._attempts: Counter[int] = Counter()
        self._calls: dict[ray.ObjectRef, _Call] = {}
        self._partials: dict[ray.ObjectRef, ray.ObjectRef] = {}
        self._reprobe: dict[int, float] = {}
        for actor in actors:
            actor.load = 0

    def run(self) -> None:
        """Run until every chunk is finished or failed.

        Raises
        ------
        StalledRunError
            Nothing finished for ``stall_timeout_s`` seconds.
        EngineError
            Every actor of some shard is dead.
        """
        for k in range(len(self.actors)):
            self._probe(k)
        last = time.monotonic()
        while len(self._finished) + len(self.failures) < self._n_todo:
            self._reprobe_due()
            self._check_shards()
            self._dispatch()
            timeout = last + self.options.stall_timeout_s - time.monotonic()
            if timeout <= 0:
                raise StalledRunError(self._stall_message())
            if not self._calls:  # every actor waits to be probed again
                time.sleep(min(timeout, _REPROBE_S))
                continue
            ready, _ = ray.wait(list(self._calls), num_returns=1, timeout=min(timeout, _WAIT_SLICE_S))
            for ref in ready:
                self._handle(ref)
                last = time.monotonic()

    def _probe(self, k: int) -> None:
        self.actors[k].state = "starting"
        ref = self.actors[k].handle.ready.remote()
        self._calls[ref] = _Call("ready", -1, self.actors[k].shard, k, time.monotonic())

    def _reprobe_due(self) -> None:
        now = time.monotonic()
        for k in [k for k, due in self._reprobe.items() if due <= now]:
            del self._reprobe[k]
            self._probe(k)

    def _check_shards(self) -> None:
        for shard in range(self._n_shards):
            members = [a for a in self.actors if a.shard == shard]
            if all(a.state == "dead" for a in members):
                reasons = "; ".join(sorted({a.error for a in members}))
                raise EngineError(
                    f"every actor of {self.task.shard_name} {shard} is lost, so the run cannot finish "
                    f"({len(self._finished)} chunks were finished and a rerun resumes): {reasons}"
                )

    def _dispatch(self) -> None:
        submitted = True
        while submitted:
            submitted = False
            limit = self.options.max_in_flight
            alive = [k for k, a in enumerate(self.actors) if a.state == "alive" and a.load < limit]
            for k in sorted(alive, key=lambda k: self.actors[k].load):
                chunk = self._next_chunk(self.actors[k].shard)
                if chunk is not None:
                    self._submit(k, chunk)
                    submitted = True

    def _next_chunk(self, shard: int) -> int | None:
        queue = self._queues[shard]
        while queue and (queue[0] in self.failures or queue[0] in self._finished):
            queue.popleft()
        if not queue:
            return None
        chunk = queue[0]
        if not self._whole and chunk not in self._open:
            if len(self._open) >= self._window:
                return None
            self._open[chunk] = {}
        return queue.popleft()

    def _submit(self, k: int, chunk: int) -> None:
        actor = self.actors[k]
        if self._whole:
            ref = actor.handle.run.remote(chunk, self.params)
        else:
            ref, partial = actor.handle.partial.remote(chunk, self.params)
            self._partials[ref] = partial
        self._calls[ref] = _Call("run" if self._whole else "partial", chunk, actor.shard, k, time.monotonic())
        actor.load += 1

    def _handle(self, ref: ray.ObjectRef) -> None:
        call = self._calls.pop(ref)
        partial = self._partials.pop(ref, None)
        if call.kind in ("run", "partial"):
            self.actors[call.actor].load -= 1
        try:
            value = ray.get(ref)
        except RayActorError as err:
            self._lost(call, err)
        except RayTaskError as err:
            self._fail(call.chunk, err.cause if isinstance(err.cause, BaseException) else err)
        except RayError as err:
            self._retry(call.chunk, list(range(self._n_shards)), err)
        else:
            self._succeeded(call, value, partial)

    def _succeeded(self, call: _Call, value: Any, partial: ray.ObjectRef | None) -> None:
        if call.kind == "ready":
            actor = self.actors[call.actor]
            actor.state, actor.info = "alive", value
            self.progress.start()
            log.info("actor %d ready: %s", call.actor, value.describe())
        elif call.kind == "partial":
            parts = self._open.get(call.chunk)
            if parts is None or partial is None:  # the chunk failed in another shard meanwhile
                return
            parts[call.shard] = partial
            if len(parts) == self._n_shards:
                self._reduce(call.chunk, [parts[s] for s in range(self._n_shards)])
        else:
            self._finish(value)

    def _reduce(self, chunk: int, parts: list[ray.ObjectRef]) -> None:
        if not self.task.returns_values:
            task = reduce_task.options(
                num_cpus=SMALL_TASK_CPUS, runtime_env=self.options.ray_runtime_env(), **self.plan.options()
            )
            ref = task.remote(self.task, chunk, *parts)
            self._calls[ref] = _Call("reduce", chunk, -1, -1, time.monotonic())
            return
        began = time.perf_counter()
        try:
            self.values[chunk] = self.task.reduce(chunk, ray.get(parts))
        except RayError as err:
            self._retry(chunk, list(range(self._n_shards)), err)
        except Exception as err:  # noqa: BLE001 - a failure of this chunk, reported with the others
            self._fail(chunk, err)
        else:
            self._finish(ChunkReport(chunk, self.task.units(chunk), True, os.getpid(), time.perf_counter() - began))

    def _finish(self, report: ChunkReport) -> None:
        self._finished.add(report.index)
        self._open.pop(report.index, None)
        self.progress.advance(report.units)
        if self.on_commit is not None:
            self.on_commit(report)

    def _lost(self, call: _Call, err: RayActorError) -> None:
        actor = self.actors[call.actor]
        if call.kind == "ready" and isinstance(err, ActorUnavailableError):  # restarting: ask again shortly
            self._reprobe[call.actor] = time.monotonic() + _REPROBE_S
            return
        if call.kind == "ready":
            actor.state, actor.error = "dead", _loss_reason(err)
            log.warning("actor %d is lost: %s", call.actor, actor.error)
            return
        self.reassigned += 1
        log.warning("actor %d was lost while computing chunk %d; reassigning it", call.actor, call.chunk)
        self._retry(call.chunk, [call.shard], err)
        if actor.state == "alive":
            self._probe(call.actor)

    def _retry(self, chunk: int, shards: list[int], err: RayError) -> None:
        self._attempts[chunk] += 1
        if self._attempts[chunk] >= self.options.max_chunk_attempts:
            self._fail(chunk, f"its workers were lost {self._attempts[chunk]} times while computing it; last: {err}")
            return
        if len(shards) > 1:
            self._open[chunk] = {}
        for shard in shards:
            self._queues[shard].appendleft(chunk)

    def _fail(self, chunk: int, cause: BaseException | str) -> None:
        if chunk in self.failures:
            return
        self.failures.add(chunk, cause)
        self._open.pop(chunk, None)

    def _stall_message(self) -> str:
        now = time.monotonic()
        lines = [
            f"no work finished for {self.options.stall_timeout_s:g} s ({len(self._finished)} of {self._n_todo} "
            f"chunks of {self.task.label} finished by this run; committed ones are kept and a rerun resumes)"
        ]
        starting = [k for k, a in enumerate(self.actors) if a.state == "starting"]
        if starting:
            available = {key: value for key, value in ray.available_resources().items() if key in ("CPU", "GPU")}
            lines.append(
                f"actors {starting} have not started or restarted (each requests {self.plan.resources.describe()}; "
                f"Ray reports {available} available): other jobs may hold the resources, or setting up "
                f"(e.g. loading the model) is slow"
            )
        for call in self._calls.values():
            if call.kind in ("run", "partial"):
                info = self.actors[call.actor].info
                where = f" (pid {info.pid} on {info.node})" if info else ""
                lines.append(f"chunk {call.chunk} has been on actor {call.actor}{where} for {now - call.since:.0f} s")
            elif call.kind == "reduce":
                lines.append(f"the reduction of chunk {call.chunk} has waited {now - call.since:.0f} s for a CPU slot")
        lines.append("if one chunk legitimately takes longer, raise the stall timeout (--stall-timeout)")
        return "; ".join(lines)


def _loss_reason(err: RayActorError) -> str:
    """One line saying why an actor is gone: its constructor's exception, or Ray's account."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if err.actor_init_failed:
        return f"its constructor raised {lines[-1]}"
    return " ".join(lines)

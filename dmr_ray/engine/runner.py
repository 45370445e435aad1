"""Run an ISM job on Ray: connect, size and start the replica actors, schedule, clean up.

The same code runs on a laptop and on a cluster: with no address (and no ``RAY_ADDRESS``)
:func:`connect` starts a local Ray instance without a dashboard; ``"auto"`` or an explicit
address joins a running cluster, as a job submitted with ``ray job submit`` does through
``RAY_ADDRESS``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ray

from dmr_ray.engine.actor import ReplicaActor, merge_task
from dmr_ray.engine.chunks import ChunkReport, FailureLog
from dmr_ray.engine.job import IsmJob, RunSummary, new_run_id, open_job, run_in_process, summarise
from dmr_ray.engine.progress import Progress
from dmr_ray.engine.replicas import split_replicates
from dmr_ray.engine.resources import SMALL_TASK_CPUS, ActorResources, default_actor_count, plan_resources
from dmr_ray.engine.scheduler import ChunkScheduler, PoolActor
from dmr_ray.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    """How a job is run (not what it computes: results do not depend on these).

    Attributes
    ----------
    actors : int or None
        Replica actors; 0 runs the job in this process without Ray; ``None`` picks
        :func:`~dmr_ray.engine.resources.default_actor_count` (one per GPU, else one per
        CPU), but at least ``replicate_groups``.
    replicate_groups : int
        1 keeps every replicate (ensemble member, MC-dropout pass) in each actor. ``G > 1``
        spreads them over ``G`` contiguous groups (for models too large to hold ``R`` copies
        per device); actor ``k`` serves group ``k % G``, so ``actors`` must be at least
        ``G``. Each chunk's group results are merged exactly before it is committed.
    threads : int or None
        torch threads per actor (default: see :func:`plan_resources`).
    gpus_per_actor : float or None
        GPU share per actor, e.g. 0.25 for four replicas per GPU (default: see
        :func:`plan_resources`).
    max_in_flight : int
        Chunks queued on one actor at a time.
    max_restarts : int
        Ray restarts of a lost actor (``-1``: unlimited).
    max_chunk_attempts : int
        Worker losses one chunk may cause before it is reported as failed.
    stall_timeout_s : float
        Seconds without any finished work (a chunk, an actor start) before the run fails
        with :class:`~dmr_ray.errors.StalledRunError`. Must exceed the time one
        actor needs for one chunk.
    address : str or None
        Ray cluster to join (``"auto"``, ``"host:port"``, ``"ray://..."``); ``None`` uses
        ``RAY_ADDRESS`` when set, else starts a local instance.
    runtime_env : dict or None
        Ray runtime environment of the actors and merge tasks (e.g. ``env_vars``, or
        ``py_modules`` that hold the model's code).
    """

    actors: int | None = None
    replicate_groups: int = 1
    threads: int | None = None
    gpus_per_actor: float | None = None
    max_in_flight: int = 2
    max_restarts: int = 3
    max_chunk_attempts: int = 3
    stall_timeout_s: float = 1800.0
    address: str | None = None
    runtime_env: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("actors", "replicate_groups", "max_in_flight", "max_chunk_attempts"):
            value = getattr(self, name)
            if name == "actors" and value is None:
                continue
            minimum = 0 if name == "actors" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InputError(f"{name}: must be an integer >= {minimum}, got {value!r}")
        if self.actors and self.actors < self.replicate_groups:
            raise InputError(
                f"actors: {self.actors} actors cannot serve {self.replicate_groups} replicate groups; "
                f"use at least as many actors as groups"
            )
        if not self.stall_timeout_s > 0:
            raise InputError(f"stall timeout: must be positive, got {self.stall_timeout_s!r}")


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Make this process a Ray driver, unless it already is.

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


def run_ism(
    job: IsmJob,
    options: EngineOptions | None = None,
    *,
    overwrite: bool = False,
    on_commit: Callable[[ChunkReport], None] | None = None,
) -> RunSummary:
    """Run ``job`` with ``options``: in this process for ``actors=0``, else on Ray.

    Parameters
    ----------
    job
        What to compute.
    options
        How; default :class:`EngineOptions` ().
    overwrite
        Discard an existing output and start fresh; otherwise a matching output resumes and
        a mismatched one is refused (:class:`~dmr_ray.errors.ResumeConflictError`).
    on_commit
        Called in the driver after each chunk is committed (Ray runs only).

    Raises
    ------
    ChunkFailedError
        After every other chunk is committed, naming each failed chunk and its seq_ids.
    StalledRunError, EngineError
        The run could not go on; committed chunks are kept.
    """
    options = options or EngineOptions()
    if options.actors == 0:
        return run_in_process(job, overwrite=overwrite)
    return run_on_ray(job, options, overwrite=overwrite, on_commit=on_commit)


def run_on_ray(
    job: IsmJob,
    options: EngineOptions,
    *,
    overwrite: bool = False,
    on_commit: Callable[[ChunkReport], None] | None = None,
) -> RunSummary:
    """Run ``job`` on a pool of replica actors (see :func:`run_ism`)."""
    job = job.resolved()
    if job.calibration and options.replicate_groups > 1:
        raise InputError(
            "replicate_groups: a calibrated job needs every replicate in one actor "
            "(recalibration uses the mean and SD over all replicates); use 1"
        )
    sequences, spec, effects = open_job(job, overwrite=overwrite)
    todo, run_id = effects.missing_chunks(), new_run_id()
    progress = Progress(len(todo), "ism", mutants_per_sequence=3 * sequences.length)
    failures = FailureLog(sequences, effects)
    if not todo:
        progress.close()
        return summarise(effects, todo, progress, run_id)
    started = connect(options.address)
    actors: list[PoolActor] = []
    try:
        cluster = ray.cluster_resources()
        groups = split_replicates(spec.n_replicates, options.replicate_groups)
        n_actors = options.actors or max(default_actor_count(cluster, job.device), len(groups))
        resources = plan_resources(
            n_actors, cluster, threads=options.threads, gpus_per_actor=options.gpus_per_actor, device=job.device
        )
        log.info("%d actor(s), each %s; %d chunks to compute", n_actors, resources.describe(), len(todo))
        digest = effects.attrs["model_digest"]
        actors = [
            _start_actor(job, groups, k % len(groups), resources, run_id, digest, options) for k in range(n_actors)
        ]

        def merge(chunk: int, parts: list[ray.ObjectRef]) -> ray.ObjectRef:
            task = merge_task.options(num_cpus=SMALL_TASK_CPUS, runtime_env=_runtime_env(options))
            return task.remote(effects, chunk, job, spec.replicates.kind, run_id, *parts)

        scheduler = ChunkScheduler(
            actors,
            todo,
            len(groups),
            merge=merge,
            failures=failures,
            progress=progress,
            on_commit=on_commit,
            max_in_flight=options.max_in_flight,
            max_chunk_attempts=options.max_chunk_attempts,
            stall_timeout_s=options.stall_timeout_s,
            resources=resources.describe(),
        )
        scheduler.run()
    finally:
        progress.close()
        for actor in actors:
            ray.kill(actor.handle, no_restart=True)
        if started:
            ray.shutdown()
    failures.raise_if_any()
    return summarise(effects, todo, progress, run_id, scheduler.reassigned)


def _start_actor(
    job: IsmJob,
    groups: list[tuple[int, ...]],
    group: int,
    resources: ActorResources,
    run_id: str,
    digest: str,
    options: EngineOptions,
) -> PoolActor:
    """Create the actor serving replicate group ``group`` (all replicates when there is one group)."""
    replicates = None if len(groups) == 1 else groups[group]
    handle = ReplicaActor.options(
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus,
        max_restarts=options.max_restarts,
        max_task_retries=0,
        runtime_env=_runtime_env(options),
    ).remote(job, replicates, resources, run_id, digest)
    return PoolActor(handle=handle, group=group)


def _runtime_env(options: EngineOptions) -> dict[str, Any] | None:
    return dict(options.runtime_env) if options.runtime_env else None

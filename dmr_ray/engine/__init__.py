"""The engine: chunked, resumable work on a pool of Ray actors (or in process).

Any work that splits into chunks is a :class:`ChunkTask` (set up once per actor, compute a
chunk or one shard of it, reduce the shards' partials, commit or return the value);
:func:`run_task` runs it with the engine's fault handling, progress and failure reports;
:func:`open_pool` keeps its workers for any number of calls, each with its own input.
ISM (:func:`run_ism`) and the local-MR stage of Deep MR are such tasks.

* :func:`run_task` (:class:`ChunkTask`, :class:`EngineOptions`) -> :class:`TaskRun`: one call
  of :func:`open_pool` -> :class:`TaskPool` (:class:`ActorPool` after :func:`connect` and
  :func:`plan_pool`, or :class:`InProcessPool`), whose ``run(chunks, params=...)`` may be
  called many times.
* :class:`ChunkWorker`, :class:`StepWorker`, :class:`ChunkReport`: what a task's setup
  returns (a step worker takes each call's input), what a finished chunk reports.
* :func:`run_ism` (:class:`IsmJob`) -> :class:`RunSummary`; :func:`run_on_ray`,
  :func:`run_in_process`; :class:`IsmTask`.
* :func:`plan_resources` -> :class:`ActorResources`, :class:`PoolPlan`: actor sizing from a
  resource mapping (the cluster, or the current placement group's bundles).
* :func:`split_replicates`, :func:`merge_groups`: replicate groups spread over actors.
* :func:`describe_rows`: how a chunk of sequences is named in errors.
* :class:`EngineError`, :class:`StalledRunError`: a run that cannot go on (defined in
  :mod:`dmr_ray.errors`, re-exported here).
"""

from dmr_ray.engine.failures import describe_rows
from dmr_ray.engine.ism_task import IsmTask
from dmr_ray.engine.job import IsmJob, RunSummary
from dmr_ray.engine.options import EngineOptions
from dmr_ray.engine.pool import PoolPlan, plan_pool
from dmr_ray.engine.replicas import merge_groups, split_replicates
from dmr_ray.engine.resources import ActorResources, plan_resources
from dmr_ray.engine.run import connect, open_pool, run_task
from dmr_ray.engine.runner import run_in_process, run_ism, run_on_ray
from dmr_ray.engine.task import ChunkReport, ChunkTask, ChunkWorker, StepWorker, TaskRun
from dmr_ray.engine.task_pool import ActorPool, InProcessPool, TaskPool
from dmr_ray.errors import EngineError, StalledRunError

__all__ = [
    "ActorPool",
    "ActorResources",
    "ChunkReport",
    "ChunkTask",
    "ChunkWorker",
    "EngineError",
    "EngineOptions",
    "InProcessPool",
    "IsmJob",
    "IsmTask",
    "PoolPlan",
    "RunSummary",
    "StalledRunError",
    "StepWorker",
    "TaskPool",
    "TaskRun",
    "connect",
    "describe_rows",
    "merge_groups",
    "open_pool",
    "plan_pool",
    "plan_resources",
    "run_in_process",
    "run_ism",
    "run_on_ray",
    "run_task",
    "split_replicates",
]

"""Run an ISM job: in this process (``actors=0``) or on a pool of Ray actors.

Both paths run the same :class:`~dmr_ray.engine.ism_task.IsmTask` through the engine
(:mod:`dmr_ray.engine.run`), so they write identical ``effects.zarr`` stores. Everything
that can be refused is refused before the output is created: the job's fields
(:class:`IsmJob`), CUDA asked for in process on a machine without it, a calibrated job
spread over replicate groups, a pool the Ray resources can never hold, ``ddof`` against the
model's replicate count.
"""

from __future__ import annotations

import ray

from dmr_ray.engine.ism_task import IsmTask, open_job
from dmr_ray.engine.job import IsmJob, RunSummary, new_run_id
from dmr_ray.engine.options import EngineOptions
from dmr_ray.engine.pool import plan_pool
from dmr_ray.engine.replicas import split_replicates
from dmr_ray.engine.run import connect
from dmr_ray.engine.task import TaskRun
from dmr_ray.engine.task_pool import ActorPool, InProcessPool, OnCommit
from dmr_ray.errors import InputError


def run_ism(
    job: IsmJob,
    options: EngineOptions | None = None,
    *,
    overwrite: bool = False,
    on_commit: OnCommit | None = None,
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
        Called in the driver after each chunk is committed, with its
        :class:`~dmr_ray.engine.task.ChunkReport`.

    Raises
    ------
    InputError
        The job cannot run here (see the module docstring); nothing was written.
    ChunkFailedError
        After every other chunk is committed, naming the first failed chunks and their
        seq_ids; every failed chunk is listed in the sibling file ``<out>.failed_chunks.txt``.
    StalledRunError, EngineError
        The run could not go on (committed chunks are kept), or the Ray resources can never
        hold one actor.
    """
    options = options or EngineOptions()
    if options.actors == 0:
        return run_in_process(job, overwrite=overwrite, on_commit=on_commit)
    return run_on_ray(job, options, overwrite=overwrite, on_commit=on_commit)


def run_in_process(job: IsmJob, *, overwrite: bool = False, on_commit: OnCommit | None = None) -> RunSummary:
    """Run ``job`` in this process, chunk by chunk, skipping chunks already complete (see :func:`run_ism`)."""
    _check_local_device(job.device)
    sequences, spec, effects = open_job(job, overwrite=overwrite)
    every = [tuple(range(spec.n_replicates))]
    task = IsmTask(job.resolved(), sequences, effects, every, spec.replicates.kind, new_run_id())
    with InProcessPool(task) as pool:
        return _summary(task, pool.run(on_commit=on_commit))


def run_on_ray(
    job: IsmJob, options: EngineOptions, *, overwrite: bool = False, on_commit: OnCommit | None = None
) -> RunSummary:
    """Run ``job`` on a pool of chunk actors, one replicate group per actor (see :func:`run_ism`)."""
    job = job.resolved()
    if job.calibration and options.replicate_groups > 1:
        raise InputError(
            "replicate_groups: a calibrated job needs every replicate in one actor "
            "(recalibration uses the mean and SD over all replicates); use 1"
        )
    started = connect(options.address)
    try:
        plan = plan_pool(options.replicate_groups, job.device, options)
        sequences, spec, effects = open_job(job, overwrite=overwrite)
        groups = split_replicates(spec.n_replicates, options.replicate_groups)
        task = IsmTask(job, sequences, effects, groups, spec.replicates.kind, new_run_id())
        with ActorPool(task, plan, options) as pool:
            return _summary(task, pool.run(on_commit=on_commit))
    finally:
        if started:
            ray.shutdown()


def _summary(task: IsmTask, run: TaskRun) -> RunSummary:
    return RunSummary(
        out=task.location,
        n_chunks=run.n_chunks,
        computed=run.computed,
        skipped=run.skipped,
        mutants=run.units,
        startup_s=run.startup_s,
        compute_s=run.compute_s,
        run_id=task.run_id,
        reassigned=run.reassigned,
    )


def _check_local_device(device: str | None) -> None:
    """Refuse CUDA in process on a machine without it (before anything is written)."""
    import torch

    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device: {device!r} was asked for, but this machine has no CUDA device; use cpu")

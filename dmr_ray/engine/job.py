"""One ISM job: what to compute, how its output is identified, and the in-process runner.

The Ray engine (:mod:`dmr_ray.engine.runner`) distributes exactly the per-chunk work of
:mod:`dmr_ray.engine.chunks`, so the in-process path and the distributed path write identical
``effects.zarr`` stores.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, replace

from dmr_ray import __version__
from dmr_ray.engine.chunks import FailureLog, compute_chunk
from dmr_ray.engine.progress import Progress
from dmr_ray.errors import ChunkFailedError, InputError
from dmr_ray.ism import FastPlanCache, Precision, check_precision
from dmr_ray.models import ModelSpec, load_model_spec, model_digest
from dmr_ray.store import EffectsStore, SequenceStore, open_sequence_store
from dmr_ray.store._zarr_io import normalise
from dmr_ray.uncertainty import ReplicatePredictor, build_predictor
from dmr_ray.uncertainty.calibrated import calibration_digest, with_calibration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IsmJob:
    """Everything that defines a saturation-mutagenesis run.

    Parameters
    ----------
    store
        Path or URL of ``sequences.zarr``.
    model
        Path of the model spec YAML.
    out
        Path or URL of the ``effects.zarr`` to write.
    chunk_size
        Sequences per unit of work (and of commit and resume); ``None`` uses the store's
        chunk size.
    batch_size
        Mutants per forward pass; ``None`` derives it from a memory budget.
    ddof
        Delta degrees of freedom of the replicate standard deviation.
    device
        Torch device; ``None`` picks CUDA when present, else CPU.
    fast
        ``True``, ``False`` or ``"auto"``: the receptive-field fast path.
    calibration
        Path of a ``calibration.json`` whose recalibration is applied to every replicate
        prediction before differencing (``None``: uncalibrated). Calibrated jobs run the
        exact path, which evaluates all replicates of an input together.
    precision
        ``"float32"``, ``"bfloat16"`` or ``"float16"``: autocast dtype of the fast path's
        linear layers on differences (:func:`~dmr_ray.ism.saturation_mutagenesis`); other
        than float32 it needs ``fast`` set and no ``calibration`` (calibrated jobs run the
        exact path in float32).

    Raises
    ------
    InputError
        An unknown ``precision``, or one other than float32 with ``fast=False`` or with
        ``calibration``.
    """

    store: str
    model: str
    out: str
    chunk_size: int | None = None
    batch_size: int | None = None
    ddof: int = 0
    device: str | None = None
    fast: bool | str = False
    calibration: str | None = None
    precision: Precision = "float32"

    def __post_init__(self) -> None:
        check_precision(self.precision, self.fast)
        if self.calibration and self.precision != "float32":
            raise InputError(
                f"precision: {self.precision!r} cannot be combined with calibration "
                "(calibrated jobs run the exact path in float32)"
            )

    def resolved(self) -> IsmJob:
        """The same job with absolute paths (workers may run in another directory)."""
        calibration = os.path.abspath(self.calibration) if self.calibration else None
        return replace(
            self,
            store=normalise(self.store),
            model=os.path.abspath(self.model),
            out=normalise(self.out),
            calibration=calibration,
        )

    @property
    def ism_fast(self) -> bool | str:
        """The ``fast`` argument ISM runs with: the exact path when calibrated."""
        return False if self.calibration else self.fast


def job_predictor(spec: ModelSpec, job: IsmJob, device, replicates=None) -> ReplicatePredictor:
    """The replicate predictor of ``job``: ``spec``'s replicates, recalibrated if configured."""
    return with_calibration(build_predictor(spec, device=device, replicates=replicates), job.calibration)


@dataclass(frozen=True)
class RunSummary:
    """What a run did.

    Attributes
    ----------
    out : str
        The effects store.
    n_chunks : int
        Chunks in the store.
    computed : int
        Chunks committed by this run.
    skipped : int
        Chunks found complete from an earlier run (not recomputed).
    mutants : int
        Mutants evaluated (per replicate) by this run.
    seconds : float
        Wall time of the computation.
    run_id : str
        This run's identifier, recorded in the store's ``committed_by`` manifest.
    reassigned : int
        Units of work given to another (or a restarted) actor after a worker was lost.
    """

    out: str
    n_chunks: int
    computed: int
    skipped: int
    mutants: int
    seconds: float
    run_id: str = ""
    reassigned: int = 0

    def describe(self) -> str:
        """One line for the terminal."""
        rate = self.mutants / self.seconds if self.seconds > 0 else 0.0
        lost = f", {self.reassigned} unit(s) reassigned after lost workers" if self.reassigned else ""
        return (
            f"effects written to {self.out}: {self.computed} chunks computed, {self.skipped} "
            f"already complete, {self.mutants:,} mutants in {self.seconds:.1f} s "
            f"({rate:,.0f} mutants/s){lost}"
        )


def new_run_id() -> str:
    """A fresh run identifier: UTC time and a random suffix, e.g. ``20250101T120000-1a2b3c4d``."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def open_job(job: IsmJob, *, overwrite: bool = False) -> tuple[SequenceStore, ModelSpec, EffectsStore]:
    """Open the inputs of ``job`` and create (or reopen for resume) its output.

    The model spec is checked (built, weights loaded, one probe pass) so that a broken spec
    fails here, before any worker starts.

    Returns
    -------
    tuple
        ``(sequences, spec, effects)``: the sequence store, the model spec and the effects store.

    Raises
    ------
    ResumeConflictError
        When ``job.out`` exists with a different model digest or options and ``overwrite`` is off.
    """
    job = job.resolved()
    sequences = open_sequence_store(job.store)
    spec = load_model_spec(job.model)
    spec.check_input_length(sequences.length)
    attrs = {
        "model_digest": model_digest(spec),
        "replicate_kind": spec.replicates.kind,
        "replicate_count": spec.n_replicates,
        "ddof": job.ddof,
        "fast": job.fast,
        "precision": job.precision,
        "calibration": calibration_digest(job.calibration),
        "sequence_store": job.store,
    }
    effects = EffectsStore.create(
        job.out,
        seq_ids=sequences.seq_ids(),
        length=sequences.length,
        tasks=spec.task_names,
        chunk_size=job.chunk_size or sequences.chunk_size,
        attrs=attrs,
        info={"code_version": __version__, "job": asdict(job)},
        overwrite=overwrite,
    )
    return sequences, spec, effects


def summarise(
    effects: EffectsStore, todo: list[int], progress: Progress, run_id: str, reassigned: int = 0
) -> RunSummary:
    """The :class:`RunSummary` of a run that had ``todo`` chunks to compute."""
    return RunSummary(
        out=effects.location,
        n_chunks=effects.n_chunks,
        computed=progress.done,
        skipped=effects.n_chunks - len(todo),
        mutants=progress.mutants,
        seconds=progress.elapsed_s,
        run_id=run_id,
        reassigned=reassigned,
    )


def run_in_process(job: IsmJob, *, overwrite: bool = False) -> RunSummary:
    """Run ``job`` in this process, chunk by chunk, skipping chunks already complete.

    A chunk is committed whole before the next begins, so an interrupted run loses at most
    the chunk in flight and a rerun of the same job resumes.

    Raises
    ------
    ChunkFailedError
        After every other chunk is committed, naming each chunk that failed and its seq_ids.
    """
    sequences, spec, effects = open_job(job, overwrite=overwrite)
    todo = effects.missing_chunks()
    run_id = new_run_id()
    predictor, plans = job_predictor(spec, job, job.device), FastPlanCache()
    progress = Progress(len(todo), "ism", mutants_per_sequence=3 * sequences.length)
    failures = FailureLog(sequences, effects)
    try:
        for index in todo:
            try:
                report = compute_chunk(predictor, sequences, effects, index, job, run_id, plans)
            except ChunkFailedError as err:
                log.error("%s", err)
                failures.add(index, err)
                continue
            progress.advance(report.n_sequences)
    finally:
        progress.close()
    failures.raise_if_any()
    return summarise(effects, todo, progress, run_id)

"""Saturation mutagenesis as a :class:`~dmr_ray.engine.task.ChunkTask`.

A chunk is one chunk of ``effects.zarr`` (``chunk_size`` reference sequences); progress
counts mutants. A shard is one replicate group: with one group, an actor computes each chunk
with every replicate and the job's ``ddof`` and commits it itself; with several, each group
computes its ``ddof=0`` result and the groups are merged exactly
(:func:`~dmr_ray.engine.replicas.merge_groups`) before the commit. The in-process runner
and the actors run the same :class:`IsmWorker`, so both write identical stores.

With ``keep_replicates`` every replicate's effects are kept as well
(:data:`REPLICATE_BETA` in ``effects.zarr``): ISM keeps each replicate's paired differences
as it computes them, on the path the job's ``fast`` chooses (the fast path runs one replicate
at a time anyway), and ``beta``/``se`` are the moments of those same differences.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from dmr_ray import __version__
from dmr_ray.engine.failures import chunk_failure, describe_rows
from dmr_ray.engine.job import IsmJob
from dmr_ray.engine.replicas import merge_groups
from dmr_ray.engine.resources import ActorResources
from dmr_ray.engine.task import ChunkTask
from dmr_ray.errors import InputError, ModelSpecError
from dmr_ray.ism import FastPlanCache, ISMResult, NonFinitePredictionError, saturation_mutagenesis
from dmr_ray.models import ModelSpec, load_model_spec, model_digest
from dmr_ray.store import EffectsStore, SequenceStore, open_sequence_store
from dmr_ray.store import _zarr_io as zio
from dmr_ray.uncertainty import ReplicatePredictor, build_predictor
from dmr_ray.uncertainty.calibrated import calibration_digest, with_calibration

_SEQUENCE_INDEX = re.compile(r"^sequence (\d+):")

REPLICATE_BETA = "beta_replicates"
"""The array of per-replicate effects in ``effects.zarr`` (``keep_replicates``):
``float32 [R, n_seq, L, 3, T]``, chunks ``(R, chunk_size, L, 3, T)``, written before the
chunk's completion flag."""

FAILURE_SUFFIX = ".failed_chunks.txt"
"""Appended to the location of ``effects.zarr`` to name the sibling file where a run with failed
chunks lists them, one line per chunk (inside the store, zarr would warn about a foreign file)."""


def job_predictor(
    spec: ModelSpec, job: IsmJob, device: str | None, replicates: Sequence[int] | None = None
) -> ReplicatePredictor:
    """The replicate predictor of ``job``: ``spec``'s replicates, recalibrated if configured."""
    return with_calibration(build_predictor(spec, device=device, replicates=replicates), job.calibration)


def open_job(job: IsmJob, *, overwrite: bool = False) -> tuple[SequenceStore, ModelSpec, EffectsStore]:
    """Open the inputs of ``job`` and create (or reopen for resume) its output.

    The model spec is checked (built, weights loaded, one probe pass), and ``ddof`` against
    its replicate count, so that a broken job fails here, before the output is created.

    Returns
    -------
    tuple
        ``(sequences, spec, effects)``: the sequence store, the model spec and the effects store.

    Raises
    ------
    InputError
        ``ddof`` is not below the model's replicate count.
    ResumeConflictError
        When ``job.out`` exists with a different model digest or options and ``overwrite`` is off.
    """
    job = job.resolved()
    sequences = open_sequence_store(job.store)
    spec = load_model_spec(job.model)
    spec.check_input_length(sequences.length)
    if job.ddof >= spec.n_replicates:
        raise InputError(
            f"ddof: must be below the replicate count ({spec.n_replicates}) of {job.model}, got {job.ddof}"
        )
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
    if job.keep_replicates:  # absent otherwise, so stores written before the option still resume
        attrs["keep_replicates"] = True
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
    if job.keep_replicates and REPLICATE_BETA not in _group(effects, "r"):
        shape = (spec.n_replicates, effects.n_seq, effects.length, 3, effects.n_tasks)
        chunks = (spec.n_replicates, effects.chunk_size, *shape[2:])
        _group(effects, "r+").create_array(
            REPLICATE_BETA, shape=shape, dtype=np.float32, chunks=chunks, fill_value=np.nan
        )
    return sequences, spec, effects


def _group(effects: EffectsStore, mode: zio.Mode):
    """The Zarr group of ``effects``."""
    return zio.open_group(effects.location, mode, None)


def read_replicate_beta(effects: EffectsStore, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of every replicate's effects, ``float32 [R, stop - start, L, 3, T]``.

    Raises
    ------
    InputError
        The store was written without ``keep_replicates``, or a chunk of the rows is not complete.
    """
    group = _group(effects, "r")
    if REPLICATE_BETA not in group:
        raise InputError(f"{effects.location}: no per-replicate effects; run ISM with keep_replicates")
    chunks = range(start // effects.chunk_size, -(-stop // effects.chunk_size))
    missing = [i for i in chunks if not effects.is_chunk_complete(i)]
    if missing:
        raise InputError(f"{effects.location}: rows {start}..{stop} include incomplete chunks {missing[:10]}")
    return np.asarray(group[REPLICATE_BETA][:, start:stop])


@dataclass(frozen=True)
class ChunkEffects:
    """One chunk's (or one replicate group's) ISM result, with its replicates' effects when kept.

    Attributes
    ----------
    result : ISMResult
        Moments over the replicates.
    replicate_beta : numpy.ndarray or None
        ``float32 [R, n, L, 3, T]`` (``keep_replicates``), else None.
    """

    result: ISMResult
    replicate_beta: np.ndarray | None = None


def replicate_ism(
    predictor: ReplicatePredictor,
    tokens,
    *,
    batch_size: int | None,
    ddof: int,
    fast: bool | Literal["auto"] = False,
    plans: FastPlanCache | None = None,
) -> ChunkEffects:
    """ISM of ``tokens`` keeping every replicate's effects, on the path ``fast`` chooses.

    Both paths evaluate one replicate at a time and fold ``beta``/``se`` (and the reference
    moments) from the very differences they keep, so the exact and the fast path agree to
    float32 rounding and groups of replicates merge exactly
    (:func:`~dmr_ray.engine.replicas.merge_groups`). A calibrated predictor serves each
    replicate from a joint evaluation of all of them (and takes the exact path).
    """
    result = saturation_mutagenesis(
        predictor, tokens, batch_size=batch_size, fast=fast, ddof=ddof, plans=plans, keep_replicates=True
    )
    return ChunkEffects(result, result.replicate_beta)


class IsmTask(ChunkTask):
    """Saturation mutagenesis of ``sequences`` into ``effects``, one effects chunk at a time.

    Parameters
    ----------
    job
        The job, with absolute paths (:meth:`IsmJob.resolved`).
    sequences, effects
        Its opened stores (from :func:`open_job`; they pickle as their locations).
    groups
        Replicate groups (:func:`~dmr_ray.engine.replicas.split_replicates`); one group holds
        every replicate.
    replicate_kind
        The model's replicate kind (of the merged results).
    run_id
        Recorded as the committer of each chunk.
    """

    label = "ism"
    unit = "mutants"
    shard_name = "replicate group"

    def __init__(
        self,
        job: IsmJob,
        sequences: SequenceStore,
        effects: EffectsStore,
        groups: Sequence[tuple[int, ...]],
        replicate_kind: str,
        run_id: str,
    ) -> None:
        self.job = job
        self.sequences = sequences
        self.effects = effects
        self.groups = tuple(groups)
        self.replicate_kind = replicate_kind
        self.run_id = run_id
        self.n_shards = len(self.groups)
        self.device = job.device
        self.location = effects.location
        self.failure_file = f"{effects.location}{FAILURE_SUFFIX}"

    @property
    def n_chunks(self) -> int:
        """Chunks of ``effects.zarr``."""
        return self.effects.n_chunks

    def pending(self) -> list[int]:
        """Chunks without their completion flag."""
        return self.effects.missing_chunks()

    def units(self, index: int) -> int:
        """Mutants of chunk ``index`` (3 per position per sequence)."""
        start, stop = self.effects.chunk_bounds(index)
        return (stop - start) * 3 * self.sequences.length

    def describe_chunk(self, index: int) -> str:
        """The chunk with its rows and seq_ids."""
        start, stop = self.effects.chunk_bounds(index)
        return describe_rows(self.sequences.seq_ids(start, stop), start, stop, index)

    def setup(self, shard: int, resources: ActorResources) -> IsmWorker:
        """Load replicate group ``shard`` on ``resources.device``, checking the model digest.

        Raises
        ------
        ModelSpecError
            The spec loaded here hashes differently from the run's (weights changed, or
            another copy on this node).
        """
        import ray

        spec = load_model_spec(self.job.model, check=False)
        found, digest = model_digest(spec), self.effects.attrs["model_digest"]
        if found != digest:
            node = ray.util.get_node_ip_address() if ray.is_initialized() else "this machine"
            raise ModelSpecError(
                f"{self.job.model}: on node {node} the model digest is {found}, but the run uses {digest}; "
                "every node must see the same spec and weight files"
            )
        replicates = None if self.n_shards == 1 else self.groups[shard]
        predictor = job_predictor(spec, self.job, resources.device, replicates=replicates)
        return IsmWorker(self, predictor, ddof=self.job.ddof if self.n_shards == 1 else 0)

    def reduce(self, index: int, partials: Sequence[ChunkEffects]) -> ChunkEffects:
        """One group's result as it is; several merged exactly with the job's ``ddof`` (and
        their replicates' effects concatenated in group order)."""
        if len(partials) == 1:
            return partials[0]
        merged = merge_groups([p.result for p in partials], self.job.ddof, self.replicate_kind)
        kept = [p.replicate_beta for p in partials if p.replicate_beta is not None]
        return ChunkEffects(merged, np.concatenate(kept) if kept else None)

    def commit(self, index: int, value: ChunkEffects) -> None:
        """Write chunk ``index`` of ``effects.zarr``: replicates' effects first, completion flag last."""
        if value.replicate_beta is not None:
            start, stop = self.effects.chunk_bounds(index)
            _group(self.effects, "r+")[REPLICATE_BETA][:, start:stop] = value.replicate_beta
        result = value.result
        self.effects.write_chunk(index, result.beta, result.se, result.ref_mean, result.ref_se, run_id=self.run_id)

    def is_committed(self, index: int) -> bool:
        """Whether chunk ``index`` carries its completion flag."""
        return self.effects.is_chunk_complete(index)


class IsmWorker:
    """One replicate group (or all replicates) on one device, with its fast-ISM plans.

    ``plans`` keeps the fast-path plan across chunks: it is built once per sequence length,
    device, ``fast`` mode and precision, not once per chunk.
    """

    def __init__(self, task: IsmTask, predictor: ReplicatePredictor, ddof: int) -> None:
        self.task = task
        self.predictor = predictor
        self.ddof = ddof
        self.plans = FastPlanCache()

    def describe(self) -> str:
        """Device and replicates."""
        return f"{self.predictor.device}, {self.predictor.n_replicates} replicate(s)"

    def compute(self, index: int) -> ChunkEffects:
        """The ISM result of chunk ``index`` (with ``ddof`` 0 when it is one group of several).

        Raises
        ------
        ChunkFailedError
            Reading, the model or its predictions (NaN or infinity) failed; a non-finite
            prediction is named by its sequence's seq_id.
        """
        task, job = self.task, self.task.job
        start, stop = task.effects.chunk_bounds(index)
        try:
            tokens = task.sequences.read(start, stop)
            result = saturation_mutagenesis(
                self.predictor,
                tokens,
                batch_size=job.batch_size,
                fast=job.ism_fast,
                ddof=self.ddof,
                precision=job.precision,
                plans=self.plans,
                keep_replicates=job.keep_replicates,
            )
            return ChunkEffects(result, result.replicate_beta)
        except Exception as err:
            ids = task.sequences.seq_ids(start, stop)
            reason = str(err)
            if isinstance(err, NonFinitePredictionError):
                reason = _SEQUENCE_INDEX.sub(lambda m: _name_row(ids, start, int(m.group(1))), reason)
            raise chunk_failure(describe_rows(ids, start, stop, index), f"{type(err).__name__}: {reason}") from err


def _name_row(ids: np.ndarray, start: int, row: int) -> str:
    if not 0 <= row < len(ids):
        return f"sequence {row} of the chunk:"
    return f"sequence {ids[row].item()!r} (row {start + row}):"

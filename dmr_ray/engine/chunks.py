"""The unit of work: one chunk of reference sequences, computed, merged and committed.

The in-process runner and the Ray actors call these same functions, so both paths write
identical ``effects.zarr`` stores. A chunk that fails for a deterministic reason raises
:class:`~dmr_ray.errors.ChunkFailedError` naming the chunk and its seq_ids;
:class:`FailureLog` collects such failures so that a run commits every other chunk first.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dmr_ray.engine.replicas import merge_groups
from dmr_ray.errors import ChunkFailedError
from dmr_ray.ism import FastPlanCache, ISMResult, NonFinitePredictionError, saturation_mutagenesis
from dmr_ray.store import EffectsStore, SequenceStore
from dmr_ray.uncertainty import ReplicatePredictor

if TYPE_CHECKING:
    from dmr_ray.engine.job import IsmJob

_SHOWN_IDS = 6
_SEQUENCE_INDEX = re.compile(r"^sequence (\d+):")


@dataclass(frozen=True)
class ChunkReport:
    """What committing one chunk did.

    Attributes
    ----------
    index : int
        The chunk.
    n_sequences : int
        Reference sequences in it.
    computed : bool
        False when the chunk was already complete (an earlier attempt of this run committed
        it but its reply was lost), so nothing was recomputed.
    pid : int
        Process that committed it (a replica actor, a merge task or the driver).
    seconds : float
        Wall time spent on it by that process.
    """

    index: int
    n_sequences: int
    computed: bool
    pid: int
    seconds: float


def chunk_failure(
    sequences: SequenceStore, bounds: tuple[int, int], index: int, cause: BaseException | str
) -> ChunkFailedError:
    """A :class:`ChunkFailedError` naming chunk ``index``, its rows and seq_ids, and ``cause``.

    A :class:`~dmr_ray.ism.NonFinitePredictionError`'s in-chunk sequence number is replaced by
    that sequence's seq_id.
    """
    start, stop = bounds
    ids = sequences.seq_ids(start, stop)
    if isinstance(cause, str):
        reason = cause
    else:
        text = str(cause)
        if isinstance(cause, NonFinitePredictionError):
            text = _SEQUENCE_INDEX.sub(lambda m: _name_row(ids, start, int(m.group(1))), text)
        reason = f"{type(cause).__name__}: {text}"
    return ChunkFailedError(f"chunk {index} (rows {start}..{stop}, seq_ids {_list_ids(ids)}): {reason}")


def compute_chunk(
    predictor: ReplicatePredictor,
    sequences: SequenceStore,
    effects: EffectsStore,
    index: int,
    job: IsmJob,
    run_id: str = "",
    plans: FastPlanCache | None = None,
) -> ChunkReport:
    """Compute chunk ``index`` with every replicate of ``predictor`` and commit it.

    A chunk whose completion flag is already set is not recomputed. ``plans`` keeps the
    fast-path plan of ``predictor`` across the chunks of a runner or actor.

    Raises
    ------
    ChunkFailedError
        Reading, the model or its predictions (NaN or infinity) failed for this chunk.
    """
    began = time.perf_counter()
    start, stop = effects.chunk_bounds(index)
    if effects.is_chunk_complete(index):
        return ChunkReport(index, stop - start, False, os.getpid(), 0.0)
    result = _mutagenesis(predictor, sequences, index, (start, stop), job, job.ddof, plans)
    effects.write_chunk(index, result.beta, result.se, result.ref_mean, result.ref_se, run_id=run_id)
    return ChunkReport(index, stop - start, True, os.getpid(), time.perf_counter() - began)


def partial_chunk(
    predictor: ReplicatePredictor,
    sequences: SequenceStore,
    effects: EffectsStore,
    index: int,
    job: IsmJob,
    plans: FastPlanCache | None = None,
) -> ISMResult:
    """The ``ddof=0`` result of chunk ``index`` for one group of replicates (not committed).

    ``plans`` as for :func:`compute_chunk`.

    Raises
    ------
    ChunkFailedError
        As :func:`compute_chunk`.
    """
    return _mutagenesis(predictor, sequences, index, effects.chunk_bounds(index), job, 0, plans)


def commit_partials(
    effects: EffectsStore,
    index: int,
    parts: Sequence[ISMResult],
    job: IsmJob,
    replicate_kind: str,
    run_id: str = "",
) -> ChunkReport:
    """Merge the replicate groups' results of chunk ``index`` and commit the chunk."""
    began = time.perf_counter()
    start, stop = effects.chunk_bounds(index)
    if effects.is_chunk_complete(index):
        return ChunkReport(index, stop - start, False, os.getpid(), 0.0)
    merged = merge_groups(parts, job.ddof, replicate_kind)
    effects.write_chunk(index, merged.beta, merged.se, merged.ref_mean, merged.ref_se, run_id=run_id)
    return ChunkReport(index, stop - start, True, os.getpid(), time.perf_counter() - began)


class FailureLog:
    """Chunks that failed during a run, reported together once the rest is committed.

    Parameters
    ----------
    sequences, effects
        The run's stores (to name the rows and seq_ids of a failed chunk).
    """

    def __init__(self, sequences: SequenceStore, effects: EffectsStore) -> None:
        self._sequences = sequences
        self._effects = effects
        self.messages: dict[int, str] = {}

    def __contains__(self, index: int) -> bool:
        return index in self.messages

    def __len__(self) -> int:
        return len(self.messages)

    def add(self, index: int, cause: BaseException | str) -> None:
        """Record that chunk ``index`` failed because of ``cause``."""
        if not isinstance(cause, ChunkFailedError):
            cause = chunk_failure(self._sequences, self._effects.chunk_bounds(index), index, cause)
        self.messages[index] = str(cause)

    def raise_if_any(self) -> None:
        """Raise one :class:`ChunkFailedError` describing every failed chunk, if any failed."""
        if not self.messages:
            return
        done = len(self._effects.completed_chunks())
        details = "; ".join(self.messages[i] for i in sorted(self.messages))
        raise ChunkFailedError(
            f"{len(self.messages)} chunk(s) failed; {done} of {self._effects.n_chunks} chunks are committed in "
            f"{self._effects.location}, and a rerun of the same command computes only the missing ones once the "
            f"cause is fixed. {details}"
        )


def _mutagenesis(
    predictor: ReplicatePredictor,
    sequences: SequenceStore,
    index: int,
    bounds: tuple[int, int],
    job: IsmJob,
    ddof: int,
    plans: FastPlanCache | None,
) -> ISMResult:
    try:
        tokens = sequences.read(*bounds)
        return saturation_mutagenesis(
            predictor,
            tokens,
            batch_size=job.batch_size,
            fast=job.ism_fast,
            ddof=ddof,
            precision=job.precision,
            plans=plans,
        )
    except Exception as err:
        raise chunk_failure(sequences, bounds, index, err) from err


def _list_ids(ids: np.ndarray) -> str:
    shown = ", ".join(repr(v.item()) for v in ids[:_SHOWN_IDS])
    more = f", ... {ids[-1].item()!r}" if len(ids) > _SHOWN_IDS else ""
    return f"[{shown}{more}] ({len(ids)})"


def _name_row(ids: np.ndarray, start: int, row: int) -> str:
    if not 0 <= row < len(ids):
        return f"sequence {row} of the chunk:"
    return f"sequence {ids[row].item()!r} (row {start + row}):"

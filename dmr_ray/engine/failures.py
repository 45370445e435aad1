"""Failed chunks: named with their items, collected during a run, reported once the rest is done.

A chunk that fails for a deterministic reason is recorded in a :class:`FailureLog` and the run
goes on. At the end, one :class:`~dmr_ray.errors.ChunkFailedError` names the first
:data:`SHOWN_FAILURES` failed chunks and the file (:attr:`ChunkTask.failure_file`, written
through fsspec) that lists every one of them, one line per chunk.
"""

from __future__ import annotations

import logging

import fsspec
import numpy as np

from dmr_ray.engine.task import ChunkTask
from dmr_ray.errors import ChunkFailedError

log = logging.getLogger(__name__)

SHOWN_FAILURES = 3
"""Failed chunks quoted in the error message; the failure file lists all."""

_SHOWN_IDS = 6


def describe_rows(ids: np.ndarray, start: int, stop: int, index: int) -> str:
    """``chunk <index> (rows <start>..<stop>, seq_ids [...] (n))``: a chunk of sequences, for errors."""
    shown = ", ".join(repr(v.item()) for v in ids[:_SHOWN_IDS])
    more = f", ... {ids[-1].item()!r}" if len(ids) > _SHOWN_IDS else ""
    return f"chunk {index} (rows {start}..{stop}, seq_ids [{shown}{more}] ({len(ids)}))"


def chunk_failure(description: str, cause: BaseException | str) -> ChunkFailedError:
    """A :class:`ChunkFailedError` for the chunk ``description`` names, failed because of ``cause``."""
    reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
    return ChunkFailedError(f"{description}: {reason}")


class FailureLog:
    """Chunks of ``task`` that failed during a run, reported together once the rest is done."""

    def __init__(self, task: ChunkTask) -> None:
        self._task = task
        self.messages: dict[int, str] = {}

    def __contains__(self, index: int) -> bool:
        return index in self.messages

    def __len__(self) -> int:
        return len(self.messages)

    def add(self, index: int, cause: BaseException | str) -> None:
        """Record that chunk ``index`` failed because of ``cause`` (a worker's error already
        naming the chunk is kept as it is)."""
        if not isinstance(cause, ChunkFailedError):
            cause = chunk_failure(self._task.describe_chunk(index), cause)
        self.messages[index] = str(cause)
        log.error("%s", self.messages[index])

    def raise_if_any(self) -> None:
        """Raise one :class:`ChunkFailedError` summarising the failed chunks, if any failed.

        Every failure is written, one line per chunk, to the task's ``failure_file`` first; a
        run without failures removes a failure file left by an earlier run.
        """
        path = self._task.failure_file
        if not self.messages:
            if path is not None:
                _remove(path)
            return
        lines = [self.messages[i] for i in sorted(self.messages)]
        where = ""
        if path is not None:
            with fsspec.open(path, "w") as fh:
                fh.write("".join(f"{line}\n" for line in lines))
            where = f"; every failed chunk is listed in {path}"
        first = f"first {SHOWN_FAILURES}: " if len(lines) > SHOWN_FAILURES else ""
        raise ChunkFailedError(
            f"{self._task.label}: {len(lines)} chunk(s) failed; {self._kept()}{where}. {first}"
            + "; ".join(lines[:SHOWN_FAILURES])
        )

    def _kept(self) -> str:
        task = self._task
        if task.returns_values:
            return "the values of the other chunks are discarded"
        done = task.n_chunks - len(task.pending())
        return (
            f"{done} of {task.n_chunks} chunks are committed in {task.location}, and a rerun of the same command "
            "computes only the missing ones once the cause is fixed"
        )


def _remove(path: str) -> None:
    fs, inner = fsspec.core.url_to_fs(path)
    if fs.exists(inner):
        fs.rm(inner)

"""Local MR as a :class:`~dmr_ray.engine.ChunkTask`: one Parquet part per effects chunk.

Each chunk of ``effects.zarr`` becomes ``part-<index>.parquet`` in the
``local_effects.parquet`` directory, exactly the table
:func:`~dmr_ray.deepmr.local.local_effects_table` gives, written to a temporary name and
renamed into place (:func:`dmr_ray._atomic.write_parquet_atomic`), so a part exists whole or
not at all and a rerun computes only the missing parts. Progress counts sequences; a failed
chunk is named with its rows and seq_ids.

With a ``replicates`` directory (an effects store written with ``keep_replicates``), each
chunk also gets every replicate's local effects, fitted on the ensemble's instruments
(:func:`~dmr_ray.deepmr.local.replicate_local_effects` with the ensemble's
:func:`~dmr_ray.deepmr.local.instrument_masks`, chosen once per chunk), as the part of
the same name there, written before the ensemble's part, so a chunk counts as done only when
both exist. With ``options.inference == "replicate"`` the ensemble's rows take their
inference from those fits (:func:`~dmr_ray.deepmr.local.local_replicate_inference`).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from dmr_ray._atomic import write_parquet_atomic
from dmr_ray.deepmr.local import (
    LocalMROptions,
    instrument_masks,
    local_effects_table,
    local_replicate_inference,
    replicate_local_effects,
)
from dmr_ray.engine import ActorResources, ChunkTask, describe_rows
from dmr_ray.engine.ism_task import read_replicate_beta
from dmr_ray.store import EffectsStore

FAILURE_FILE = "_failed_chunks.txt"
"""Written in the parts directory by a run with failed chunks (a leading ``_`` keeps it out of
the Parquet dataset)."""


def part_path(directory: Path, index: int) -> Path:
    """The Parquet part of effects chunk ``index``."""
    return directory / f"part-{index:06d}.parquet"


class LocalMRTask(ChunkTask):
    """The local effects of every chunk of ``effects_path``, one part each in ``directory``.

    Parameters
    ----------
    effects_path
        A complete ``effects.zarr``.
    directory
        The ``local_effects.parquet`` directory (it exists).
    options
        What to compute.
    replicates
        The ``local_replicates.parquet`` directory (it exists), or None to fit the ensemble's
        effects only.
    """

    label = "local MR"
    unit = "sequences"
    device = "cpu"

    def __init__(
        self, effects_path: str, directory: Path, options: LocalMROptions, replicates: Path | None = None
    ) -> None:
        self.effects = EffectsStore.open(effects_path, mode="r")
        self.directory = directory.resolve()
        self.replicates = None if replicates is None else replicates.resolve()
        self.options = options
        self.location = str(self.directory)
        self.failure_file = str(self.directory / FAILURE_FILE)

    @property
    def n_chunks(self) -> int:
        """Chunks of ``effects.zarr``."""
        return self.effects.n_chunks

    def pending(self) -> list[int]:
        """Chunks whose part is missing."""
        return [i for i in range(self.n_chunks) if not self.is_committed(i)]

    def units(self, index: int) -> int:
        """Sequences of chunk ``index``."""
        start, stop = self.effects.chunk_bounds(index)
        return stop - start

    def describe_chunk(self, index: int) -> str:
        """The chunk with its rows and seq_ids."""
        start, stop = self.effects.chunk_bounds(index)
        return describe_rows(self.effects.seq_ids(start, stop), start, stop, index)

    def setup(self, shard: int, resources: ActorResources) -> LocalMRWorker:
        """A worker reading ``effects.zarr`` (nothing to load)."""
        return LocalMRWorker(self.effects, self.options, replicates=self.replicates is not None)

    def commit(self, index: int, value: tuple[pa.Table, pa.Table | None]) -> None:
        """Write part ``index`` atomically: the replicates' first, then the ensemble's."""
        table, replicates = value
        if self.replicates is not None and replicates is not None:
            write_parquet_atomic(part_path(self.replicates, index), replicates)
        write_parquet_atomic(part_path(self.directory, index), table)

    def is_committed(self, index: int) -> bool:
        """Whether part ``index`` exists."""
        return part_path(self.directory, index).exists()


class LocalMRWorker:
    """Computes the local-effects table of one effects chunk (and of each of its replicates)."""

    def __init__(self, effects: EffectsStore, options: LocalMROptions, *, replicates: bool = False) -> None:
        self.effects = effects
        self.options = options
        self.replicates = replicates

    def describe(self) -> str:
        """What it reads."""
        return f"local MR of {self.effects.location}"

    def compute(self, index: int) -> tuple[pa.Table, pa.Table | None]:
        """The local effects of chunk ``index`` (:func:`~dmr_ray.deepmr.local.local_effects_table`),
        and every replicate's when asked (else None)."""
        chunk = self.effects.read_chunk(index)
        instruments = instrument_masks(chunk["beta"], chunk["se"], self.options)
        table = local_effects_table(chunk["beta"], chunk["se"], chunk["seq_id"], self.options, instruments=instruments)
        if not self.replicates:
            return table, None
        beta = read_replicate_beta(self.effects, *self.effects.chunk_bounds(index))
        replicates = replicate_local_effects(beta, chunk["se"], chunk["seq_id"], self.options, instruments=instruments)
        if self.options.inference == "replicate":
            table = local_replicate_inference(table, replicates, alpha=self.options.alpha)
        return table, replicates

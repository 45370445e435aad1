"""A toy chunk task for the engine tests: sums of powers of integers, split into chunks and shards.

Ray workers import this module by name (the tests put this folder on their ``PYTHONPATH``
through the engine's ``runtime_env``). Chunk ``c`` holds the integers
``c * chunk_size .. min((c + 1) * chunk_size, n)``; shard ``s`` of ``S`` sums the ``p``-th
powers of every ``S``-th of them, from the ``s``-th on, where ``p`` is a pool call's input
(``params``; squares without one); the reduction adds the shards' partial sums, so a sharded
run must give exactly the unsharded sum of each chunk.
"""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from dmr_ray._atomic import write_text_atomic
from dmr_ray.engine import ActorResources, ChunkTask


def chunk_sums(n: int, chunk_size: int, power: int = 2) -> dict[int, int]:
    """The expected value of every chunk: the sum of the ``power``-th powers of its integers."""
    bounds = {c: (c * chunk_size, min((c + 1) * chunk_size, n)) for c in range(-(-n // chunk_size))}
    return {c: sum(x**power for x in range(start, stop)) for c, (start, stop) in bounds.items()}


def setups(record: Path) -> dict[int, list[tuple[int, str]]]:
    """Per worker pid, the ``(shard, placement group id)`` of each setup it ran, as recorded in ``record``."""
    found: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for path in record.iterdir():
        for line in path.read_text().splitlines():
            shard, group = line.split(" ", 1)
            found[int(path.name)].append((int(shard), group))
    return dict(found)


class ShardSumTask(ChunkTask):
    """Sums of squares per chunk, ``n_shards`` partial sums per chunk.

    Parameters
    ----------
    n, chunk_size, n_shards
        Integers ``0..n``, per chunk, shards per chunk.
    out
        ``None``: the chunk sums come back to the driver. A folder: each chunk's sum is
        committed to ``<out>/<chunk>.txt`` (and chunks with a file are skipped).
    crash_once
        A file path: the first worker to compute a chunk while it does not exist creates it
        and kills its own process (SIGKILL), as a lost node would.
    setup_delay, delay
        Seconds slept in :meth:`setup` and per chunk.
    record
        A folder where each setup appends a line ``<shard> <placement group id>`` to ``<pid>``
        (:func:`setups` reads them).
    fail
        Chunks whose computation raises.
    """

    label = "shard sum"
    unit = "integers"
    device = "cpu"

    def __init__(
        self,
        n: int,
        chunk_size: int,
        n_shards: int,
        *,
        out: Path | None = None,
        crash_once: Path | None = None,
        setup_delay: float = 0.0,
        delay: float = 0.0,
        record: Path | None = None,
        fail: Sequence[int] = (),
    ) -> None:
        self.n, self.chunk_size, self.n_shards = n, chunk_size, n_shards
        self.out, self.crash_once, self.record = out, crash_once, record
        self.setup_delay, self.delay, self.fail = setup_delay, delay, tuple(fail)
        self.returns_values = out is None
        self.location = str(out) if out is not None else ""
        self.failure_file = str(out / "failed.txt") if out is not None else None

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.chunk_size)

    def pending(self) -> list[int]:
        return [c for c in range(self.n_chunks) if not self.is_committed(c)]

    def bounds(self, index: int) -> tuple[int, int]:
        return index * self.chunk_size, min((index + 1) * self.chunk_size, self.n)

    def units(self, index: int) -> int:
        start, stop = self.bounds(index)
        return stop - start

    def describe_chunk(self, index: int) -> str:
        start, stop = self.bounds(index)
        return f"chunk {index} (integers {start}..{stop})"

    def setup(self, shard: int, resources: ActorResources) -> ShardSumWorker:
        time.sleep(self.setup_delay)
        if self.record is not None:
            import ray

            group = ray.get_runtime_context().get_placement_group_id() if ray.is_initialized() else None
            with (self.record / str(os.getpid())).open("a") as fh:
                fh.write(f"{shard} {group}\n")
        return ShardSumWorker(self, shard)

    def reduce(self, index: int, partials: Sequence[int]) -> int:
        assert len(partials) == self.n_shards
        return sum(partials)

    def commit(self, index: int, value: int) -> None:
        assert self.out is not None
        write_text_atomic(self.out / f"{index}.txt", str(value))

    def is_committed(self, index: int) -> bool:
        return self.out is not None and (self.out / f"{index}.txt").exists()


class ShardSumWorker:
    """One shard of :class:`ShardSumTask`."""

    def __init__(self, task: ShardSumTask, shard: int) -> None:
        self.task, self.shard = task, shard

    def describe(self) -> str:
        return f"shard {self.shard} of {self.task.n_shards}"

    def compute(self, index: int, params: int | None = None) -> int:
        """The sum of the ``params``-th powers (squares without input) of this shard's integers of chunk ``index``."""
        task = self.task
        if task.crash_once is not None and not task.crash_once.exists():
            task.crash_once.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if index in task.fail:
            raise ValueError(f"chunk {index} is marked to fail")
        time.sleep(task.delay)
        start, stop = task.bounds(index)
        power = 2 if params is None else params
        return sum(x**power for x in range(start + self.shard, stop, task.n_shards))

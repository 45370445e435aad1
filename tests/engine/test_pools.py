"""Persistent pools: many calls on the same workers, each with its own input, faults between and
during calls, and no actor left after the ``with`` block (also when it raises or is interrupted)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from engine_support import RUNTIME_ENV
from toy_tasks import ShardSumTask, chunk_sums, setups

from dmr_ray.engine import EngineError, EngineOptions, InProcessPool, open_pool
from dmr_ray.errors import ChunkFailedError, InputError

N, CHUNK = 50, 7  # 8 chunks, the last one short


def on_ray(**changes) -> EngineOptions:
    """Two actors for a toy pool on the test's 2-CPU Ray."""
    return EngineOptions(**{"actors": 2, "runtime_env": RUNTIME_ENV, "stall_timeout_s": 120.0, **changes})


def shards_set_up(record: Path) -> Counter[int]:
    """How many times each shard was set up, by any worker."""
    return Counter(shard for runs in setups(record).values() for shard, _ in runs)


def pid_of(record: Path, shard: int) -> int:
    """The pid of the (only) worker that set up ``shard``."""
    (pid,) = [pid for pid, runs in setups(record).items() if any(s == shard for s, _ in runs)]
    return pid


def wait_gone(pids: list[int], timeout_s: float = 30.0) -> list[int]:
    """The ``pids`` still alive after up to ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if _alive(pid)]
    return alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("ray_run", [False, True], ids=["in-process", "ray"])
def test_calls_on_one_pool_reuse_its_workers_and_each_gets_its_input(
    request: pytest.FixtureRequest, tmp_path: Path, ray_run: bool
) -> None:
    if ray_run:
        request.getfixturevalue("ray_local")
    options = on_ray() if ray_run else EngineOptions(actors=0)
    with open_pool(ShardSumTask(N, CHUNK, 2, record=tmp_path), options) as pool:
        for power in (1, 3, 2):
            run = pool.run(params=power)
            assert dict(run.values) == chunk_sums(N, CHUNK, power)
            assert (run.computed, run.skipped, run.units) == (8, 0, N)
        assert dict(pool.run().values) == chunk_sums(N, CHUNK)  # no input: compute(index)
        some = pool.run([5, 1], params=4)
        fourth = chunk_sums(N, CHUNK, 4)
        assert (dict(some.values), some.computed, some.skipped) == ({5: fourth[5], 1: fourth[1]}, 2, 6)
    assert shards_set_up(tmp_path) == {0: 1, 1: 1}
    pids = set(setups(tmp_path))
    if ray_run:
        assert len(pids) == 2 and os.getpid() not in pids  # one actor per shard
    else:
        assert pids == {os.getpid()}


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("when", ["between", "during"])
def test_an_actor_killed_between_or_during_calls_is_restarted_and_set_up_again(tmp_path: Path, when: str) -> None:
    task = ShardSumTask(N, CHUNK, 2, record=tmp_path, delay=0.1)
    with open_pool(task, on_ray(max_in_flight=2)) as pool:
        assert dict(pool.run(params=1).values) == chunk_sums(N, CHUNK, 1)
        victim = pid_of(tmp_path, 0)

        def kill_once(report) -> None:
            if _alive(victim):
                os.kill(victim, signal.SIGKILL)

        if when == "between":
            os.kill(victim, signal.SIGKILL)
        run = pool.run(params=3, on_commit=kill_once if when == "during" else None)
        assert dict(run.values) == chunk_sums(N, CHUNK, 3)
        if when == "during":
            assert run.reassigned >= 1  # its chunks in flight went back to the queue
        assert dict(pool.run(params=2).values) == chunk_sums(N, CHUNK, 2)
    assert shards_set_up(tmp_path) == {0: 2, 1: 1}  # the restarted actor ran setup again, in a new process
    shard_0 = {pid for pid, runs in setups(tmp_path).items() if any(shard == 0 for shard, _ in runs)}
    assert victim in shard_0 and len(shard_0) == 2


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("raised", [None, RuntimeError, KeyboardInterrupt], ids=["ends", "raises", "ctrl-c"])
def test_no_actor_outlives_the_block(tmp_path: Path, raised: type[BaseException] | None) -> None:
    def body() -> None:
        with open_pool(ShardSumTask(N, CHUNK, 2, record=tmp_path), on_ray()) as pool:
            assert dict(pool.run(params=2).values) == chunk_sums(N, CHUNK)
            if raised is not None:
                raise raised("stop")
        with pytest.raises(EngineError, match="the pool is closed"):
            pool.run()

    if raised is None:
        body()
    else:
        with pytest.raises(raised, match="stop"):
            body()
    pids = list(setups(tmp_path))
    assert len(pids) == 2 and wait_gone(pids) == []


def test_a_pool_checks_the_chunks_sets_up_nothing_for_none_and_outlives_failed_chunks(tmp_path: Path) -> None:
    with InProcessPool(ShardSumTask(N, CHUNK, 2, record=tmp_path, fail=(3,))) as pool:
        empty = pool.run([])
        assert (empty.computed, empty.skipped, dict(empty.values)) == (0, 8, {})
        assert not list(tmp_path.iterdir())
        with pytest.raises(InputError, match=r"chunks: \[8, -1\] are not chunk indices of the task \(0\.\.7\)"):
            pool.run([1, 8, -1])
        with pytest.raises(InputError, match=r"chunks: \[2\] are asked for more than once"):
            pool.run([2, 3, 2])
        with pytest.raises(ChunkFailedError, match=r"1 chunk\(s\) failed.*chunk 3 \(integers 21\.\.28\)"):
            pool.run(params=1)
        assert dict(pool.run([4, 2], params=1).values) == {c: chunk_sums(N, CHUNK, 1)[c] for c in (4, 2)}
    assert shards_set_up(tmp_path) == {0: 1, 1: 1}  # a failed call keeps the workers

"""The task protocol on the engine: sharded reductions returned to the driver or committed, a lost
actor in a sharded task, placement groups (a persistent pool in a trial's group), start-up timed
apart, truncated failure reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_support import RUNTIME_ENV
from toy_tasks import ShardSumTask, chunk_sums, setups

from dmr_ray.engine import ActorResources, EngineOptions, open_pool, run_task
from dmr_ray.engine.pool import actor_capacity, check_capacity
from dmr_ray.errors import ChunkFailedError, EngineError

N, CHUNK = 50, 7  # 8 chunks, the last one short
EXPECTED = chunk_sums(N, CHUNK)


def on_ray(**changes) -> EngineOptions:
    """Options for a toy run on the test's 2-CPU Ray."""
    return EngineOptions(**{"runtime_env": RUNTIME_ENV, "stall_timeout_s": 120.0, **changes})


def test_chunk_sums_are_what_the_toy_task_should_give() -> None:
    assert EXPECTED[0] == sum(x * x for x in range(7)) and EXPECTED[7] == 49 * 49
    assert sum(EXPECTED.values()) == sum(x * x for x in range(N))


@pytest.mark.parametrize("shards", [1, 3])
def test_reduced_values_come_back_to_the_driver_in_process(shards: int) -> None:
    run = run_task(ShardSumTask(N, CHUNK, shards), EngineOptions(actors=0))
    assert dict(run.values) == EXPECTED
    assert (run.computed, run.skipped, run.units, run.n_chunks) == (8, 0, N, 8)


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize(("shards", "actors"), [(1, 2), (3, 3)])
def test_reduced_values_come_back_to_the_driver_on_ray(shards: int, actors: int) -> None:
    reports = []
    run = run_task(ShardSumTask(N, CHUNK, shards), on_ray(actors=actors), on_commit=reports.append)
    assert dict(run.values) == EXPECTED
    assert (run.computed, run.units, run.reassigned) == (8, N, 0)
    assert sorted(r.index for r in reports) == list(range(8)) and sum(r.units for r in reports) == N


@pytest.mark.usefixtures("ray_local")
def test_sharded_chunks_are_committed_by_reduce_tasks_and_resume(tmp_path: Path) -> None:
    task = ShardSumTask(N, CHUNK, 2, out=tmp_path)
    (tmp_path / "3.txt").write_text("committed before")
    run = run_task(task, on_ray(actors=2))
    assert (run.computed, run.skipped, run.values) == (7, 1, {})
    committed = {c: int((tmp_path / f"{c}.txt").read_text()) for c in range(8) if c != 3}
    assert committed == {c: v for c, v in EXPECTED.items() if c != 3}
    assert (tmp_path / "3.txt").read_text() == "committed before"
    again = run_task(task, on_ray(actors=2))
    assert (again.computed, again.skipped) == (0, 8)


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("committed", [False, True], ids=["values-to-driver", "committed"])
def test_an_actor_killed_mid_run_in_a_sharded_task_loses_nothing(tmp_path: Path, committed: bool) -> None:
    out = tmp_path / "out" if committed else None
    if out is not None:
        out.mkdir()
    crash = tmp_path / "crashed"
    task = ShardSumTask(N, CHUNK, 2, out=out, crash_once=crash, delay=0.05)
    run = run_task(task, on_ray(actors=2))
    assert crash.exists() and run.reassigned >= 1
    assert run.computed == 8
    if out is None:
        assert dict(run.values) == EXPECTED
    else:
        assert {c: int((out / f"{c}.txt").read_text()) for c in range(8)} == EXPECTED


@pytest.mark.usefixtures("ray_local")
def test_the_pool_fits_the_placement_group_it_runs_in(tmp_path: Path) -> None:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    bundles = [{"CPU": 0.5}, {"CPU": 0.5}, {"CPU": 0.5}]
    group = placement_group(bundles)
    ray.get(group.ready())

    def trial(record: str, out: str) -> tuple[list[dict], dict, str]:  # a Tune trial's driver, in bundle 0
        from dmr_ray.engine.pool import current_bundles

        free = current_bundles()
        with open_pool(ShardSumTask(N, CHUNK, 2, record=Path(record)), on_ray()) as pool:
            values = [dict(pool.run(params=power).values) for power in (2, 3)]
        run_task(ShardSumTask(N, CHUNK, 2, out=Path(out)), on_ray())  # reduce tasks in the group too
        return values, {"free": free}, ray.get_runtime_context().get_placement_group_id()

    record, out = tmp_path / "record", tmp_path / "out"
    record.mkdir()
    out.mkdir()
    strategy = PlacementGroupSchedulingStrategy(group, 0, placement_group_capture_child_tasks=True)
    remote = ray.remote(num_cpus=0.25, scheduling_strategy=strategy, runtime_env=RUNTIME_ENV)(trial)
    try:
        values, seen, group_id = ray.get(remote.remote(str(record), str(out)), timeout=300)
    finally:
        remove_placement_group(group)
    assert values == [EXPECTED, chunk_sums(N, CHUNK, 3)]
    assert {c: int((out / f"{c}.txt").read_text()) for c in range(8)} == EXPECTED
    assert seen["free"] == [{"CPU": 0.25}, {"CPU": 0.5}, {"CPU": 0.5}]
    done = setups(record)  # two calls on one pool, each shard set up once, in the group
    assert sorted(shard for runs in done.values() for shard, _ in runs) == [0, 1]
    assert {group for runs in done.values() for _, group in runs} == {group_id} and len(done) <= len(bundles)


def test_more_actors_than_the_bundles_hold_are_refused() -> None:
    half = ActorResources(0.5, 0.0, 1, "cpu")
    bundles = [{"CPU": 0.5}, {"CPU": 1.0}]
    assert actor_capacity(half, bundles) == 3
    check_capacity(3, half, bundles, {"CPU": 1.5})
    with pytest.raises(EngineError, match=r"hold 3 actor\(s\) of 0\.5 CPU.*but 4 were asked for"):
        check_capacity(4, half, bundles, {"CPU": 1.5})
    gpu = ActorResources(1.0, 0.5, 1, "cuda")
    assert actor_capacity(gpu, [{"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0}]) == 2


def test_a_cluster_that_can_never_hold_an_actor_is_refused() -> None:
    cuda = ActorResources(1.0, 1.0, 1, "cuda")
    with pytest.raises(EngineError, match=r"requests 1 CPU, 1 GPU.*has 4 CPU, 0 GPU in all, so no actor can ever"):
        check_capacity(2, cuda, None, {"CPU": 4.0, "GPU": 0.0})
    check_capacity(2, cuda, None, {"CPU": 4.0, "GPU": 1.0})  # the second waits for the first


@pytest.mark.parametrize("ray_run", [False, True], ids=["in-process", "ray"])
def test_start_up_is_timed_apart_from_compute(request: pytest.FixtureRequest, ray_run: bool) -> None:
    if ray_run:
        request.getfixturevalue("ray_local")
    options = on_ray(actors=1) if ray_run else EngineOptions(actors=0)
    run = run_task(ShardSumTask(N, CHUNK, 1, setup_delay=1.5), options)
    assert run.startup_s >= 1.5
    assert run.compute_s < run.startup_s  # eight tiny chunks


def test_a_failed_run_quotes_three_chunks_and_lists_all_in_a_file(tmp_path: Path) -> None:
    task = ShardSumTask(N, CHUNK, 2, out=tmp_path, fail=(1, 2, 4, 6, 7))
    with pytest.raises(ChunkFailedError) as info:
        run_task(task, EngineOptions(actors=0))
    message = str(info.value)
    assert message.startswith(f"shard sum: 5 chunk(s) failed; 3 of 8 chunks are committed in {tmp_path}")
    assert f"every failed chunk is listed in {tmp_path / 'failed.txt'}. first 3: chunk 1 (integers 7..14)" in message
    assert "chunk 4 (integers 28..35)" in message and "chunk 6" not in message
    lines = (tmp_path / "failed.txt").read_text().splitlines()
    assert lines == [
        f"chunk {c} (integers {7 * c}..{min(7 * c + 7, N)}): ValueError: chunk {c} is marked to fail"
        for c in (1, 2, 4, 6, 7)
    ]
    fixed = ShardSumTask(N, CHUNK, 2, out=tmp_path)
    assert run_task(fixed, EngineOptions(actors=0)).computed == 5
    assert not (tmp_path / "failed.txt").exists(), "a run without failures removes the stale list"

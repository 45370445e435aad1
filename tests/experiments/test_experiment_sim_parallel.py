"""Rounds as Ray tasks: the sequential path gives the parallel path's rounds; an interrupted run resumes."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from dmr_ray.experiments import rounds, simulation
from dmr_ray.experiments.simulation import round_file, run_simulation_experiment


def test_experiment_sim_resume_recomputes_a_lost_round_sequentially_as_it_ran_in_parallel(experiment, tmp_path) -> None:
    out = tmp_path / "sim"
    shutil.copytree(experiment[0], out)  # its 2 rounds ran at once (a tiny round takes 1 CPU; ray_local has 2)
    parallel_round = json.loads(round_file(out, 0).read_text())
    kept = round_file(out, 1).read_bytes()
    round_file(out, 0).unlink()  # round 0 was in flight when the run stopped: its work is there, unfinished
    lines: list[str] = []
    summary = run_simulation_experiment("random", 2, out, size="tiny", parallel=1, echo=lines.append)
    assert lines[0] == "1 round(s) to compute, 1 at a time (1 CPUs each)"
    assert [line for line in lines if line.endswith("auditing")] == ["[round 0] simulating, training and auditing"]
    assert json.loads(round_file(out, 0).read_text()) == parallel_round  # the sequential path, the same round
    assert round_file(out, 1).read_bytes() == kept
    assert [row["round"] for row in summary["per_round"]] == [0, 1]


def test_experiment_sim_ctrl_c_cancels_only_the_rounds_in_flight(experiment, tmp_path, ray_local) -> None:
    out = tmp_path / "sim"
    shutil.copytree(experiment[0], out)  # rounds 0 and 1 finished
    finished = {i: round_file(out, i).read_bytes() for i in (0, 1)}
    groups_before = set(ray_local.util.placement_group_table())

    def interrupt_when_both_started(line: str) -> None:
        if line.startswith("[round 3] simulating"):  # rounds 2 and 3 are in flight
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_simulation_experiment("random", 4, out, size="tiny", parallel=2, echo=interrupt_when_both_started)
    assert not round_file(out, 2).exists() and not round_file(out, 3).exists()
    assert {i: round_file(out, i).read_bytes() for i in (0, 1)} == finished
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the interrupted rounds' placement groups are removed
        table = ray_local.util.placement_group_table()
        if all(table[g]["state"] == "REMOVED" for g in set(table) - groups_before):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("an interrupted round's placement group was left behind")


def test_experiment_sim_parallel_is_checked_against_the_cluster() -> None:
    assert rounds.plan_parallel(None, 2.0, 2.0) == 1
    assert rounds.plan_parallel(None, 1.0, 16.0) == 16
    assert rounds.plan_parallel(3, 2.0, 8.0) == 3
    with pytest.raises(simulation.InputError, match="at most --parallel 1"):
        rounds.plan_parallel(2, 2.0, 2.0)
    with pytest.raises(simulation.InputError, match="one round needs 2 CPUs"):
        rounds.plan_parallel(None, 2.0, 1.0)
    with pytest.raises(simulation.InputError, match="positive integer"):
        rounds.check_parallel(0)


def test_experiment_sim_failed_round_is_reported_and_the_others_kept(ray_local) -> None:
    def _fail_on_one(index: int) -> int:  # local: pickled by value for the Ray workers
        if index == 1:
            raise ValueError(f"round {index} is bad")
        return index * 2

    outcomes = rounds.run_rounds(_fail_on_one, [0, 1, 2], round_cpus=0.5, parallel=2)
    assert sorted((o.index, o.record) for o in outcomes) == [(0, 0), (1, None), (2, 4)]
    (failed,) = [o for o in outcomes if o.error]
    assert failed.index == 1 and failed.error == "ValueError: round 1 is bad"


def test_experiment_sim_cli_refuses_more_parallel_rounds_than_cpus_before_any_output(ray_local, tmp_path, capsys):
    from dmr_ray.cli import main

    out = tmp_path / "never"
    argv = ["experiment", "simulation", "--scenario", "none", "--rounds", "4", "--size", "tiny", "--parallel", "3"]
    assert main([*argv, "--out", str(out)]) == 2  # ray_local has 2 CPUs, a tiny round takes 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "at most --parallel 2" in err
    assert not out.exists()

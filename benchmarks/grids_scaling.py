"""GRIDS on Ray: step time over 1 vs 2 shard actors, end-to-end Tune time over 1 vs 2 shards and
1 vs 2 concurrent trials, and the share of a step spent in Ray rather than in the population.

    python benchmarks/grids_scaling.py --out grids_scaling.json [--cells 600 --peaks 20000 --steps 12]

A surrogate with random weights (the default architecture; the output bias lifted so the target
is never clamped) and random sparse ATAC stand in for a trained model and real cells: the work of
a step depends on sizes, not on what the weights learned. The step time of a search in this
process (``LocalPopulation``, no Ray) is the reference; ``ray_overhead`` is the share of a 1-shard
step that is not that work (pool calls, pickling, object store). Steps run in the faithful mode,
so every search does exactly ``--steps`` steps. Ray runs locally with ``--cpus`` logical CPUs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch


def build(directory: Path, cells: int, peaks: int, genes: int, density: float, seed: int = 0) -> sp.csr_matrix:
    """Save a random surrogate into ``directory``; return random ATAC ``[cells, peaks]``."""
    from dmr_ray.grids.surrogate import Surrogate, SurrogateConfig, names_digest, save_surrogate

    chromosomes = tuple(f"chr{c}" for c in range(1, 5))
    block = np.repeat(np.arange(4), -(-peaks // 4))[:peaks]
    config = SurrogateConfig(peaks, genes, chromosomes, names_digest(["p"]), names_digest(["g"]))
    model = Surrogate(config, block, seed=seed)
    with torch.no_grad():
        model.rna_output.bias.add_(3.0)
    save_surrogate(model, directory)
    rng = np.random.default_rng(seed)
    return sp.random(cells, peaks, density=density, format="csr", random_state=rng, data_rvs=np.ones).astype(np.float32)


def search_seconds(population: Any, args: argparse.Namespace) -> tuple[float, np.ndarray]:
    """Seconds per step of a faithful search of ``args.steps`` steps, and its selection."""
    from dmr_ray.grids.optimizer import grids_search

    grids_search(population, args.L, k=args.k, steps=1, mode="faithful", seed=0)  # warm: set-up, first backward
    began = time.perf_counter()
    result = grids_search(population, args.L, k=args.k, steps=args.steps, mode="faithful", seed=1)
    return (time.perf_counter() - began) / args.steps, result.selected


def step_times(surrogate: Path, x: sp.csr_matrix, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per step in process, over 1 and over 2 shard actors (same selections)."""
    from dmr_ray.engine import EngineOptions
    from dmr_ray.grids.objective import Objective
    from dmr_ray.grids.sharded import SurrogatePopulations, sharded_population

    build_population = SurrogatePopulations(str(surrogate), Objective(gene=0))
    torch.set_num_threads(1)
    local, selected = search_seconds(build_population(x), args)
    out: dict[str, Any] = {"in_process_s": local}
    options = EngineOptions(threads=1, stall_timeout_s=600)
    for shards in (1, 2):
        began = time.perf_counter()
        with sharded_population(build_population, x, shards, options) as population:
            population.loss_sum(np.arange(args.L))
            out[f"startup_{shards}_shard_s"] = time.perf_counter() - began
            seconds, found = search_seconds(population, args)
        out[f"{shards}_shard_s"] = seconds
        out[f"{shards}_shard_same_selection"] = bool(np.array_equal(found, selected))
    out["speedup_2_vs_1_shard"] = out["1_shard_s"] / out["2_shard_s"]
    out["ray_overhead"] = 1.0 - local / out["1_shard_s"]
    return out


def tune_seconds(
    surrogate: Path, x: sp.csr_matrix, args: argparse.Namespace, shards: int, concurrent: int, name: str
) -> float:
    """Wall seconds of a Tune experiment of ``args.trials`` GRIDS configurations."""
    from ray import tune

    from dmr_ray.grids.objective import Objective
    from dmr_ray.grids.tune import TrialProblem, TrialResources, grids_trial, run_experiment

    n_eval = max(1, x.shape[0] // 7)
    problem = TrialProblem(str(surrogate), Objective(gene=0), args.L, x[n_eval:], x[:n_eval], shards)
    grid = {"k": [args.k], "steps": [args.steps], "restarts": [1], "seed": list(range(args.trials)),
            "mode": ["faithful"]}  # fmt: skip
    # 2 CPUs: a driver bundle of 0.25 and shards of 0.75 (1 shard) or 0.875 (2 shards) let two
    # 1-shard trials, or one 2-shard trial, run at once
    resources = TrialResources(shards, driver_cpus=0.25, shard_cpus=0.75 if shards == 1 else 0.875)
    began = time.perf_counter()
    run_experiment(
        tune.with_parameters(grids_trial, problem=problem), grid, name=name, storage_path=str(args.storage),
        resources=resources, max_concurrent_trials=concurrent,
    )  # fmt: skip
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file of the results")
    parser.add_argument("--cells", type=int, default=600)
    parser.add_argument("--peaks", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=200)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--L", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--trials", type=int, default=2, help="configurations per Tune experiment")
    parser.add_argument("--cpus", type=int, default=2, help="logical CPUs of the local Ray instance")
    args = parser.parse_args()

    import ray

    with tempfile.TemporaryDirectory() as tmp:
        surrogate = Path(tmp) / "surrogate"
        args.storage = Path(tmp) / "tune"
        x = build(surrogate, args.cells, args.peaks, args.genes, args.density)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        try:
            steps = step_times(surrogate, x, args)
            print(json.dumps(steps, indent=2), flush=True)
            end_to_end = {
                "1_shard_1_concurrent_s": tune_seconds(surrogate, x, args, 1, 1, "s1c1"),
                "2_shard_1_concurrent_s": tune_seconds(surrogate, x, args, 2, 1, "s2c1"),
                "1_shard_2_concurrent_s": tune_seconds(surrogate, x, args, 1, 2, "s1c2"),
            }
        finally:
            ray.shutdown()
    end_to_end["speedup_2_vs_1_shard"] = end_to_end["1_shard_1_concurrent_s"] / end_to_end["2_shard_1_concurrent_s"]
    end_to_end["speedup_2_vs_1_concurrent"] = (
        end_to_end["1_shard_1_concurrent_s"] / end_to_end["1_shard_2_concurrent_s"]
    )
    setup = {key: getattr(args, key) for key in ("cells", "peaks", "genes", "density", "L", "k", "steps", "trials",
                                                  "cpus")}  # fmt: skip
    report = {"setup": setup, "step": steps, "end_to_end": end_to_end, "torch_threads_in_process": 1}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

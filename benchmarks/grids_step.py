"""Time per GRIDS optimizer step: the fast population against the plain autograd reference.

One step is what the original does per step (grids.md §5): the transition sums at the current
selection, the top ``k`` candidates of one row, their exact scores on the whole population, and
the swap (``mode="faithful"``, so the selection moves every step and no cache is reused). The
fast path is :class:`~dmr_ray.grids.population.LocalPopulation` (sparse per-chromosome sums,
exact scores on the changed rows only); the reference is
:class:`~dmr_ray.grids.population.AutogradPopulation` (dense x, autograd, a fresh forward pass
per candidate). Both run from the same random start on the same data: sparse binary ATAC at
``--density`` over ``--chromosomes`` chromosomes, a :class:`~dmr_ray.grids.surrogate.Surrogate`
with default widths and ``--genes`` genes (untrained; the target gene's output bias is shifted
so most cells are above the clamp). Wall-clock and process CPU seconds (all threads) are
reported per step; on a shared machine the CPU time shows the work when the wall time waits for
a core. Each method runs in its own child process, so the peak
resident memory (``ru_maxrss``) is its own; ``rss_data_mib`` is the RSS once the data and
model exist, before the method's population is built.

Also timed for the fast path: the improved mode's steps (rejected swaps reuse the transition
sums) and the population's set-up. Prints one JSON document.

Usage::

    python benchmarks/grids_step.py [--quick] [--threads 2] [--steps 7] [--reference-steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

from dmr_ray.grids.objective import Objective
from dmr_ray.grids.optimizer import GridsOptimizer
from dmr_ray.grids.population import AutogradPopulation, LocalPopulation, Population
from dmr_ray.grids.surrogate import Surrogate, SurrogateConfig, chromosome_blocks

FULL = {"peaks": 120_000, "cells": 1_000, "L": 128, "k": 32, "genes": 3_000}
QUICK = {"peaks": 6_000, "cells": 200, "L": 16, "k": 8, "genes": 300}
GENE = 7


def _rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _atac(cells: int, peaks: int, density: float, rng: np.random.Generator) -> sp.csr_matrix:
    """Binary CSR ``[cells, peaks]``, each entry open with probability ``density`` (100 rows at a time)."""
    blocks = [sp.csr_matrix(rng.random((min(100, cells - s), peaks)) < density) for s in range(0, cells, 100)]
    return sp.csr_matrix(sp.vstack(blocks), dtype=np.float32)


def _problem(size: dict[str, int], density: float, chromosomes: int, seed: int) -> tuple[Surrogate, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    names = np.array([f"chr{i}" for i in range(1, chromosomes + 1)])
    chromosome_names, block = chromosome_blocks(names[np.sort(rng.integers(0, chromosomes, size["peaks"]))])
    config = SurrogateConfig(size["peaks"], size["genes"], chromosome_names, "benchmark-peaks", "benchmark-genes")
    model = Surrogate(config, block, seed=seed).eval()
    x = _atac(size["cells"], size["peaks"], density, rng)
    with torch.no_grad():  # put the target gene above the clamp in most cells
        first = torch.as_tensor(x[:64].toarray())
        unclamped = model.rna_decoder(model.atac_to_rna(model.atac_encoder(first)))[:, GENE]
        model.rna_output.bias[GENE] += 1.0 - torch.quantile(unclamped, 0.1)
    return model, x


def _time_steps(population: Population, start: np.ndarray, k: int, steps: int, mode: str) -> dict:
    selection = torch.as_tensor(start.copy())
    optimizer = GridsOptimizer([selection], population, k=k, mode=mode)  # type: ignore[arg-type]
    seconds, cpu, losses, accepted = [], [], [], 0
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(optimizer.step())
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        accepted += bool(optimizer.last and optimizer.last.accepted)
    return {
        "median_s": float(np.median(seconds)),
        "median_cpu_s": float(np.median(cpu)),
        "min_s": float(np.min(seconds)),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "train_losses": losses,
        "accepted": accepted,
    }


def _child(args: argparse.Namespace) -> dict:
    import torch._dynamo  # noqa: F401  (torch.optim imports it on first use; keep it out of the memory measure)

    torch.set_num_threads(args.threads)
    size = QUICK if args.quick else FULL
    model, x = _problem(size, args.density, args.chromosomes, args.seed)
    objective = Objective(GENE)
    start = np.random.default_rng(args.seed + 1).choice(size["peaks"], size["L"], replace=False)
    out: dict = {"rss_data_mib": _rss_mib()}
    t0 = time.perf_counter()
    if args.part == "fast":
        population: Population = LocalPopulation(model, x, objective)
    else:
        population = AutogradPopulation.for_surrogate(model, x, objective, batch_size=args.reference_batch)
    out["setup_s"] = time.perf_counter() - t0
    steps = args.steps if args.part == "fast" else args.reference_steps
    out["faithful"] = _time_steps(population, start, size["k"], steps, "faithful")
    if args.part == "fast":
        out["improved"] = _time_steps(population, start, size["k"], args.steps, "improved")
    out["rss_peak_mib"] = _rss_mib()
    out["nnz"] = int(x.nnz)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"small size {QUICK} instead of {FULL}")
    parser.add_argument("--density", type=float, default=0.03)
    parser.add_argument("--chromosomes", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each child")
    parser.add_argument("--steps", type=int, default=7, help="fast-path steps timed (per mode)")
    parser.add_argument("--reference-steps", type=int, default=2)
    parser.add_argument("--reference-batch", type=int, default=256, help="rows per reference forward pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", choices=["fast", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        print(json.dumps(_child(args)))
        return
    results = {}
    for part in ("fast", "reference"):
        command = [sys.executable, __file__, *sys.argv[1:], "--part", part]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results[part] = json.loads(done.stdout.strip().splitlines()[-1])
    fast, reference = results["fast"]["faithful"], results["reference"]["faithful"]
    n = len(reference["train_losses"])
    agreement = np.abs(np.subtract(fast["train_losses"][:n], reference["train_losses"])) / np.abs(
        reference["train_losses"]
    )
    report = {
        "size": QUICK if args.quick else FULL,
        "density": args.density,
        "chromosomes": args.chromosomes,
        "threads": args.threads,
        "seconds_per_step": {"fast": fast["median_s"], "reference": reference["median_s"]},
        "cpu_seconds_per_step": {"fast": fast["median_cpu_s"], "reference": reference["median_cpu_s"]},
        "speedup": reference["median_s"] / fast["median_s"],
        "speedup_cpu": reference["median_cpu_s"] / fast["median_cpu_s"],
        "fast_improved_median_s": results["fast"]["improved"]["median_s"],
        "max_relative_loss_difference": float(agreement.max()),
        "rss_peak_mib": {part: results[part]["rss_peak_mib"] for part in results},
        "rss_over_data_mib": {part: results[part]["rss_peak_mib"] - results[part]["rss_data_mib"] for part in results},
        "details": results,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

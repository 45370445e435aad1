"""Seconds per paired training step of the GRIDS surrogate at the original's size.

127,219 peaks on 24 chromosomes, 3,000 genes, batch 128, the default architecture (grids.md §2),
random binary accessibility at ``--density`` and Poisson counts. Prints one JSON document: the
median and minimum wall-clock and CPU seconds per step over ``--repeats`` timed runs of
``--steps`` steps each (after one warm-up run), and, with ``--profile``, the top of a torch
profile of the timed steps. On a shared machine the CPU time shows how much of the wall time
was spent waiting for a core.

Usage::

    python benchmarks/grids_training_step.py [--steps 5] [--repeats 3] [--threads 1] [--profile]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import scipy.sparse as sp
import torch

from dmr_ray.grids.surrogate import Surrogate, SurrogateConfig, chromosome_blocks
from dmr_ray.grids.training import TrainingOptions, log_normalise, train_paired

N_PEAKS, N_GENES, N_CHROMOSOMES = 127_219, 3_000, 24


def synthetic(n_cells: int, density: float, seed: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Binary ATAC ``[n_cells, N_PEAKS]``, log-normalised RNA ``[n_cells, N_GENES]``, chromosome of every peak."""
    rng = np.random.default_rng(seed)
    atac = sp.random(n_cells, N_PEAKS, density=density, format="csr", random_state=rng, dtype=np.float32)
    atac.data[:] = 1.0
    counts = sp.csr_matrix(rng.poisson(0.5, (n_cells, N_GENES)).astype(np.float32))
    chrom = np.sort(rng.integers(0, N_CHROMOSOMES, N_PEAKS))
    return atac.astype(np.uint8), log_normalise(counts, 1e4), np.array([f"chr{c + 1}" for c in chrom])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1024)
    parser.add_argument("--density", type=float, default=0.06)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    atac, rna, chrom = synthetic(args.cells, args.density, seed=0)
    chromosomes, block = chromosome_blocks(chrom)
    config = SurrogateConfig(N_PEAKS, N_GENES, chromosomes, "", "")
    model = Surrogate(config, block, seed=0)
    options = TrainingOptions(steps=args.steps, batch_size=128, threads=args.threads, start_at_mean=False)
    train_paired(model, atac, rna, TrainingOptions(steps=1, threads=args.threads))  # warm-up
    wall, cpu = [], []
    for repeat in range(args.repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        train_paired(model, atac, rna, TrainingOptions(**{**options.__dict__, "seed": repeat}))
        wall.append((time.perf_counter() - started) / args.steps)
        cpu.append((time.process_time() - started_cpu) / args.steps)
    result: dict[str, object] = {
        "peaks": N_PEAKS,
        "genes": N_GENES,
        "batch": 128,
        "density": args.density,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "s_per_step_wall": {"median": float(np.median(wall)), "min": float(np.min(wall))},
        "s_per_step_cpu": {"median": float(np.median(cpu)), "min": float(np.min(cpu))},
    }
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            train_paired(model, atac, rna, options)
        result["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

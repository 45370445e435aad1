"""Throughput of the per-region MR stage on one chunk of BPNet-like ISM effects.

Synthetic effects ``[n, L, 3, T]`` (L = 1 000 bp, T = 4 tasks, 12 ordered pairs) where task 0
drives task 1 with effect 0.5 and the others share pleiotropic variants. The z-score filter at
threshold 3 (the BPNet setting) keeps tens of instruments per sequence and pair. Compared side
by side: :func:`dmr_ray.deepmr.local.local_effects_table` (batched estimators over all
sequences of the chunk) against a loop over (sequence, pair) calling the scalar estimators on
the same instruments, as the original implementation did; then the audit's default estimator
(the weighted median), IVW and ``deepmr`` each alone at the audit's bootstrap size. Prints one JSON document; timings
are wall-clock medians over ``--repeats`` runs, on one process.

Usage::

    python benchmarks/local_mr_throughput.py [--sequences 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from itertools import permutations

import numpy as np

from dmr_ray.deepmr.config import DEFAULT_ESTIMATOR, MethodOptions
from dmr_ray.deepmr.local import ROBUST_ABOVE, LocalMROptions, local_effects_table, region_rows
from dmr_ray.errors import InsufficientInstrumentsError
from dmr_ray.stats import mr

LENGTH = 1000
TASKS = ("A", "B", "C", "D")


def _effects(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Effects with a causal A -> B of 0.5, sparse strong variants and shared pleiotropy."""
    shape = (n, LENGTH, 3)
    strong = rng.random(shape) < 0.02
    base = rng.normal(0.0, 0.02, shape + (len(TASKS),))
    base += strong[..., None] * rng.normal(0.0, 0.5, shape + (len(TASKS),))
    base[..., 1] += 0.5 * base[..., 0]
    se = rng.uniform(0.005, 0.02, base.shape)
    return base.astype(np.float32), se.astype(np.float32)


def _options(beta: np.ndarray, estimators: tuple[str, ...], iterations: int = 1000) -> LocalMROptions:
    pooled = beta.reshape(-1, beta.shape[-1]).astype(np.float64)
    return LocalMROptions(
        tasks=TASKS,
        pairs=tuple(permutations(TASKS, 2)),
        estimators=estimators,
        filter="zscore",
        threshold=3.0,
        moments_mean=tuple(pooled.mean(axis=0)),
        moments_sd=tuple(pooled.std(axis=0)),
        region_width=LENGTH,
        iterations=iterations,
    )


def _scalar_loop(beta: np.ndarray, se: np.ndarray, options: LocalMROptions) -> int:
    """The original's shape: one scalar fit per (sequence, pair); returns the fits made."""
    index = {name: i for i, name in enumerate(options.tasks)}
    fits = 0
    for exposure, outcome in options.pairs:
        rows = region_rows(beta, se, index[exposure], index[outcome], options)
        for r in range(rows.mask.shape[0]):
            keep = rows.mask[r]
            args = (rows.bx[r, keep], rows.bxse[r, keep], rows.by[r, keep], rows.byse[r, keep])
            try:
                mr.egger(*args, robust=int(keep.sum()) > ROBUST_ABOVE, seed=options.seed)
                fits += 1
            except InsufficientInstrumentsError:
                pass
    return fits


def _median_time(func: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    beta, se = _effects(np.random.default_rng(0), opts.sequences)
    seq_ids = np.array([f"seq{i}" for i in range(opts.sequences)])
    default = _options(beta, ("deepmr",))
    local_effects_table(beta[:2], se[:2], seq_ids[:2], default)  # warm up (compiled kernels)
    table = local_effects_table(beta, se, seq_ids, default)
    n_instruments = np.asarray(table.column("n_instruments"))
    batched_s = _median_time(lambda: local_effects_table(beta, se, seq_ids, default), opts.repeats)
    loop_s = _median_time(lambda: _scalar_loop(beta, se, default), max(1, opts.repeats // 2))
    all_methods = _options(beta, ("deepmr", "ivw", "weighted_median", "mbe", "steiger"))
    all_s = _median_time(lambda: local_effects_table(beta, se, seq_ids, all_methods), 1)
    # Each estimator alone at the audit's own bootstrap size (methods.iterations' default).
    audit_iterations = MethodOptions().iterations
    alone = {
        method: _median_time(
            lambda m=method: local_effects_table(beta, se, seq_ids, _options(beta, (m,), audit_iterations)),
            opts.repeats,
        )
        for method in dict.fromkeys((DEFAULT_ESTIMATOR, "ivw", "deepmr"))
    }
    report = {
        "machine": {"cpus": os.cpu_count(), "load_average_1_5_15": os.getloadavg()},
        "sequences": opts.sequences,
        "length": LENGTH,
        "pairs": len(default.pairs),
        "instruments_per_fit": {
            "median": float(np.median(n_instruments)),
            "max": int(n_instruments.max()),
            "robust_share": float(np.mean(n_instruments > ROBUST_ABOVE)),
        },
        "deepmr_batched": {"wall_median_s": batched_s, "sequences_per_s": opts.sequences / batched_s},
        "deepmr_scalar_loop": {"wall_median_s": loop_s, "sequences_per_s": opts.sequences / loop_s},
        "speedup_batched_vs_loop": loop_s / batched_s,
        "five_methods_batched": {
            "estimators": list(all_methods.estimators),
            "bootstrap_iterations": all_methods.iterations,
            "wall_s": all_s,
            "sequences_per_s": opts.sequences / all_s,
        },
        "each_estimator_at_audit_iterations": {
            "bootstrap_iterations": audit_iterations,
            "default_estimator": DEFAULT_ESTIMATOR,
            **{m: {"wall_median_s": t, "sequences_per_s": opts.sequences / t} for m, t in alone.items()},
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""ISM time with every member's effects kept (``keep_replicates``): exact path against fast path.

Times :func:`dmr_ray.engine.ism_task.replicate_ism` on a small-CNN ensemble of the demo's shape
(``dmr_ray.demo.DemoSettings``: 5 members, default ``small_cnn``) with random weights, best of
``--repeats`` after one warm-up call, and checks the fast path against the exact one.

    python benchmarks/ism_keep_replicates.py --length 100 --n-seq 64
    python benchmarks/ism_keep_replicates.py --length 1000 --n-seq 8
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Literal

import numpy as np
import torch

from dmr_ray.engine.ism_task import replicate_ism
from dmr_ray.ism import FastPlanCache
from dmr_ray.ism import fast as ism_fast
from dmr_ray.models.architectures import small_cnn
from dmr_ray.uncertainty import EnsemblePredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--n-seq", type=int, default=64)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    predictor = EnsemblePredictor(
        [small_cnn(length=args.length, n_tasks=2) for _ in range(args.members)], None, input_length=args.length
    )
    tokens = np.random.default_rng(0).integers(0, 4, size=(args.n_seq, args.length)).astype(np.uint8)
    with torch.inference_mode():
        path = ism_fast.plan_fast_path(predictor, args.length, True, None)
    assert path is not None, "the model is not eligible for the fast path"
    row: dict[str, object] = {**vars(args), "work_ratio": round(path.work_ratio, 3)}
    results = {}
    modes: tuple[tuple[str, bool | Literal["auto"]], ...] = (("exact", False), ("fast", True), ("auto", "auto"))
    for name, fast in modes:
        plans = FastPlanCache()
        replicate_ism(predictor, tokens[:1], batch_size=None, ddof=1, fast=fast, plans=plans)  # warm-up, plan
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            results[name] = replicate_ism(predictor, tokens, batch_size=None, ddof=1, fast=fast, plans=plans)
            times.append(time.perf_counter() - start)
        row[f"{name}_s"] = round(min(times), 3)
    exact, fast_run = (results[name].replicate_beta for name in ("exact", "fast"))
    assert exact is not None and fast_run is not None  # kept by replicate_ism
    row["max_rel_diff"] = float(np.abs(fast_run - exact).max() / np.abs(exact).max())
    row["speedup"] = round(float(row["exact_s"]) / float(row["fast_s"]), 2)  # type: ignore[arg-type]
    print(json.dumps(row))


if __name__ == "__main__":
    main()

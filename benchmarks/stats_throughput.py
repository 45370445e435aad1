"""Throughput of the statistics core against R's timings and against naive Python baselines.

Prints one JSON document. Every timing is the median (and minimum) over ``--repeats`` runs,
wall clock and CPU time of this process; on a shared machine the CPU time shows how much of
the wall time was spent waiting for a core. R anchors (README of shared/reference, R 4.2.2 on
a 2-core machine, J = 30): ``mr_mbe`` 2.7 s, ``mr_median`` 0.34 s, ``mr_egger(robust=TRUE)``
0.043 s per call.

Bootstrap entries (10 000 draws, J = 30): ``r_stream_seed`` is the default call (seed
314159265, R's normal stream; the stream is cached after the first call, as in any run of
many calls), ``r_stream_seed_one_thread`` the same with the density search in the calling
thread (``threads=1``), ``r_stream_seed_cold_cache`` clears the stream cache before
every call, ``numpy_generator_seed`` draws from a ``numpy.random.Generator``. ``mbe``'s
``paths`` are the shares of its densities that the screened search certifies, that the
direct convolution takes and that reach the full 512-node grid.

``mbe_layouts`` times ``mr.mbe`` side by side on three instrument layouts (the benchmark's
own, exposure effects around zero with outlying ratio estimates, SEs spanning two orders of
magnitude; :data:`MBE_LAYOUTS`), with ms per call and the speed-up over R's 2.7 s. R's time
is its 10 000 ``density()`` calls, whatever the layout, so the one anchor serves all three.
``bootstrap_tasks`` is the CPU time of the busier of two threads over the bootstrap's tasks:
about the wall time on an idle 2-core machine, even when the machine is loaded.

Usage::

    python benchmarks/stats_throughput.py [--repeats 5] [--regions 100000] [--only-mbe-layouts]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import scipy

from dmr_ray.stats import _common, batched, density, mr, workers
from dmr_ray.stats.density import r_density

R_SECONDS = {"mbe": 2.7, "weighted_median": 0.34, "egger_robust": 0.043}
J = 30
DRAWS = 10_000


def _instruments(rng: np.random.Generator, shape: tuple[int, ...], layout: str = "typical") -> tuple[np.ndarray, ...]:
    """Exposure effects with heterogeneous strength, a causal effect of 0.4 and some pleiotropy.

    ``layout``: "typical" (|bx| in 0.05-0.5, SEs within a factor 5); "around_zero" (bx ~ N(0,
    0.2): some |bx| near 0, so some ratio estimates are outlying and the density's kernel is
    narrow against its grid); "uneven_se" (bxse and byse each spanning two orders of magnitude).
    """
    if layout == "around_zero":
        bx = rng.normal(0.0, 0.2, shape)
    else:
        bx = rng.uniform(0.05, 0.5, shape) * rng.choice([-1.0, 1.0], shape)
    uneven = layout == "uneven_se"
    bxse = 10 ** rng.uniform(-3, -1, shape) if uneven else rng.uniform(0.01, 0.05, shape)
    by = 0.4 * bx + rng.normal(0.0, 0.03, shape) + (rng.random(shape) < 0.1) * rng.normal(0, 0.1, shape)
    byse = 10 ** rng.uniform(-2.7, -0.7, shape) if uneven else rng.uniform(0.02, 0.06, shape)
    return bx, bxse, by, byse


MBE_LAYOUTS = {"typical": 1, "around_zero": 5, "uneven_se": 5}
"""Layout -> seed of its instruments' generator. "typical" is the bootstrap benchmark's own
instruments; of seeds 1-8, seed 5 gave the most bootstrap densities with kernels of 3-8 nodes
(the slowest path before the direct convolution took them) in the other two layouts."""


def _time(func: Callable[[], object], repeats: int) -> dict[str, float]:
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        func()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {
        "wall_median_s": float(np.median(wall)),
        "wall_min_s": float(np.min(wall)),
        "cpu_median_s": float(np.median(cpu)),
        "repeats": repeats,
    }


def _versus_r(name: str, timing: dict[str, float]) -> dict[str, float]:
    return {
        **timing,
        "speedup_vs_R_wall_median": R_SECONDS[name] / timing["wall_median_s"],
        "speedup_vs_R_cpu_median": R_SECONDS[name] / timing["cpu_median_s"],
    }


# --------------------------------------------------------------------------- naive baselines


def _naive_mbe(bx, bxse, by, byse, draws: int, seed: int) -> float:
    """One R-style density per draw (the literal port), as MendelianRandomization loops."""
    theta = by / bx
    se = np.sqrt(byse**2 / bx**2 + by**2 * bxse**2 / bx**4)
    w = se**-2 / np.sum(se**-2)
    rng = np.random.default_rng(seed)
    modes = np.empty(draws)
    for i in range(draws):
        t = theta + se * rng.standard_normal(theta.size)
        mad = 1.4826 * np.median(np.abs(t - np.median(t)))
        h = 0.9 * min(np.std(t, ddof=1), mad) / t.size**0.2
        d = r_density(t, h, w)
        modes[i] = d.x[np.argmax(d.y)]
    return 1.4826 * float(np.median(np.abs(modes - np.median(modes))))


def _naive_median(bx, bxse, by, byse, draws: int, seed: int) -> float:
    """MendelianRandomization's weighted.median, one bootstrap draw at a time."""
    w = (bx / byse) ** 2
    rng = np.random.default_rng(seed)
    est = np.empty(draws)
    for i in range(draws):
        theta = (by + byse * rng.standard_normal(J)) / (bx + bxse * rng.standard_normal(J))
        order = np.argsort(theta)
        ts, ws = theta[order], w[order]
        cs = (np.cumsum(ws) - 0.5 * ws) / ws.sum()
        k = int(np.sum(cs < 0.5))
        est[i] = ts[k - 1] + (ts[k] - ts[k - 1]) * (0.5 - cs[k - 1]) / (cs[k] - cs[k - 1])
    return float(np.std(est, ddof=1))


# --------------------------------------------------------------------------- benchmarks


def _cold(func: Callable[[], object]) -> Callable[[], object]:
    """``func`` with R's normal streams cleared first: every call pays the inverse normals."""

    def run() -> object:
        _common._streams.clear()
        return func()

    return run


def bench_bootstraps(repeats: int) -> dict[str, object]:
    args = _instruments(np.random.default_rng(1), (J,))
    naive_draws = 1000
    targets = {"mbe": 100.0, "weighted_median": 50.0}
    out: dict[str, object] = {}
    cases = (("mbe", mr.mbe, _naive_mbe), ("weighted_median", mr.weighted_median, _naive_median))
    for name, func, naive in cases:
        gen = np.random.default_rng(2)
        func(*args)  # R's stream for seed 314159265 is cached from here on, as in any long run
        entry = {
            "draws": DRAWS,
            "J": J,
            "target_speedup_vs_R": targets[name],
            "r_stream_seed": _versus_r(name, _time(partial(func, *args), repeats)),
            "r_stream_seed_cold_cache": _versus_r(name, _time(_cold(partial(func, *args)), repeats)),
            "numpy_generator_seed": _versus_r(name, _time(partial(func, *args, seed=gen), repeats)),
        }
        if name == "mbe":  # the weighted median runs in the calling thread: it takes no threads=
            entry["r_stream_seed_one_thread"] = _versus_r(name, _time(partial(func, *args, threads=1), repeats))
        naive_timing = _time(partial(naive, *args, naive_draws, 3), max(1, repeats // 2))
        scale = DRAWS / naive_draws
        entry["naive_per_draw_loop"] = {
            "measured_draws": naive_draws,
            "scaled_to_draws": DRAWS,
            **{k: v * scale if k.endswith("_s") else v for k, v in naive_timing.items()},
        }
        entry["speedup_vs_naive_wall_median"] = (
            entry["naive_per_draw_loop"]["wall_median_s"] / entry["r_stream_seed"]["wall_median_s"]
        )
        out[name] = entry
    out["mbe"]["paths"] = _path_shares(args)
    return out


def _path_shares(args: tuple[np.ndarray, ...]) -> dict[str, float]:
    """Shares of the 10 001 densities of one ``mr.mbe`` call (estimate and bootstrap) that the
    screened search certifies, that the direct convolution takes, and that reach the full grid
    (some rows of the direct convolution, where output values tie to 1e-9, go on to it)."""
    calls = {"direct": 0, "full_grid": 0}
    originals = {"direct": density._direct_mode, "full_grid": density._full_grid_mode}

    def counted(path: str) -> Callable[..., object]:
        def run(xs, *rest, **options):
            calls[path] += xs.shape[0]
            return originals[path](xs, *rest, **options)

        return run

    density._direct_mode, density._full_grid_mode = counted("direct"), counted("full_grid")
    try:
        mr.mbe(*args)
    finally:
        density._direct_mode, density._full_grid_mode = originals["direct"], originals["full_grid"]
    total = DRAWS + 1
    shares = {path: count / total for path, count in calls.items()}
    return {"screened": 1.0 - (calls["direct"] + calls["full_grid"]) / total, **shares}


def _busier_thread(args: tuple[np.ndarray, ...], repeats: int) -> dict[str, float]:
    """CPU time of the busier of two threads over the bootstrap's tasks (``time.thread_time``
    around each task), median over ``repeats`` calls of ``mr.mbe(threads=2)``, and its share of
    the tasks' CPU time. Plus the point estimate, it is the wall time on an idle 2-core
    machine, which a loaded one cannot show."""
    run_all = batched.run_all
    spent: dict[int, float] = {}

    def timed_run_all(run, items, pool):
        def timed(item):
            start = time.thread_time()
            run(item)
            ident = threading.get_ident()
            spent[ident] = spent.get(ident, 0.0) + time.thread_time() - start

        return run_all(timed, items, pool)

    busier, share = [], []
    batched.run_all = timed_run_all
    try:
        for _ in range(repeats):
            spent.clear()
            mr.mbe(*args, threads=2)
            busier.append(max(spent.values()))
            share.append(max(spent.values()) / sum(spent.values()))
    finally:
        batched.run_all = run_all
    return {
        "busier_thread_cpu_ms_median": 1e3 * float(np.median(busier)),
        "busier_share_median": float(np.median(share)),
    }


def bench_mbe_layouts(repeats: int) -> dict[str, object]:
    """``mr.mbe`` (J = 30, 10 000 draws, R's stream, default threads) on each of
    :data:`MBE_LAYOUTS`, measured side by side: each repeat times every layout once, in turn."""
    cases = {name: _instruments(np.random.default_rng(seed), (J,), name) for name, seed in MBE_LAYOUTS.items()}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for args in cases.values():
        mr.mbe(*args)  # R's stream cached, kernels loaded
    for _ in range(repeats):
        for name, args in cases.items():
            w0, c0 = time.perf_counter(), time.process_time()
            mr.mbe(*args)
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    out: dict[str, object] = {"draws": DRAWS, "J": J, "target_speedup_vs_R": 100.0, "repeats": repeats}
    for name, args in cases.items():
        timing = {
            "generator_seed": MBE_LAYOUTS[name],
            "ms_per_call_wall_median": 1e3 * float(np.median(wall[name])),
            "ms_per_call_wall_min": 1e3 * float(np.min(wall[name])),
            "ms_per_call_cpu_median": 1e3 * float(np.median(cpu[name])),
        }
        out[name] = {
            **timing,
            "speedup_vs_R_wall_median": R_SECONDS["mbe"] / float(np.median(wall[name])),
            "bootstrap_tasks": _busier_thread(args, repeats),
            "paths": _path_shares(args),
        }
    return out


def bench_batched(regions: int, repeats: int) -> dict[str, object]:
    rng = np.random.default_rng(4)
    args = _instruments(rng, (regions, J))
    mask = np.ones((regions, J), dtype=bool)

    def run() -> None:
        batched.ivw(*args, mask)
        batched.egger(*args, mask)

    loop_regions = 1000

    def loop() -> None:
        for r in range(loop_regions):
            one = [a[r] for a in args]
            mr.ivw(*one)
            mr.egger(*one)

    timing = _time(run, repeats)
    naive = _time(loop, max(1, repeats // 2))
    scale = regions / loop_regions
    return {
        "ivw_plus_egger": {"regions": regions, "J": J, **timing, "target_s": 2.0},
        "naive_scalar_loop": {
            "measured_regions": loop_regions,
            "scaled_to_regions": regions,
            **{k: v * scale if k.endswith("_s") else v for k, v in naive.items()},
        },
        "speedup_vs_naive_wall_median": naive["wall_median_s"] * scale / timing["wall_median_s"],
    }


def bench_robust(repeats: int, regions: int = 1000) -> dict[str, object]:
    """Robust Egger per call against R, and batched over ``regions`` against a scalar loop."""
    args = _instruments(np.random.default_rng(5), (J,))
    many = _instruments(np.random.default_rng(6), (regions, J))
    loop_regions = max(1, regions // 10)

    def loop() -> None:
        for r in range(loop_regions):
            mr.egger(*(a[r] for a in many), robust=True)

    timing = _time(lambda: batched.egger(*many, robust=True), max(1, repeats // 2))
    naive = _time(loop, max(1, repeats // 2))
    scale = regions / loop_regions
    return {
        "J": J,
        **_versus_r("egger_robust", _time(lambda: mr.egger(*args, robust=True), repeats)),
        "batched": {
            "regions": regions,
            **timing,
            "seconds_per_region": timing["wall_median_s"] / regions,
            "speedup_vs_scalar_loop_wall_median": naive["wall_median_s"] * scale / timing["wall_median_s"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--regions", type=int, default=100_000)
    parser.add_argument("--only-mbe-layouts", action="store_true", help="time mr.mbe on the three layouts only")
    opts = parser.parse_args()
    mr.mbe(*_instruments(np.random.default_rng(0), (J,)), iterations=10)  # warm up imports
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1_5_15": os.getloadavg(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "density_threads": workers.default_threads(),
        },
        "R_anchor_seconds": R_SECONDS,
        "mbe_layouts": bench_mbe_layouts(opts.repeats),
    }
    if not opts.only_mbe_layouts:
        report["bootstraps"] = bench_bootstraps(opts.repeats)
        report["batched"] = bench_batched(opts.regions, opts.repeats)
        report["egger_robust"] = bench_robust(opts.repeats)
    report["load_average_1_5_15_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

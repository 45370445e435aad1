"""Saturation-mutagenesis throughput, side by side on one model and one set of sequences.

Methods (all compute ``f(mutant) - f(reference)`` for every single-base substitution):

* ``naive``: the 3L mutants of each sequence as one one-hot batch (``--naive-batch``).
* ``dmr_exact``: :func:`dmr_ray.ism.saturation_mutagenesis` with ``fast=False``.
* ``dmr_fast``: the same with ``fast=True`` (and ``dmr_fast_<precision>`` with ``--precision``).
* ``tangermeme_fast``: ``tangermeme.saturation_mutagenesis(fast=True)`` when tangermeme is
  installed (``pip install .[bench]``), forced onto its fast path (its default skips the fast
  path for jobs it predicts to take under 30 s); set-up is its capture and check.

Each is reported with mutants/s (set-up included; median and best run), mutants/s after set-up
(median over runs of the mutants computed after set-up divided by the seconds after set-up:
for tangermeme, the mutants of its timed first batch are part of its set-up), set-up seconds
and the largest difference from ``naive``: absolute, and relative to each task's largest reference
output (``output_scale``). ``naive`` and ``dmr_exact`` run ``--slow-repeats``
times first; the fast methods then run ``--repeats`` times, round robin, so that load from
other processes falls on all of them alike.

Usage::

    python benchmarks/ism_throughput.py --models small_cnn bpnet --n-seq 16 --length 1000 --threads 2 \\
        --out ism_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from dmr_ray.ism import saturation_mutagenesis
from dmr_ray.ism.fast import PRECISIONS, fast_path
from dmr_ray.ism.mutants import MutantPlan, build_mutants, reference_onehot
from dmr_ray.models.architectures import bpnet, deepsea, small_cnn
from dmr_ray.models.heads import OutputSelector, OutputSpec
from dmr_ray.uncertainty.predictors import SinglePredictor

MODELS = ["small_cnn", "bpnet", "deepsea"]
"""Benchmark models (:func:`build`)."""

SLOW = {"naive", "dmr_exact"}
"""Methods run ``--slow-repeats`` times, first; the others run ``--repeats`` times, round robin."""


def build(name: str, length: int, profile_reduce: str) -> tuple[nn.Module, OutputSelector | None]:
    """The benchmark model (seeded weights) and the selector that turns its output into tasks.

    The small CNN and DeepSEA (the built-in defaults: 320/480/960 channels, a 925-wide dense
    layer, 919 sigmoid outputs) return their tasks. BPNet's tasks are its 4 counts (mean over
    strands) and task 0's profile reduced by ``profile_reduce`` (``sum`` keeps every task
    linear in the body output, so dmr_ray folds the heads into weights; ``max`` does not).
    """
    torch.manual_seed(0)
    if name == "small_cnn":
        return small_cnn(length=length).eval(), None
    if name == "deepsea":
        return deepsea(length=length).eval(), None
    tasks = [OutputSpec(name=f"counts{t}", select="counts", index=t, reduce="mean") for t in range(4)]
    tasks.append(OutputSpec(name="profile0", select="profile", index=0, reduce=profile_reduce))
    return bpnet(n_layers=8).eval(), OutputSelector(tasks)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``fn()`` and its wall time (synchronising CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def naive(tasks: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor, batch: int) -> np.ndarray:
    """``[n, L, 3, T]`` effects from full forward passes of one-hot mutant batches."""
    reference = reference_onehot(tokens)
    plan = MutantPlan(tokens)
    with torch.inference_mode():
        ref = tasks(reference)
        out = torch.empty(tokens.shape[0], tokens.shape[1], 3, ref.shape[1], device=tokens.device)
        for start in range(0, plan.n_mutants, batch):
            sites = plan.sites(start, min(start + batch, plan.n_mutants))
            out[sites.seq, sites.pos, sites.slot] = tasks(build_mutants(reference, sites)) - ref[sites.seq]
    return out.cpu().numpy()


def tangermeme_fast(
    model: nn.Module, selector: OutputSelector | None, tokens: torch.Tensor, batch: int, device: torch.device
) -> tuple[np.ndarray, float]:
    """Effects from tangermeme's forced fast path (``selector`` applied to the model's outputs),
    and its set-up seconds (capture + check)."""
    import tangermeme.saturation_mutagenesis as tm

    setup = []
    original = tm._fast_path

    def timed_fast_path(*args, **kwargs):
        out, seconds = timed(lambda: original(*args, **kwargs), device)
        setup.append(seconds)
        return out

    tm._FAST_MIN_SECONDS, tm._fast_path = 0.0, timed_fast_path
    try:
        y0, y_hat = tm.saturation_mutagenesis(
            model,
            reference_onehot(tokens.cpu()),
            batch_size=batch,
            raw_outputs=True,
            func=selector,
            device=device,
            fast=True,
        )
    finally:
        tm._fast_path = original
    y_hat = y_hat.permute(0, 2, 1, 3).float()
    ref = tokens.cpu().long()
    slot = torch.arange(3)
    alt = slot + (slot >= ref[..., None])
    effects = torch.gather(y_hat, 2, alt[..., None].expand(-1, -1, -1, y_hat.shape[3])) - y0[:, None, None].float()
    return effects.numpy(), setup[0]


def setup_mutants(method: str, args: argparse.Namespace, mutants: int) -> int:
    """Mutants a method computes during its set-up (tangermeme's timed first batch)."""
    return min(args.tangermeme_batch, mutants) if method == "tangermeme_fast" else 0


def run_model(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    model, selector = build(name, args.length, args.profile_reduce)
    model.to(device)
    predictor = SinglePredictor(model, selector, input_length=args.length, device=device)

    def tasks(x: torch.Tensor) -> torch.Tensor:
        out = model(x.to(device, torch.float32))
        return selector(out) if selector is not None else out

    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 4, (args.n_seq, args.length)).astype(np.uint8))
    tokens = tokens.to(device)
    mutants = 3 * tokens.numel()
    methods: dict[str, Callable[[], tuple[np.ndarray, float]]] = {
        "naive": lambda: (naive(tasks, tokens, args.naive_batch), 0.0),
        "dmr_exact": lambda: (saturation_mutagenesis(predictor, tokens, fast=False).beta, 0.0),
        "dmr_fast": lambda: (
            saturation_mutagenesis(predictor, tokens, fast=True, batch_size=args.fast_batch).beta,
            dmr_setup(predictor, tokens, None),
        ),
    }
    if args.precision != "float32":
        methods[f"dmr_fast_{args.precision}"] = lambda: (
            saturation_mutagenesis(
                predictor, tokens, fast=True, batch_size=args.fast_batch, precision=args.precision
            ).beta,
            dmr_setup(predictor, tokens, PRECISIONS[args.precision]),
        )
    if _has_tangermeme():
        methods["tangermeme_fast"] = lambda: tangermeme_fast(model, selector, tokens, args.tangermeme_batch, device)
    methods = {m: fn for m, fn in methods.items() if m not in args.skip}
    runs: dict[str, list[tuple[tuple[np.ndarray, float], float]]] = {m: [] for m in methods}
    for method in [m for m in methods if m in SLOW]:
        runs[method] = [timed(methods[method], device) for _ in range(args.slow_repeats)]
    for _ in range(args.repeats):  # round robin, so that load from other processes hits all alike
        for method in [m for m in methods if m not in SLOW]:
            runs[method].append(timed(methods[method], device))
    reference = runs["naive"][0][0][0] if "naive" in runs else None
    with torch.inference_mode():
        scale = tasks(reference_onehot(tokens)).abs().amax(dim=0).cpu().numpy()
    results: dict[str, Any] = {}
    for method in methods:
        (effects, _), _ = runs[method][0]
        seconds = [s for _, s in runs[method]]
        after = mutants - setup_mutants(method, args, mutants)
        steady = [after / max(s - setup, 1e-9) for (_, setup), s in runs[method]]
        results[method] = {
            "seconds": round(statistics.median(seconds), 3),
            "seconds_min": round(min(seconds), 3),
            "runs": len(seconds),
            "mutants_per_s": round(mutants / statistics.median(seconds), 1),
            "mutants_per_s_best": round(mutants / min(seconds), 1),
            "mutants_per_s_after_setup": round(statistics.median(steady), 1),
            "setup_s": round(statistics.median(setup for (_, setup), _ in runs[method]), 3),
            "max_abs_diff_vs_naive": None if reference is None else float(np.nanmax(np.abs(effects - reference))),
            "max_rel_diff_vs_naive": None
            if reference is None
            else float(np.nanmax(np.abs(effects - reference).max(axis=(0, 1, 2)) / scale)),
        }
        print(f"{name} {method}: {results[method]}", file=sys.stderr)
    return {
        "n_seq": args.n_seq,
        "length": args.length,
        "mutants": mutants,
        "output_scale": scale.tolist(),
        "params": sum(p.numel() for p in model.parameters()),
        "methods": results,
        "speedups": _speedups(results, "mutants_per_s"),
        "speedups_after_setup": _speedups(results, "mutants_per_s_after_setup"),
    }


def dmr_setup(predictor: SinglePredictor, tokens: torch.Tensor, precision: torch.dtype | None) -> float:
    """Seconds dmr_ray's fast path spends before its first mutant (tracing, probing, planning)."""
    with torch.inference_mode():
        return timed(lambda: fast_path(predictor, tokens, True, precision), predictor.device)[1]


def _speedups(results: dict[str, Any], key: str) -> dict[str, float]:
    rate = {m: r[key] for m, r in results.items()}
    pairs = [
        ("dmr_fast", "naive"),
        ("dmr_fast", "dmr_exact"),
        ("dmr_fast", "tangermeme_fast"),
        ("tangermeme_fast", "naive"),
    ]
    return {f"{a}_vs_{b}": round(rate[a] / rate[b], 2) for a, b in pairs if a in rate and b in rate}


def _has_tangermeme() -> bool:
    try:
        import tangermeme  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["small_cnn", "bpnet"], choices=MODELS)
    parser.add_argument("--n-seq", type=int, default=16)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision",
        default="float32",
        choices=sorted(PRECISIONS),
        help="also run dmr_ray fast in this autocast precision (CUDA)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each fast method, round robin (median and best reported)"
    )
    parser.add_argument("--slow-repeats", type=int, default=1, help="runs of naive and dmr_exact")
    parser.add_argument("--naive-batch", type=int, default=3000)
    parser.add_argument("--fast-batch", type=int, default=None, help="dmr_ray fast mutants per pass (default: auto)")
    parser.add_argument("--tangermeme-batch", type=int, default=256)
    parser.add_argument(
        "--profile-reduce",
        default="sum",
        choices=["sum", "mean", "max"],
        help="reduction of BPNet's profile task (max: a nonlinear task)",
    )
    parser.add_argument("--skip", nargs="*", default=[], help="methods to leave out")
    parser.add_argument("--out", default=None, help="JSON file (default: stdout)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    report = {
        "command": " ".join(["python", *sys.argv]),
        "torch": torch.__version__,
        "tangermeme": _version("tangermeme"),
        "threads": args.threads,
        "device": str(device),
        "profile_reduce": args.profile_reduce,
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "models": {name: run_model(name, args, device) for name in args.models},
    }
    report["load_average"] = {"before": load_before, "after": os.getloadavg()}
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()

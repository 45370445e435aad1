"""Ray engine benchmark: actor scaling, engine overhead and driver memory, printed as JSON.

Measures, on a local Ray instance with ``--cpus`` logical CPUs (default 2):

* the start-up seconds the engine reports for each engine run (``startup_s``: actors placed,
  models loaded), which its own rate and ETA exclude;
* steady-state throughput (mutants per second, per replicate) of the engine with 1 actor x 1
  thread, 2 actors x 1 thread and 1 actor x 2 threads, and of in-process
  ``saturation_mutagenesis`` over the same chunks with 1 and 2 torch threads. Steady state
  excludes the first chunk of each actor pool or loop (actor start, model load, warm-up):
  rate = mutants of the later chunks / time from the first to the last commit;
* ``scaling``: 2 actors x 1 thread over 1 actor x 1 thread (target >= 1.7 on 2 CPUs);
* ``overhead``: 1 - engine / in-process rate at equal total thread count (target <= 10%);
* mutants per CPU-second of each configuration (each actor's CPU time from ``/proc``): it
  does not depend on how much of the machine other tenants take, so on a shared machine it
  shows whether the engine itself loses anything (``cpu_efficiency_2_actors_vs_1``, ideal 1);
* the driver's RSS before and its peak during (sampled every 20 ms) runs over small and
  large stores (``--rss-sizes``), each in a fresh process (target: flat, since the driver
  never holds tokens or effects).

Every throughput figure is the median of ``--repeats`` runs, taken round robin over the
configurations so that changing load hits each alike; the individual runs are printed too.
Run it on a quiet machine: ``python benchmarks/engine_scaling.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml

from dmr_ray.engine import EngineOptions, IsmJob, run_on_ray
from dmr_ray.ism import saturation_mutagenesis
from dmr_ray.models import load_model_spec, save_weights
from dmr_ray.models.architectures import small_cnn
from dmr_ray.store import open_sequence_store, write_sequence_store
from dmr_ray.uncertainty import build_predictor

TINY = {"filters": 4, "kernel": 5, "n_conv": 1, "n_dense": 1, "hidden": 8, "n_tasks": 2}


def write_model(folder: Path, length: int, members: int, architecture: dict) -> Path:
    """An ensemble of ``members`` small CNNs and its spec; returns the spec path."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(members):
        torch.manual_seed(i)
        names.append(f"m{i}.safetensors")
        save_weights(small_cnn(length=length, **architecture), folder / names[-1])
    spec = {
        "entrypoint": "dmr_ray.models.architectures:small_cnn",
        "kwargs": {"length": length, **architecture},
        "weights": names,
        "input_length": length,
        "outputs": [{"name": "y", "index": 0}],
        "replicates": {"kind": "ensemble"},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def write_store(path: Path, n_seq: int, length: int, chunk_size: int) -> Path:
    """A store of random sequences."""
    tokens = np.random.default_rng(0).integers(0, 4, size=(n_seq, length)).astype(np.uint8)
    write_sequence_store(path, tokens, chunk_size=chunk_size, overwrite=True)
    return path


def steady_rate(times: list[float], sizes: list[int], per_item: int) -> float:
    """Mutants per second over every chunk but the first finished one (``sizes`` times ``per_item`` mutants)."""
    return sum(sizes[1:]) * per_item / (times[-1] - times[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine_rate(store: Path, spec: Path, out: Path, actors: int, threads: int) -> dict:
    """One engine run: steady-state and end-to-end mutants per second, per actor CPU-second, and
    the start-up seconds the engine reports (Ray actors placed and models loaded).

    The CPU measure counts, for each actor, the mutants it committed after its first chunk
    over the CPU time it used in between, so it does not depend on other tenants' load.
    """
    times: list[float] = []
    sizes: list[int] = []  # mutants per committed chunk (the engine's unit for ISM)
    per_actor: dict[int, list[float]] = {}  # pid -> [cpu at first commit, cpu now, mutants since]

    def record(report) -> None:
        times.append(time.perf_counter())
        sizes.append(report.units)
        cpu = cpu_seconds(report.pid)
        first, _, done = per_actor.get(report.pid, [cpu, cpu, -report.units])
        per_actor[report.pid] = [first, cpu, done + report.units]

    began = time.perf_counter()
    summary = run_on_ray(
        IsmJob(str(store), str(spec), str(out), fast=False),  # the exact path, as the in-process loop
        EngineOptions(actors=actors, threads=threads),
        overwrite=True,
        on_commit=record,
    )
    wall = time.perf_counter() - began
    cpu = sum(last - first for first, last, _ in per_actor.values())
    mutants = sum(done for _, _, done in per_actor.values())
    return {
        "steady": steady_rate(times, sizes, 1),
        "end_to_end": sum(sizes) / wall,
        "per_cpu_second": mutants / cpu,
        "startup_s": summary.startup_s,
    }


def in_process_rate(store: Path, spec: Path, threads: int, length: int) -> dict:
    """saturation_mutagenesis over the store's chunks in this process, tokens read up front."""
    torch.set_num_threads(threads)
    predictor = build_predictor(load_model_spec(spec), device="cpu")
    sequences = open_sequence_store(store)
    blocks = [sequences.read(*sequences.chunk_bounds(i)) for i in range(sequences.n_chunks)]
    times, sizes, cpu = [], [], []
    began = time.perf_counter()
    for block in blocks:
        saturation_mutagenesis(predictor, block)
        times.append(time.perf_counter())
        cpu.append(time.process_time())
        sizes.append(len(block))
    wall = time.perf_counter() - began
    return {
        "steady": steady_rate(times, sizes, 3 * length),
        "end_to_end": sum(sizes) * 3 * length / wall,
        "per_cpu_second": steady_rate(cpu, sizes, 3 * length),
    }


def median_of(runs: list[dict]) -> dict:
    """Medians of each measure over repeated runs, and the runs themselves."""
    return {
        "steady": statistics.median(r["steady"] for r in runs),
        "end_to_end": statistics.median(r["end_to_end"] for r in runs),
        "per_cpu_second": statistics.median(r["per_cpu_second"] for r in runs),
        "runs_steady": [round(r["steady"]) for r in runs],
        **({"startup_s": statistics.median(r["startup_s"] for r in runs)} if "startup_s" in runs[0] else {}),
        "load_average_before_runs": [round(r["load"], 2) for r in runs],
    }


def current_rss_mib() -> float:
    """This process's resident set size now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def rss_child(store: str, spec: str, out: str, cpus: int) -> None:
    """Run the engine once in this fresh process; print its RSS before and at most during the run (MiB)."""
    import ray

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    before = current_rss_mib()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, current_rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run_on_ray(IsmJob(store, spec, out), EngineOptions(actors=2), overwrite=True)
    done.set()
    sampler.join()
    ray.shutdown()
    print(json.dumps({"rss_before_run_mib": round(before, 1), "peak_rss_during_run_mib": round(peak, 1)}))


def driver_rss(folder: Path, sizes: list[int], cpus: int) -> dict:
    """Peak driver RSS for stores of each size (tiny model, 50 sequences per chunk)."""
    spec = write_model(folder / "tiny", 100, 2, TINY)
    results = {}
    for n_seq in sizes:
        store = write_store(folder / f"rss_{n_seq}.zarr", n_seq, 100, 50)
        out = folder / f"rss_{n_seq}_out.zarr"
        command = [sys.executable, __file__, "--rss-child", str(store), str(spec), str(out), "--cpus", str(cpus)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[str(n_seq)] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", type=int, default=2, help="logical CPUs of the local Ray instance")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (median reported)")
    parser.add_argument("--sequences", type=int, default=48, help="sequences of the throughput store")
    parser.add_argument("--length", type=int, default=200, help="sequence length")
    parser.add_argument("--chunk-size", type=int, default=4, help="sequences per chunk")
    parser.add_argument("--members", type=int, default=2, help="ensemble members")
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[100, 2000], help="store sizes for the RSS runs")
    parser.add_argument("--rss-child", nargs=3, metavar=("STORE", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child, cpus=args.cpus)
        return

    import ray

    architecture = {"filters": 32, "kernel": 7, "n_conv": 3, "n_dense": 1, "hidden": 32, "n_tasks": 2}
    with tempfile.TemporaryDirectory(prefix="engine_scaling_") as tmp:
        folder = Path(tmp)
        spec = write_model(folder / "model", args.length, args.members, architecture)
        store = write_store(folder / "seqs.zarr", args.sequences, args.length, args.chunk_size)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        configurations = {
            **{f"in_process_{t}t": partial(in_process_rate, store, spec, t, args.length) for t in (1, 2)},
            **{
                f"engine_{a}x{t}t": partial(engine_rate, store, spec, folder / "out.zarr", a, t)
                for a, t in ((1, 1), (2, 1), (1, 2))
            },
        }
        runs: dict[str, list[dict]] = {name: [] for name in configurations}
        for _ in range(args.repeats):  # round robin, so that load drift hits every configuration alike
            for name, measure in configurations.items():
                load = os.getloadavg()[0]
                runs[name].append({**measure(), "load": load})
        ray.shutdown()
        rates = {name: median_of(values) for name, values in runs.items()}
        rss = driver_rss(folder, args.rss_sizes, args.cpus)
    steady = {name: value["steady"] for name, value in rates.items()}
    report = {
        "machine": {
            "cpus_visible": os.cpu_count(),
            "ray_cpus": args.cpus,
            "torch": torch.__version__,
            "load_average_at_end": os.getloadavg(),
        },
        "workload": {
            "sequences": args.sequences,
            "length": args.length,
            "chunk_size": args.chunk_size,
            "members": args.members,
            "model": {"small_cnn": architecture},
            "mutants_per_member": args.sequences * 3 * args.length,
        },
        "mutants_per_s": {
            name: {k: (round(v) if isinstance(v, float) else v) for k, v in value.items()}
            for name, value in rates.items()
        },
        "scaling_2_actors_vs_1": round(steady["engine_2x1t"] / steady["engine_1x1t"], 3),
        "cpu_efficiency_2_actors_vs_1": round(
            rates["engine_2x1t"]["per_cpu_second"] / rates["engine_1x1t"]["per_cpu_second"], 3
        ),
        "overhead_vs_in_process": {
            "1_thread": round(1 - steady["engine_1x1t"] / steady["in_process_1t"], 3),
            "2_threads (2 actors x 1 vs 1 loop x 2)": round(1 - steady["engine_2x1t"] / steady["in_process_2t"], 3),
            "2_threads (1 actor x 2 vs 1 loop x 2)": round(1 - steady["engine_1x2t"] / steady["in_process_2t"], 3),
        },
        "driver_rss_mib": rss,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

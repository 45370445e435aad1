"""Logical resources of replica actors, and the per-process settings that go with them.

Ray schedules by *logical* resources. An actor pool that reserves every CPU of a node leaves
nothing for the small tasks a run also needs (merging replicate groups, Ray's own helpers)
and the run hangs without an error. So actors reserve at most the cluster's CPUs minus
:data:`CPU_HEADROOM`, shared equally, while their torch thread count is set explicitly (a
fractional reservation of 0.75 CPU still runs one full thread). On GPU clusters each actor
takes a (possibly fractional) share of a GPU and one CPU thread to feed it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from dmr_ray.errors import InputError

log = logging.getLogger(__name__)

CPU_HEADROOM = 0.5
"""Logical CPUs the actor pool leaves free in the cluster for the run's small tasks."""

SMALL_TASK_CPUS = 0.1
"""Logical CPUs of a reduce-and-commit task (it fits several times into the headroom)."""

ZARR_CONCURRENCY = 4
"""zarr ``async.concurrency`` inside workers (default 10), so that many actors on one node do
not open hundreds of concurrent requests."""

ZARR_THREADS = 1
"""zarr ``threading.max_workers`` inside workers: compute threads belong to torch."""

_STEPS = 10_000
"""Ray resource quantities have a granularity of 1e-4."""


@dataclass(frozen=True)
class ActorResources:
    """What each replica actor reserves and how it computes.

    Attributes
    ----------
    num_cpus : float
        Logical CPUs reserved per actor (may be fractional).
    num_gpus : float
        GPUs reserved per actor (fractional: several replicas share a GPU); 0 on CPU.
    threads : int
        torch intra-op threads per actor.
    device : str
        ``"cuda"`` or ``"cpu"`` (or the explicit non-CUDA device asked for).
    """

    num_cpus: float
    num_gpus: float
    threads: int
    device: str

    def describe(self) -> str:
        """One line for logs and error messages."""
        gpus = f", {self.num_gpus:g} GPU" if self.num_gpus else ""
        return f"{self.num_cpus:g} CPU{gpus}, {self.threads} torch thread(s) on {self.device}"


def default_actor_count(cluster: Mapping[str, float], device: str | None = None) -> int:
    """Actors when none are asked for: one per GPU, else one per CPU left after the headroom.

    Single-thread actors scale better than one multi-threaded actor on CPU (see
    ``docs/benchmarks.md``); each holds its own copy of the model.
    """
    if _uses_gpu(cluster, device, None):
        return max(1, math.floor(cluster.get("GPU", 0.0)))
    return max(1, math.ceil(float(cluster.get("CPU", 0.0)) - CPU_HEADROOM))


def plan_resources(
    n_actors: int,
    cluster: Mapping[str, float],
    *,
    threads: int | None = None,
    gpus_per_actor: float | None = None,
    device: str | None = None,
) -> ActorResources:
    """Size the actors of a pool of ``n_actors`` on a cluster with ``cluster`` resources.

    Parameters
    ----------
    n_actors
        Number of replica actors (>= 1).
    cluster
        Total cluster resources, as ``ray.cluster_resources()`` (``"CPU"``, ``"GPU"``).
    threads
        torch threads per actor; default 1 on GPU, else ``max(1, CPUs // n_actors)``.
    gpus_per_actor
        GPU share per actor; default ``min(1, GPUs / n_actors)`` (1 on a cluster that has no
        GPU yet, for an autoscaler to add).
    device
        ``None`` (CUDA when the cluster has GPUs or ``gpus_per_actor`` is given, else CPU),
        ``"cuda"`` or ``"cpu"`` (any other torch device string is used as given, without GPUs).

    Returns
    -------
    ActorResources
        ``num_cpus = min(threads, (CPUs - CPU_HEADROOM) / n_actors)``, rounded down to 1e-4.

    Raises
    ------
    InputError
        No room for the pool (``CPUs <= CPU_HEADROOM``), a GPU share on a non-CUDA device,
        a share above 1 or above the cluster's GPUs, or bad counts.
    """
    for name, value in (("actors", n_actors), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{name}: must be a positive integer, got {value!r}")
    cpus, gpus = float(cluster.get("CPU", 0.0)), float(cluster.get("GPU", 0.0))
    use_gpu = _uses_gpu(cluster, device, gpus_per_actor)
    if gpus_per_actor is not None and not use_gpu:
        raise InputError(f"gpus per actor: {gpus_per_actor} given, but the actors run on {device}")
    num_gpus = 0.0
    if use_gpu:
        if gpus <= 0:
            log.warning("the Ray cluster has no GPU now; the actors wait until an autoscaler adds GPU nodes")
        default = min(1.0, gpus / n_actors) if gpus > 0 else 1.0
        num_gpus = default if gpus_per_actor is None else float(gpus_per_actor)
        if not 0 < num_gpus <= 1 or 0 < gpus < num_gpus:
            raise InputError(f"gpus per actor: must be in (0, min(1, {gpus:g})], got {num_gpus:g}")
        num_gpus = _round_down(num_gpus)
    budget = (cpus - CPU_HEADROOM) / n_actors
    if budget * _STEPS < 1:
        raise InputError(
            f"the Ray cluster has {cpus:g} CPUs: {n_actors} actors need more than the {CPU_HEADROOM} CPU "
            f"kept free for the run's small tasks"
        )
    if threads is None:
        threads = 1 if use_gpu else max(1, math.floor(cpus / n_actors))
    if not use_gpu and threads * n_actors > cpus:
        log.warning("%d actors x %d threads oversubscribe the cluster's %g CPUs", n_actors, threads, cpus)
    return ActorResources(
        num_cpus=_round_down(min(float(threads), budget)),
        num_gpus=num_gpus,
        threads=threads,
        device="cuda" if use_gpu else (device or "cpu"),
    )


def configure_zarr() -> None:
    """Lower zarr's I/O concurrency in this worker process (see the module constants)."""
    import zarr

    zarr.config.set({"async.concurrency": ZARR_CONCURRENCY, "threading.max_workers": ZARR_THREADS})


def configure_worker(threads: int) -> None:
    """Set torch's intra-op threads and zarr's concurrency for a replica actor's process."""
    import torch

    torch.set_num_threads(threads)
    configure_zarr()


def _uses_gpu(cluster: Mapping[str, float], device: str | None, gpus_per_actor: float | None) -> bool:
    if device is not None:
        return device.startswith("cuda")
    return gpus_per_actor is not None or float(cluster.get("GPU", 0.0)) > 0


def _round_down(value: float) -> float:
    """``value`` rounded down to Ray's resource granularity (so a pool never over-asks)."""
    return math.floor(value * _STEPS + 1e-6) / _STEPS

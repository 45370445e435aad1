"""Independent rounds as Ray tasks, a few at a time, each in its own placement group.

A round is one call ``work(index)`` that writes its own outputs (atomically) and returns a
small record. Each round runs as a Ray task in a placement group of one bundle of ``cpus``
CPUs, the round's whole budget: the task itself reserves nothing of it, and work that the
round starts on Ray (the Deep MR audit's actor pools, :mod:`dmr_ray.engine.pool`) is captured
by the group and sized from its bundle, so nested pools never compete for the cluster's
other CPUs and never wait on resources another round holds. ``parallel`` rounds are in flight
at once; ``parallel = 1`` is the sequential run.

Only indices and records pass through Ray's object store (the rounds read and write their
data on disk), so it stays small. On an exception in the driver (Ctrl-C included), the rounds
in flight are cancelled (their worker processes and the actors they own end) and their
placement groups removed: finished rounds are kept, the rounds in flight are lost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dmr_ray.errors import InputError


@dataclass(frozen=True)
class RoundOutcome:
    """One finished round: its record, or why it failed.

    Attributes
    ----------
    index
        The round.
    record
        What ``work(index)`` returned (``None`` when it failed).
    error
        The first line of the failure (empty when it succeeded).
    """

    index: int
    record: Any = None
    error: str = ""


def cluster_cpus() -> float:
    """Logical CPUs of the connected Ray cluster."""
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0))


def plan_parallel(parallel: int | None, round_cpus: float, cpus: float) -> int:
    """Rounds in flight: ``parallel``, or as many rounds of ``round_cpus`` as ``cpus`` hold.

    Parameters
    ----------
    parallel
        Asked for (``None``: the default, at least 1).
    round_cpus
        CPUs one round reserves.
    cpus
        CPUs of the cluster.

    Raises
    ------
    InputError
        A round needs more CPUs than the cluster has, or ``parallel`` rounds do not fit (their
        placement groups would wait forever).
    """
    fits = math.floor(cpus / round_cpus + 1e-9)
    if fits < 1:
        raise InputError(f"parallel: one round needs {round_cpus:g} CPUs, the Ray cluster has {cpus:g}")
    if parallel is None:
        return fits
    if parallel > fits:
        raise InputError(
            f"parallel: {parallel} rounds of {round_cpus:g} CPUs need {parallel * round_cpus:g} CPUs, "
            f"the Ray cluster has {cpus:g} (at most --parallel {fits})"
        )
    return parallel


def check_parallel(parallel: Any) -> None:
    """Refuse a ``parallel`` that is neither ``None`` nor a positive integer."""
    from dmr_ray._checks import is_int

    if parallel is not None and not (is_int(parallel) and parallel >= 1):
        raise InputError(f"parallel: must be a positive integer, got {parallel!r}")


def run_rounds(
    work: Callable[[int], Any],
    indices: Sequence[int],
    *,
    round_cpus: float,
    parallel: int,
    on_start: Callable[[int], None] = lambda _: None,
    on_finish: Callable[[RoundOutcome], None] = lambda _: None,
) -> list[RoundOutcome]:
    """Run ``work(i)`` for every ``i`` in ``indices`` as Ray tasks, ``parallel`` at a time.

    Parameters
    ----------
    work
        A picklable callable (a module-level function or a ``functools.partial`` of one).
    indices
        The rounds, submitted in this order.
    round_cpus
        CPUs of each round's placement group.
    parallel
        Rounds in flight at once (>= 1).
    on_start, on_finish
        Called in the driver as each round is submitted and as it finishes (in order of
        finishing); an exception they raise stops the run like Ctrl-C.

    Returns
    -------
    list of RoundOutcome
        In order of finishing; a failed round does not stop the others.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    remote = ray.remote(num_cpus=0, max_retries=0)(_call)
    pending = list(indices)
    running: dict[Any, tuple[int, Any]] = {}
    outcomes: list[RoundOutcome] = []
    try:
        while pending or running:
            while pending and len(running) < parallel:
                index = pending.pop(0)
                group = placement_group([{"CPU": round_cpus}])
                strategy = PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)
                running[remote.options(scheduling_strategy=strategy).remote(work, index)] = (index, group)
                on_start(index)
            ready, _ = ray.wait(list(running), num_returns=1)
            index, group = running.pop(ready[0])
            remove_placement_group(group)
            try:
                outcome = RoundOutcome(index, record=ray.get(ready[0]))
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None) or exc
                outcome = RoundOutcome(index, error=f"{type(cause).__name__}: {cause}".splitlines()[0])
            outcomes.append(outcome)
            on_finish(outcome)
    finally:
        for ref, (_, group) in running.items():
            ray.cancel(ref, force=True)
            remove_placement_group(group)
    return outcomes


def _call(work: Callable[[int], Any], index: int) -> Any:
    return work(index)

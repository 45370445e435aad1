"""The actor pool: sized from a resource mapping, placed in the current placement group if any.

Outside a placement group the mapping is the Ray cluster's resources. Inside one (a Ray Tune
trial, or any task or actor started with a placement group and
``placement_group_capture_child_tasks``), it is the group's bundles less what the calling
worker itself holds, and the actors and reduce tasks are scheduled into the group. The pool
never starts more actors than the bundles can hold (:func:`actor_capacity`): actors beyond
that would wait forever without an error. A request that the resources can never satisfy
(CUDA on a cluster without a GPU) fails at once with an :class:`~dmr_ray.errors.EngineError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray

from dmr_ray.engine.actor import ChunkActor
from dmr_ray.engine.options import EngineOptions
from dmr_ray.engine.resources import ActorResources, default_actor_count, plan_resources
from dmr_ray.errors import EngineError, InputError

if TYPE_CHECKING:
    from dmr_ray.engine.task import ChunkTask

log = logging.getLogger(__name__)

Bundle = Mapping[str, float]


@dataclass
class PoolActor:
    """A chunk actor as the scheduler tracks it.

    Attributes
    ----------
    handle
        The Ray actor handle.
    shard
        The shard it serves.
    state
        ``"starting"`` (setting up, or being restarted), ``"alive"`` or ``"dead"``.
    load
        Chunks submitted to it and not yet answered.
    info
        Where it runs, once it has answered :meth:`ChunkActor.ready`.
    error
        Why it is dead.
    """

    handle: Any
    shard: int
    state: str = "starting"
    load: int = 0
    info: Any = None
    error: str = ""


@dataclass(frozen=True)
class PoolPlan:
    """How many actors of what size, and where they go.

    Attributes
    ----------
    n_actors : int
        Actors of the pool (at least one per shard).
    resources : ActorResources
        What each actor reserves.
    placement_group : PlacementGroup or None
        The placement group actors and reduce tasks are scheduled into.
    """

    n_actors: int
    resources: ActorResources
    placement_group: Any = None

    def options(self) -> dict[str, Any]:
        """Ray ``.options()`` that schedule a worker into the plan's placement group (if any)."""
        if self.placement_group is None:
            return {}
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        strategy = PlacementGroupSchedulingStrategy(self.placement_group, placement_group_capture_child_tasks=True)
        return {"scheduling_strategy": strategy}


def current_bundles() -> list[dict[str, float]] | None:
    """Free bundles of the placement group this worker runs in, or ``None`` outside one.

    What the calling worker itself holds is taken off the first bundle that can hold it.
    """
    group = ray.util.get_current_placement_group()
    if group is None:
        return None
    bundles = [{key: float(value) for key, value in bundle.items()} for bundle in group.bundle_specs]
    assigned = ray.get_runtime_context().get_assigned_resources()
    own = {key: float(amount) for key, amount in assigned.items() if key in ("CPU", "GPU") and amount}
    for bundle in bundles:
        if all(bundle.get(key, 0.0) >= amount for key, amount in own.items()):
            for key, amount in own.items():
                bundle[key] = bundle.get(key, 0.0) - amount
            break
    return bundles


def resource_mapping(bundles: Sequence[Bundle] | None) -> dict[str, float]:
    """Total ``CPU`` and ``GPU`` of ``bundles``, or of the Ray cluster when ``bundles`` is ``None``."""
    if bundles is None:
        cluster = ray.cluster_resources()
        return {key: float(cluster.get(key, 0.0)) for key in ("CPU", "GPU")}
    return {key: sum(float(bundle.get(key, 0.0)) for bundle in bundles) for key in ("CPU", "GPU")}


def actor_capacity(resources: ActorResources, bundles: Sequence[Bundle]) -> int:
    """How many actors of ``resources`` (``num_cpus > 0``) the ``bundles`` hold; an actor never spans bundles."""
    total = 0
    for bundle in bundles:
        fit = float(bundle.get("CPU", 0.0)) / resources.num_cpus
        if resources.num_gpus:
            fit = min(fit, float(bundle.get("GPU", 0.0)) / resources.num_gpus)
        total += math.floor(fit + 1e-9)
    return total


def check_capacity(n_actors: int, resources: ActorResources, bundles: Sequence[Bundle] | None, mapping: Bundle) -> None:
    """Refuse a pool its resources cannot hold.

    Raises
    ------
    EngineError
        Inside a placement group: fewer than ``n_actors`` actors fit its bundles. Outside:
        the cluster cannot hold even one actor (e.g. CUDA asked for on a cluster without GPUs).
    """
    have = ", ".join(f"{value:g} {key}" for key, value in sorted(mapping.items()))
    if bundles is not None:
        fits = actor_capacity(resources, bundles)
        if fits < n_actors:
            raise EngineError(
                f"the placement group's free bundles {list(bundles)} hold {fits} actor(s) of {resources.describe()}, "
                f"but {n_actors} were asked for; use fewer actors or a larger placement group"
            )
        return
    if resources.num_cpus > mapping.get("CPU", 0.0) or resources.num_gpus > mapping.get("GPU", 0.0):
        raise EngineError(
            f"each actor requests {resources.describe()}, but the Ray cluster has {have} in all, so no actor "
            f"can ever start; ask for the device the cluster has (e.g. --device cpu) or add such nodes"
        )


def plan_pool(n_shards: int, device: str | None, options: EngineOptions) -> PoolPlan:
    """Size the pool of a task with ``n_shards`` shards on ``device`` (Ray must be connected).

    Raises
    ------
    InputError
        Fewer actors asked for than shards, or an impossible sizing (see :func:`plan_resources`).
    EngineError
        The resources cannot hold the pool (see :func:`check_capacity`).
    """
    bundles = current_bundles()
    mapping = resource_mapping(bundles)
    n_actors = options.actors or max(default_actor_count(mapping, device), n_shards)
    if n_actors < n_shards:
        raise InputError(f"actors: {n_actors} actors cannot serve {n_shards} shards; use at least as many actors")
    resources = plan_resources(
        n_actors, mapping, threads=options.threads, gpus_per_actor=options.gpus_per_actor, device=device
    )
    check_capacity(n_actors, resources, bundles, mapping)
    group = ray.util.get_current_placement_group() if bundles is not None else None
    return PoolPlan(n_actors, resources, group)


def start_actors(task: ChunkTask, plan: PoolPlan, options: EngineOptions) -> list[PoolActor]:
    """Create the pool's actors; actor ``k`` serves shard ``k % task.n_shards``."""
    actor = ChunkActor.options(  # type: ignore[attr-defined]
        num_cpus=plan.resources.num_cpus,
        num_gpus=plan.resources.num_gpus,
        max_restarts=options.max_restarts,
        max_task_retries=0,
        runtime_env=options.ray_runtime_env(),
        **plan.options(),
    )
    log.info("%d actor(s), each %s", plan.n_actors, plan.resources.describe())
    return [
        PoolActor(handle=actor.remote(task, k % task.n_shards, plan.resources), shard=k % task.n_shards)
        for k in range(plan.n_actors)
    ]

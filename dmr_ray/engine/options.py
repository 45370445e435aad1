"""How the engine runs a task: the one place its options, their defaults and checks live.

The CLI and the YAML ``engine:`` section are built by introspecting
``dataclasses.fields(EngineOptions)``; the Attributes entries below are their help texts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError


@dataclass(frozen=True)
class EngineOptions:
    """How a task is run (not what it computes: results do not depend on these).

    Attributes
    ----------
    actors : int or None
        Actors of the pool; 0 runs the task in this process without Ray; ``None`` picks one
        per GPU, else one per CPU (:func:`~dmr_ray.engine.resources.default_actor_count`),
        but at least one per shard (``replicate_groups``).
    replicate_groups : int
        ISM: 1 keeps every replicate (ensemble member, MC-dropout pass) in each actor.
        ``G > 1`` spreads them over ``G`` contiguous groups (shards; for models too large to
        hold ``R`` copies per device); actor ``k`` serves group ``k % G``, so ``actors`` must
        be at least ``G``. Each chunk's group results are merged exactly before it is committed.
    threads : int or None
        torch threads per actor (default: 1 on GPU, else CPUs / actors).
    gpus_per_actor : float or None
        GPU share per actor, e.g. 0.25 for four actors per GPU (default: GPUs / actors, at most 1).
    max_in_flight : int
        Chunks queued on one actor at a time.
    max_restarts : int
        Ray restarts of a lost actor (``-1``: unlimited).
    max_chunk_attempts : int
        Worker losses one chunk may cause before it is reported as failed.
    stall_timeout_s : float
        Seconds without any finished work (a chunk, an actor start) before the run fails
        with :class:`~dmr_ray.errors.StalledRunError`. Must exceed the time one actor needs
        for one chunk.
    address : str or None
        Ray cluster to join (``"auto"``, ``"host:port"``, ``"ray://..."``); ``None`` uses
        ``RAY_ADDRESS`` when set, else starts a local instance (an existing connection, e.g.
        inside a Ray Tune trial, is always reused).
    runtime_env : dict or None
        Ray runtime environment of the actors and reduce tasks (e.g. ``env_vars``, or
        ``py_modules`` that hold the model's code).

    Raises
    ------
    InputError
        A value out of range or of the wrong type (one line naming the field).
    """

    actors: int | None = None
    replicate_groups: int = 1
    threads: int | None = None
    gpus_per_actor: float | None = None
    max_in_flight: int = 2
    max_restarts: int = 3
    max_chunk_attempts: int = 3
    stall_timeout_s: float = 1800.0
    address: str | None = None
    runtime_env: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        minimums = {
            "actors": 0,
            "replicate_groups": 1,
            "threads": 1,
            "max_in_flight": 1,
            "max_restarts": -1,
            "max_chunk_attempts": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value is None and name in ("actors", "threads"):
                continue
            if not is_int(value) or value < minimum:
                raise InputError(f"{name}: must be an integer >= {minimum}, got {value!r}")
        if self.actors and self.actors < self.replicate_groups:
            raise InputError(
                f"actors: {self.actors} actors cannot serve {self.replicate_groups} replicate groups; "
                f"use at least as many actors as groups"
            )
        if self.gpus_per_actor is not None and not (_is_number(self.gpus_per_actor) and 0 < self.gpus_per_actor <= 1):
            raise InputError(f"gpus_per_actor: must be a number in (0, 1], got {self.gpus_per_actor!r}")
        if not (_is_number(self.stall_timeout_s) and self.stall_timeout_s > 0):
            raise InputError(f"stall timeout: must be positive, got {self.stall_timeout_s!r}")
        if self.address is not None and not isinstance(self.address, str):
            raise InputError(f"address: must be a string, got {self.address!r}")
        if self.runtime_env is not None and not isinstance(self.runtime_env, Mapping):
            raise InputError(f"runtime_env: must be a mapping, got {self.runtime_env!r}")

    def ray_runtime_env(self) -> dict[str, Any] | None:
        """The runtime environment as Ray takes it (a plain dict), or ``None``."""
        return dict(self.runtime_env) if self.runtime_env else None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

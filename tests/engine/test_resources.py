"""Logical resource sizing of replica actors, and engine option checks."""

from __future__ import annotations

import logging

import pytest

from dmr_ray.engine import ActorResources, EngineOptions, plan_resources
from dmr_ray.engine.resources import default_actor_count
from dmr_ray.errors import InputError


@pytest.mark.parametrize(
    ("actors", "cluster", "kwargs", "expected"),
    [
        (2, {"CPU": 2.0}, {}, ActorResources(0.75, 0.0, 1, "cpu")),
        (1, {"CPU": 2.0}, {}, ActorResources(1.5, 0.0, 2, "cpu")),
        (3, {"CPU": 2.0}, {}, ActorResources(0.5, 0.0, 1, "cpu")),
        (4, {"CPU": 64.0}, {}, ActorResources(15.875, 0.0, 16, "cpu")),
        (4, {"CPU": 16.0, "GPU": 1.0}, {}, ActorResources(1.0, 0.25, 1, "cuda")),
        (2, {"CPU": 16.0, "GPU": 4.0}, {"threads": 2}, ActorResources(2.0, 1.0, 2, "cuda")),
        (8, {"CPU": 16.0, "GPU": 4.0}, {"gpus_per_actor": 0.5}, ActorResources(1.0, 0.5, 1, "cuda")),
        (2, {"CPU": 16.0, "GPU": 4.0}, {"device": "cpu"}, ActorResources(7.75, 0.0, 8, "cpu")),
    ],
)
def test_plan_leaves_headroom_and_sets_threads(actors, cluster, kwargs, expected) -> None:
    assert plan_resources(actors, cluster, **kwargs) == expected


def test_pool_never_reserves_every_cpu() -> None:
    for actors in range(1, 9):
        plan = plan_resources(actors, {"CPU": 2.0})
        assert actors * plan.num_cpus <= 1.5


@pytest.mark.parametrize(
    ("actors", "cluster", "kwargs", "message"),
    [
        (1, {"CPU": 2.0}, {"device": "cpu", "gpus_per_actor": 0.5}, "gpus per actor: 0.5 given"),
        (1, {"CPU": 4.0, "GPU": 1.0}, {"gpus_per_actor": 1.5}, "gpus per actor: must be in"),
        (1, {"CPU": 0.5}, {}, "kept free"),
        (0, {"CPU": 2.0}, {}, "actors: must be a positive integer"),
        (1, {"CPU": 2.0}, {"threads": 0}, "threads: must be a positive integer"),
    ],
)
def test_impossible_plans_are_refused(actors, cluster, kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        plan_resources(actors, cluster, **kwargs)


def test_oversubscription_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dmr_ray.engine.resources"):
        plan_resources(2, {"CPU": 2.0}, threads=2)
    assert "oversubscribe" in caplog.text


def test_cuda_on_a_cluster_without_gpus_waits_for_an_autoscaler(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dmr_ray.engine.resources"):
        assert plan_resources(2, {"CPU": 4.0}, device="cuda") == ActorResources(1.0, 1.0, 1, "cuda")
    assert "autoscaler" in caplog.text
    assert plan_resources(2, {"CPU": 4.0}, gpus_per_actor=0.5).num_gpus == 0.5


@pytest.mark.parametrize(
    ("cluster", "device", "expected"),
    [
        ({"CPU": 2.0}, None, 2),
        ({"CPU": 16.0}, None, 16),
        ({"CPU": 1.0}, None, 1),
        ({"CPU": 16.0, "GPU": 4.0}, None, 4),
        ({"CPU": 16.0, "GPU": 4.0}, "cpu", 16),
    ],
)
def test_default_actor_count(cluster, device, expected) -> None:
    assert default_actor_count(cluster, device) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"actors": 1, "replicate_groups": 2}, "cannot serve 2 replicate groups"),
        ({"actors": -1}, "actors: must be an integer >= 0"),
        ({"max_in_flight": 0}, "max_in_flight: must be an integer >= 1"),
        ({"stall_timeout_s": 0}, "stall timeout"),
        ({"threads": 0}, "threads: must be an integer >= 1, got 0"),
        ({"max_restarts": -2}, "max_restarts: must be an integer >= -1, got -2"),
        ({"gpus_per_actor": 1.5}, r"gpus_per_actor: must be a number in \(0, 1\], got 1\.5"),
        ({"runtime_env": "env"}, "runtime_env: must be a mapping"),
    ],
)
def test_engine_options_are_validated(kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        EngineOptions(**kwargs)


def test_engine_options_are_the_single_source_of_defaults() -> None:
    import dataclasses

    fields = {f.name: f.default for f in dataclasses.fields(EngineOptions)}
    assert fields["actors"] is None and fields["replicate_groups"] == 1 and fields["stall_timeout_s"] == 1800.0
    documented = EngineOptions.__doc__ or ""
    assert all(f"    {name} : " in documented for name in fields), "every field needs an Attributes entry"

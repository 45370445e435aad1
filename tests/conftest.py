"""Shared fixtures: one small local Ray instance for the whole test session."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

# Property tests replay the same examples on every run, so CI is reproducible. To search for
# new counterexamples: HYPOTHESIS_PROFILE=explore pytest --hypothesis-seed=N; pin what it
# finds as an @example.
settings.register_profile("replay", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "replay"))


@pytest.fixture(scope="session")
def ray_local():
    """Start (once) a local Ray instance with 2 CPUs and a small object store."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            object_store_memory=200 * 1024**2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_job_head(tmp_path_factory):
    """A second Ray, started once with ``ray start --head`` and token authentication, for the
    tests that ``ray job submit`` for real (tests/ray_head.py)."""
    from ray_head import ray_head

    with ray_head(tmp_path_factory.mktemp("ray_head")) as head:
        yield head

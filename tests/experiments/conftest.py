"""The tiny simulation experiment, run once (2 rounds at the default parallelism) for every test here."""

from __future__ import annotations

import pytest

from dmr_ray.cli import main


@pytest.fixture(scope="session")
def experiment(tmp_path_factory, ray_local):
    """``(out, argv)`` of a finished 2-round tiny experiment (scenario random); its rounds ran in parallel."""
    out = tmp_path_factory.mktemp("exp") / "sim"
    argv = ["experiment", "simulation", "--scenario", "random", "--rounds", "2", "--size", "tiny", "--out", str(out)]
    assert main(argv) == 0
    return out, argv

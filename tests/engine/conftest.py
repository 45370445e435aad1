"""Engine test fixtures: a per-module work folder and a small sequence store."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_support import N_SEQ, make_tokens

from dmr_ray.store import write_sequence_store


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by one test module."""
    return tmp_path_factory.mktemp("engine")


@pytest.fixture(scope="module")
def store(workdir: Path) -> Path:
    """sequences.zarr with 24 sequences of 48 bp (one N), chunked by 4."""
    path = workdir / "sequences.zarr"
    write_sequence_store(path, make_tokens(), [f"s{i}" for i in range(N_SEQ)], chunk_size=4)
    return path

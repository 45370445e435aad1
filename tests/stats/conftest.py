"""Fixtures for the statistics tests: the R reference vectors of ``shared/reference``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_REFERENCE_FILE = "mr_meta_reference.json"


def _reference_path() -> Path | None:
    """``shared/reference`` beside the checkout, else ``$DMR_RAY_REFERENCE`` (dir or file)."""
    beside = Path(__file__).resolve().parents[3] / "shared" / "reference" / _REFERENCE_FILE
    if beside.is_file():
        return beside
    env = os.environ.get("DMR_RAY_REFERENCE")
    if env:
        path = Path(env)
        path = path / _REFERENCE_FILE if path.is_dir() else path
        if path.is_file():
            return path
    return None


@pytest.fixture(scope="session")
def reference() -> dict:
    """The parsed reference file (R 4.2.2, MendelianRandomization 0.10.0, metafor 3.8-1)."""
    path = _reference_path()
    if path is None:
        pytest.skip(f"{_REFERENCE_FILE} not found in shared/reference beside the checkout nor via DMR_RAY_REFERENCE")
    return json.loads(path.read_text())

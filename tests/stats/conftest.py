"""Fixtures for the statistics tests: the R reference vectors kept in ``tests/stats/reference``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REFERENCE_FILE = Path(__file__).parent / "reference" / "mr_meta_reference.json"
"""The R reference vectors in the repository (provenance in ``reference/README.md``)."""


def _reference_path() -> Path:
    """``$DMR_RAY_REFERENCE`` (a folder holding the file, or the file) when set, else :data:`REFERENCE_FILE`."""
    env = os.environ.get("DMR_RAY_REFERENCE")
    if not env:
        return REFERENCE_FILE
    path = Path(env)
    return path / REFERENCE_FILE.name if path.is_dir() else path


@pytest.fixture(scope="session")
def reference() -> dict:
    """The parsed reference file (R 4.2.2, MendelianRandomization 0.10.0, metafor 3.8-1)."""
    return json.loads(_reference_path().read_text())

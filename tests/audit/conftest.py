"""The tiny inputs of the audit tests (built once per session; see audit_support)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from audit_support import LENGTH, write_model


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory) -> Path:
    """A directory with models v1 (seed 1), v2 (v1 with TAL1 negated), v3 (seed 3), a store
    ``seqs.zarr`` and ``deepmr.yaml``."""
    from dmr_ray.store import build_from_arrays

    root = tmp_path_factory.mktemp("audit_inputs")
    write_model(root / "v1", 1)
    write_model(root / "v2", 1, flip_outcome=True)
    write_model(root / "v3", 3)
    tokens = np.random.default_rng(0).integers(0, 4, size=(8, LENGTH)).astype(np.uint8)
    build_from_arrays(tokens, root / "seqs.zarr", chunk_size=4)
    config = {
        "ism": {"chunk_size": 4},
        "engine": {"actors": 0},
        "methods": {"estimators": ["ivw"], "iterations": 20},
        "report": {"enabled": False},
    }
    (root / "deepmr.yaml").write_text(yaml.safe_dump(config))
    return root

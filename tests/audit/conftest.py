"""Tiny inputs for audit plans: small random CNN ensembles (model versions), a sequence store
of 8 sequences × 24 bp, a Deep MR configuration (IVW, in-process engine) and a plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

LENGTH = 24
KWARGS = {"length": LENGTH, "filters": 4, "kernel": 3, "n_conv": 1, "n_dense": 0, "n_tasks": 2}


def write_model(directory: Path, seed: int, *, flip_outcome: bool = False) -> Path:
    """A 2-member ensemble of seeded random small CNNs and its spec; with ``flip_outcome`` the
    second task (TAL1) is negated, which negates every global effect exactly."""
    from dmr_ray.models.architectures import small_cnn
    from dmr_ray.models.weights import save_weights

    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for member in range(2):
        torch.manual_seed(seed * 10 + member)
        model = small_cnn(**KWARGS)
        if flip_outcome:
            last = model.head[-1]
            with torch.no_grad():
                last.weight[1] *= -1
                last.bias[1] *= -1
        names.append(f"m{member}.safetensors")
        save_weights(model, directory / names[-1])
    spec = {
        "entrypoint": "dmr_ray.models.architectures:small_cnn",
        "kwargs": KWARGS,
        "weights": names,
        "input_length": LENGTH,
        "outputs": [{"name": "GATA", "index": 0}, {"name": "TAL1", "index": 1}],
        "replicates": {"kind": "ensemble"},
    }
    (directory / "model.yaml").write_text(yaml.safe_dump(spec))
    return directory / "model.yaml"


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


def write_plan(directory: Path, inputs: Path, versions: tuple[str, ...] = ("v1", "v2"), **extra) -> Path:
    """A plan of ``versions`` × the tiny store × Deep MR, writing to ``directory/out``."""
    plan = {
        "name": "tiny",
        "output": str(directory / "out"),
        "schedule": "0 3 * * 1",
        "models": [{"name": "cnn", "version": v, "spec": str(inputs / v / "model.yaml")} for v in versions],
        "data": [{"name": "seqs", "store": str(inputs / "seqs.zarr")}],
        "audits": [{"name": "deepmr", "kind": "deep_mr", "config": str(inputs / "deepmr.yaml")}],
        **extra,
    }
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path

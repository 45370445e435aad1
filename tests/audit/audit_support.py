"""Tiny inputs for audit plans: small random CNN ensembles (model versions), a sequence store
of 8 sequences × 24 bp, a Deep MR configuration (IVW, in-process engine) and a plan."""

from __future__ import annotations

from pathlib import Path

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

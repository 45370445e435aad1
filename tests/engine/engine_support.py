"""Shared pieces of the engine tests: a token set, model specs written on demand, and a model
factory that records the fast-ISM plans a Ray worker builds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from dmr_ray.ism import fast
from dmr_ray.models import save_weights
from dmr_ray.models.architectures import small_cnn

HERE = Path(__file__).parent
RUNTIME_ENV = {"env_vars": {"PYTHONPATH": str(HERE)}}
"""Lets Ray workers import :mod:`faulty_models` and this module."""

L, N_SEQ = 48, 24
CNN = {"length": L, "filters": 6, "kernel": 5, "n_conv": 2, "n_dense": 1, "hidden": 12, "n_tasks": 3}


def make_tokens(n: int = N_SEQ, seed: int = 0) -> np.ndarray:
    """Random ACGT tokens whose first 4 bases are never T (so no mutant carries the NaN marker)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 4, size=(n, L)).astype(np.uint8)
    tokens[:, :4] = rng.integers(0, 3, size=(n, 4))
    tokens[3, 20] = 4
    return tokens


def write_spec(
    folder: Path,
    *,
    kind: str = "ensemble",
    members: int = 3,
    entrypoint: str = "dmr_ray.models.architectures:small_cnn",
    seed: int = 0,
    **extra: Any,
) -> Path:
    """Write weight files and ``spec.yaml`` of a small CNN into ``folder``; return the YAML path.

    ``members`` is the number of ensemble members or MC-dropout passes; ``extra`` goes into
    the factory kwargs (``dropout``, ``conv_dropout``, or the faults of :mod:`faulty_models`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    kwargs = {**CNN, **extra}
    architecture = {k: v for k, v in kwargs.items() if k in CNN or k in ("dropout", "conv_dropout")}
    names = []
    for i in range(members if kind == "ensemble" else 1):
        torch.manual_seed(seed + i)
        model = small_cnn(**architecture)
        for block in model.body:
            block[1].running_mean.uniform_(-0.3, 0.3)
        names.append(f"m{i}.safetensors")
        save_weights(model, folder / names[-1])
    replicates = {"kind": kind, "passes": members, "seed": 3} if kind == "mc_dropout" else {"kind": kind}
    doc = {
        "entrypoint": entrypoint,
        "kwargs": kwargs,
        "weights": names,
        "input_length": L,
        "outputs": [{"name": "a", "index": 0}, {"name": "bc", "index": [1, 2], "reduce": "mean"}],
        "replicates": replicates,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


PLAN_LOG = "ENGINE_TEST_PLAN_LOG"
"""Environment variable naming the folder where :func:`plan_logging_cnn` records plan builds."""


def plan_logging_cnn(**kwargs: Any) -> nn.Module:
    """Model spec factory (``engine_support:plan_logging_cnn``): :func:`small_cnn`, and in a
    process whose environment sets ``$ENGINE_TEST_PLAN_LOG`` (a Ray actor's runtime env), every
    :func:`~dmr_ray.ism.fast.plan_fast_path` call from then on appends a line to
    ``$ENGINE_TEST_PLAN_LOG/<pid>``."""
    if PLAN_LOG in os.environ and not getattr(fast.plan_fast_path, "logs_plans", False):
        build = fast.plan_fast_path

        def logged(*args: Any) -> Any:
            with (Path(os.environ[PLAN_LOG]) / str(os.getpid())).open("a") as fh:
                fh.write("plan\n")
            return build(*args)

        logged.logs_plans = True
        fast.plan_fast_path = logged
    return small_cnn(**kwargs)


def plans_built(folder: Path) -> dict[int, int]:
    """Plans built per worker pid, as :func:`plan_logging_cnn` recorded them in ``folder``."""
    return {int(path.name): len(path.read_text().splitlines()) for path in folder.iterdir()}

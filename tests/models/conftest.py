"""Fixtures for model-spec tests: tiny small_cnn weight files and spec documents."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dmr_ray.models import save_weights
from dmr_ray.models.architectures import small_cnn

TINY = {"length": 16, "filters": 3, "kernel": 3, "n_conv": 2, "n_dense": 1, "hidden": 5, "n_tasks": 4}


@pytest.fixture
def spec_doc(tmp_path: Path):
    """Write ``n`` tiny small_cnn weight files into ``tmp_path``; return a valid spec dict."""

    def make(n: int = 2, **kwargs) -> dict:
        model_kwargs = {**TINY, **kwargs}
        names = []
        for i in range(n):
            torch.manual_seed(i)
            names.append(f"m{i}.safetensors")
            save_weights(small_cnn(**model_kwargs), tmp_path / names[-1])
        return {
            "entrypoint": "dmr_ray.models.architectures:small_cnn",
            "kwargs": model_kwargs,
            "weights": names,
            "input_length": model_kwargs["length"],
            "outputs": [{"name": "exposure", "index": 0}, {"name": "outcome", "index": [1, 2], "reduce": "mean"}],
            "replicates": {"kind": "ensemble"},
        }

    return make

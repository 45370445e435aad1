"""A model's identity covers its code: editing the factory's module changes the digest, and a
run computed by the old code is not resumed by the new one."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import dmr_ray.models.architectures
from dmr_ray.engine import EngineOptions, IsmJob, run_ism
from dmr_ray.errors import ResumeConflictError
from dmr_ray.models import ModelSpec, entrypoint_files, model_digest, save_weights
from dmr_ray.models.architectures import small_cnn
from dmr_ray.store import EffectsStore, write_sequence_store

KWARGS = {"length": 10, "filters": 2, "kernel": 3, "n_conv": 1, "n_dense": 0, "n_tasks": 1}
FACTORY = """
from dmr_ray.models.architectures import small_cnn

SCALE = {scale}


def build(**kwargs):
    model = small_cnn(**kwargs)
    model.head[-1].bias.data.fill_(SCALE)
    return model
"""


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A factory module in its own file (a fresh module name per test); returns its file and name."""
    name = f"code_digest_factory_{uuid.uuid4().hex[:8]}"
    source = tmp_path / "code" / f"{name}.py"
    source.parent.mkdir()
    source.write_text(FACTORY.format(scale=1.0))
    monkeypatch.syspath_prepend(str(source.parent))
    return source, name


def spec_file(folder: Path, entrypoint: str) -> Path:
    torch.manual_seed(0)
    save_weights(small_cnn(**KWARGS), folder / "m.safetensors")
    doc = {
        "entrypoint": entrypoint,
        "kwargs": KWARGS,
        "weights": "m.safetensors",
        "input_length": KWARGS["length"],
        "outputs": [{"name": "y", "index": 0}],
        "replicates": {"kind": "single"},
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(doc))
    return folder / "spec.yaml"


def test_builtin_entrypoints_cover_the_architectures_module() -> None:
    files = entrypoint_files("dmr_ray.models.architectures:small_cnn")
    assert files == (Path(dmr_ray.models.architectures.__file__).resolve(),)


def test_editing_the_factory_changes_the_digest(tmp_path: Path, factory: tuple[Path, str]) -> None:
    source, name = factory
    spec = ModelSpec.from_dict(yaml.safe_load(spec_file(tmp_path, f"{name}:build").read_text()), tmp_path)
    assert entrypoint_files(spec.entrypoint) == (source.resolve(),)
    before = model_digest(spec)
    assert model_digest(spec) == before
    source.write_text(FACTORY.format(scale=2.0))
    assert model_digest(spec) != before


def test_factory_imported_from_another_module_covers_both_files(tmp_path: Path, factory) -> None:
    source, name = factory
    facade = source.with_name(f"{name}_facade.py")
    facade.write_text(f"from {name} import build\n")
    spec = ModelSpec.from_dict(yaml.safe_load(spec_file(tmp_path, f"{name}_facade:build").read_text()), tmp_path)
    assert entrypoint_files(spec.entrypoint) == (facade.resolve(), source.resolve())
    before = model_digest(spec)
    source.write_text(FACTORY.format(scale=3.0))
    assert model_digest(spec) != before


def test_rerun_after_a_code_change_is_a_resume_conflict(tmp_path: Path, factory) -> None:
    source, name = factory
    store = write_sequence_store(tmp_path / "s.zarr", np.random.default_rng(0).integers(0, 4, (4, 10)), chunk_size=2)
    job = IsmJob(store=store.location, model=str(spec_file(tmp_path, f"{name}:build")), out=str(tmp_path / "e.zarr"))
    first = run_ism(job, EngineOptions(actors=0))
    assert first.computed == 2
    old_digest = EffectsStore.open(job.out, mode="r").attrs["model_digest"]
    assert run_ism(job, EngineOptions(actors=0)).computed == 0  # same code: resumes (nothing left)
    source.write_text(FACTORY.format(scale=5.0))
    with pytest.raises(ResumeConflictError, match=rf"model_digest: '{old_digest}' \(existing\) vs '[0-9a-f]+' \(now\)"):
        run_ism(job, EngineOptions(actors=0))
    assert EffectsStore.open(job.out, mode="r").committed_by().tolist() == [first.run_id] * 2

"""Resume keeps each finished ensemble member: the demo's training and the simulation's rounds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from dmr_ray.demo import train_simulation_ensemble
from dmr_ray.experiments import simulation
from dmr_ray.models import load_state_dict_file, save_weights, training
from dmr_ray.models.architectures import small_cnn

LENGTH = 20


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4, size=(40, LENGTH), dtype=np.uint8), rng.normal(size=(40, 2))


def _train(data, model_dir, *, reuse):
    tokens, labels = data
    return train_simulation_ensemble(
        tokens, labels, model_dir, members=3, epochs=1, batch_size=20, learning_rate=1e-2, length=LENGTH,
        seed=7, reuse=reuse,
    )  # fmt: skip


@pytest.fixture
def seeds_trained(monkeypatch):
    """The seeds of the members trained (train_ensemble is called once per member)."""
    seeds: list[int] = []
    real = training.train_ensemble

    def counting(factory, tokens, labels, n_members, *, seed, **kwargs):
        seeds.extend(range(seed, seed + n_members))
        return real(factory, tokens, labels, n_members, seed=seed, **kwargs)

    monkeypatch.setattr(training, "train_ensemble", counting)
    return seeds


def test_reuse_trains_only_the_missing_members_as_an_uninterrupted_run_would(tmp_path, data, seeds_trained):
    torch.set_num_threads(1)
    _train(data, tmp_path / "whole", reuse=False)
    assert seeds_trained == [7, 8, 9]
    # an interrupted run: member 0 finished (a sentinel, so that retraining it would show), 1 and 2 not
    partial = tmp_path / "partial"
    partial.mkdir()
    torch.manual_seed(100)
    save_weights(small_cnn(length=LENGTH, n_tasks=2), partial / "member0.safetensors")
    kept = (partial / "member0.safetensors").read_bytes()
    seeds_trained.clear()
    spec = _train(data, partial, reuse=True)
    assert seeds_trained == [8, 9]
    assert (partial / "member0.safetensors").read_bytes() == kept
    for i in (1, 2):
        resumed = load_state_dict_file(partial / f"member{i}.safetensors")
        whole = load_state_dict_file(tmp_path / "whole" / f"member{i}.safetensors")
        assert resumed.keys() == whole.keys()
        assert all(torch.equal(resumed[k], whole[k]) for k in whole), i
    assert spec.name == "model.yaml" and spec.is_file()
    seeds_trained.clear()
    _train(data, partial, reuse=False)
    assert seeds_trained == [7, 8, 9]
    assert (partial / "member0.safetensors").read_bytes() == (tmp_path / "whole" / "member0.safetensors").read_bytes()


def test_interrupted_round_keeps_its_model_and_removes_the_rest(tmp_path, monkeypatch):
    work = simulation.round_file(tmp_path, 0).parent
    (work / "model").mkdir(parents=True)
    (work / "model" / "member0.safetensors").write_bytes(b"finished member")
    for folder in ("audit", "sequences.zarr"):
        (work / folder).mkdir()
        (work / folder / "part").write_text("half-written")
    (work / "audit.yaml").write_text("store: sequences.zarr")
    seen: list[list[str]] = []

    def stub_round(scenario, index, where, *, size, seed):
        seen.append(sorted(str(p.relative_to(where)) for p in where.rglob("*")))
        where.mkdir(parents=True, exist_ok=True)  # as run_round's prepare_simulated_audit does
        return {"round": index}

    monkeypatch.setattr(simulation, "run_round", stub_round)
    row = simulation.compute_round(tmp_path, 0, scenario="none", size=simulation.SIZES["tiny"], seed=0)
    assert seen == [["model", "model/member0.safetensors"]]
    assert (work / "model" / "member0.safetensors").read_bytes() == b"finished member"
    assert json.loads(simulation.round_file(tmp_path, 0).read_text()) == row == {"round": 0}
    shutil.rmtree(tmp_path / "rounds")
    simulation.compute_round(tmp_path, 0, scenario="none", size=simulation.SIZES["tiny"], seed=0)
    assert seen[-1] == []

"""save_weights is atomic: an interrupted write keeps the previous file and leaves no temporary."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from dmr_ray.models import load_state_dict_file, save_weights
from dmr_ray.models.architectures import small_cnn


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return small_cnn(length=12, filters=2, kernel=3, n_conv=1, n_dense=1, hidden=3)


def _assert_holds(path: Path, model: torch.nn.Module) -> None:
    state = load_state_dict_file(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(state[name], tensor), name


def test_interrupted_write_keeps_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "member.safetensors"
    old = _model(0)
    save_weights(old, path)
    before = path.read_bytes()
    written: list[Path] = []
    real_save_file = safetensors.torch.save_file

    def interrupted(state, filename, *args, **kwargs):
        # write a truncated file where the serialiser was told to, then fail mid-write
        real_save_file(state, filename, *args, **kwargs)
        target = Path(filename)
        target.write_bytes(target.read_bytes()[:50])
        written.append(target)
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_weights(_model(1), path)
    assert written and written[0].parent == tmp_path and written[0] != path
    assert path.read_bytes() == before
    _assert_holds(path, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member.safetensors"]


def test_interrupted_first_write_leaves_nothing(tmp_path, monkeypatch):
    def failing(state, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", failing)
    with pytest.raises(OSError, match="disk full"):
        save_weights(_model(0), tmp_path / "member.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_complete_write_replaces_previous_file(tmp_path):
    path = tmp_path / "member.safetensors"
    save_weights(_model(0), path)
    new = _model(1)
    assert save_weights(new, path) == path
    _assert_holds(path, new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member.safetensors"]

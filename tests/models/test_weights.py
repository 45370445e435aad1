"""Safe weight files: round trips and refusals."""

from __future__ import annotations

import pytest
import torch

from dmr_ray.errors import ModelSpecError
from dmr_ray.models import load_state_dict_file, load_weights_into, save_weights
from dmr_ray.models.architectures import small_cnn


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = small_cnn(length=12, filters=2, kernel=3, n_conv=1, n_dense=1, hidden=3)
    model.body[0][1].running_mean.uniform_()
    return model


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip(tmp_path, suffix):
    source, target = _model(0), _model(1)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_weights(source, path)
    else:
        torch.save(source.state_dict(), path)
    load_weights_into(target, path)
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": _model(0)}, path)
    with pytest.raises(ModelSpecError, match=r"weights\[2\]: cannot read weights from .*model.pt"):
        load_state_dict_file(path, "weights[2]")


def test_whole_model_is_refused_with_advice(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_model(0), path)
    with pytest.raises(ModelSpecError) as info:
        load_state_dict_file(path, "weights[0]")
    message = str(info.value)
    assert message.startswith(f"weights[0]: cannot read weights from {path}: it holds pickled objects")
    assert "torch.save(model.state_dict(), path)" in message and ".safetensors" in message
    assert "\n" not in message and "weights_only" not in message


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ModelSpecError, match="does not hold a state dict"):
        load_state_dict_file(path)


def test_unknown_extension_and_corrupt_file(tmp_path):
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(ModelSpecError, match="unsupported extension"):
        load_state_dict_file(tmp_path / "w.h5")
    (tmp_path / "w.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelSpecError, match="cannot read weights"):
        load_state_dict_file(tmp_path / "w.safetensors")

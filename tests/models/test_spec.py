"""Model specs: loading, validation errors naming the field, digests."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
import yaml

from dmr_ray.errors import InputError, ModelSpecError
from dmr_ray.models import ModelSpec, load_model_spec, model_digest, save_weights
from dmr_ray.models.architectures import small_cnn


def test_load_yaml_resolves_weights_next_to_the_file(tmp_path, spec_doc):
    doc = spec_doc(3)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    spec = load_model_spec(tmp_path / "spec.yaml")
    assert spec.weights == tuple(tmp_path / f"m{i}.safetensors" for i in range(3))
    assert spec.task_names == ("exposure", "outcome")
    assert spec.n_replicates == 3
    assert spec.outputs[0].index == (0,)
    members = spec.build_members()
    assert len(members) == 3 and not members[0].training
    torch.manual_seed(1)
    expected = small_cnn(**doc["kwargs"]).state_dict()
    for name, tensor in members[1].state_dict().items():
        torch.testing.assert_close(tensor, expected[name])


def test_single_weight_string_and_mc_dropout_passes(tmp_path, spec_doc):
    doc = spec_doc(1, dropout=0.3)
    doc.update(weights="m0.safetensors", replicates={"kind": "mc_dropout", "passes": 7, "seed": 3})
    spec = ModelSpec.from_dict(doc, tmp_path)
    assert spec.n_replicates == 7 and spec.replicates.seed == 3


def _broken(doc, path, value):
    doc = copy.deepcopy(doc)
    *parents, last = path
    target = doc
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("entrypoint",), _DELETE, "entrypoint: field required"),
        (
            ("entrypoint",),
            "no_such_package.models:factory",
            "entrypoint: cannot import module 'no_such_package.models'",
        ),
        (
            ("entrypoint",),
            "dmr_ray.models.architectures:nope",
            "entrypoint: module 'dmr_ray.models.architectures' has no attribute 'nope'",
        ),
        (
            ("entrypoint",),
            "dmr_ray.models.architectures",
            "entrypoint: 'dmr_ray.models.architectures' is not of the form",
        ),
        (("kwargs", "bogus"), 1, "kwargs: factory 'dmr_ray.models.architectures:small_cnn' raised TypeError"),
        (("weights", 1), "missing.safetensors", "weights[1]: file not found"),
        (("outputs", 0, "select"), "counts", "outputs[0].select: the model returns a single tensor"),
        (
            ("outputs", 1, "index"),
            [1, 7],
            "outputs[1].index: 7 is out of range for output (the model's tensor) with 4 tasks",
        ),
        (("outputs", 1, "reduce"), "none", "outputs[1].reduce: 'none' but output (the model's tensor) gives 2 values"),
        (("outputs", 1, "reduce"), "median", "outputs[1].reduce: Input should be 'mean', 'sum', 'max' or 'none'"),
        (("outputs", 1, "name"), "exposure", "outputs: task names must be unique, repeated: exposure"),
        (("outputs",), [], "outputs: Tuple should have at least 1 item"),
        (
            ("weights",),
            ["m0.safetensors"],
            "replicates.kind: 'ensemble' needs at least 2 weight files in 'weights', got 1",
        ),
        (
            ("replicates",),
            {"kind": "mc_dropout", "passes": 5},
            "replicates.kind: 'mc_dropout' takes exactly 1 weight file, got 2",
        ),
        (("replicates",), {"kind": "mc_dropout"}, "replicates: 'passes' is required when kind is 'mc_dropout'"),
        (("replicates",), {"kind": "ensemble", "passes": 5}, "replicates: 'passes' only applies to kind 'mc_dropout'"),
        (("replicates",), {"kind": "bagging"}, "replicates.kind: Input should be 'ensemble', 'mc_dropout' or 'single'"),
        (("input_length",), 17, "input_length: 17 does not match the input length 16 of the model built from kwargs"),
        (("input_length",), -1, "input_length: Input should be greater than 0"),
        (("colour",), "blue", "colour: unknown field"),
    ],
)
def test_bad_spec_names_the_field(tmp_path, spec_doc, path, value, message):
    with pytest.raises(ModelSpecError) as info:
        ModelSpec.from_dict(_broken(spec_doc(2), path, value), tmp_path)
    assert message in str(info.value)


def test_select_key_absent_names_the_keys(tmp_path):
    torch.manual_seed(0)
    from dmr_ray.models.architectures import bpnet

    save_weights(bpnet(filters=4, n_layers=1, n_tasks=2), tmp_path / "b.safetensors")
    doc = {
        "entrypoint": "dmr_ray.models.architectures:bpnet",
        "kwargs": {"filters": 4, "n_layers": 1, "n_tasks": 2},
        "weights": "b.safetensors",
        "input_length": 30,
        "outputs": [
            {"name": "a", "select": "counts", "index": 0, "reduce": "mean"},
            {"name": "b", "select": "count", "index": 0},
        ],
        "replicates": {"kind": "single"},
    }
    absent = r"outputs\[1\]\.select: 'count' is not an output of the model \(outputs: 'profile', 'counts'\)"
    with pytest.raises(ModelSpecError, match=absent):
        ModelSpec.from_dict(doc, tmp_path)
    doc["outputs"][1] = {"name": "b", "select": "counts", "index": 2, "reduce": "mean"}
    with pytest.raises(
        ModelSpecError, match=r"outputs\[1\]\.index: 2 is out of range for output 'counts' with 2 tasks"
    ):
        ModelSpec.from_dict(doc, tmp_path)


def test_weights_that_do_not_fit(tmp_path, spec_doc):
    doc = spec_doc(2)
    torch.manual_seed(0)
    save_weights(small_cnn(**{**doc["kwargs"], "filters": 4}), tmp_path / "m1.safetensors")
    mismatch = (
        r"weights\[1\]: m1.safetensors does not fit the model: "
        r"shape mismatch: body.0.0.weight \(file \[4, 4, 3\], model"
    )
    with pytest.raises(ModelSpecError, match=mismatch):
        ModelSpec.from_dict(doc, tmp_path)
    save_weights(small_cnn(**{**doc["kwargs"], "n_dense": 2}), tmp_path / "m1.safetensors")
    with pytest.raises(ModelSpecError, match=r"weights\[1\]: .*unexpected keys: head.5.bias, head.5.weight"):
        ModelSpec.from_dict(doc, tmp_path)
    save_weights(small_cnn(**{**doc["kwargs"], "n_conv": 1, "length": 14}), tmp_path / "m1.safetensors")
    with pytest.raises(ModelSpecError, match=r"weights\[1\]: .*missing keys: body.1.0.weight"):
        ModelSpec.from_dict(doc, tmp_path)


def test_mc_dropout_needs_dropout_layers(tmp_path, spec_doc):
    doc = spec_doc(1)
    doc["replicates"] = {"kind": "mc_dropout", "passes": 4}
    with pytest.raises(ModelSpecError, match=r"replicates.kind: 'mc_dropout' needs dropout layers"):
        ModelSpec.from_dict(doc, tmp_path)


def test_input_length_the_model_cannot_take(tmp_path):
    from dmr_ray.models.architectures import bpnet

    save_weights(bpnet(filters=4, n_layers=1, n_tasks=1, trim=10), tmp_path / "b.safetensors")
    doc = {
        "entrypoint": "dmr_ray.models.architectures:bpnet",
        "kwargs": {"filters": 4, "n_layers": 1, "n_tasks": 1, "trim": 10},
        "weights": ["b.safetensors"],
        "input_length": 20,
        "outputs": [{"name": "p", "select": "profile", "reduce": "sum"}],
        "replicates": {"kind": "single"},
    }
    with pytest.raises(ModelSpecError, match=r"outputs\[0\]: output 'profile' selects no values"):
        ModelSpec.from_dict(doc, tmp_path)


def test_yaml_file_errors_name_the_file(tmp_path, spec_doc):
    path = tmp_path / "spec.yaml"
    with pytest.raises(ModelSpecError, match="cannot read model spec"):
        load_model_spec(path)
    path.write_text("entrypoint: [unclosed")
    with pytest.raises(ModelSpecError, match="not valid YAML"):
        load_model_spec(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ModelSpecError, match="must be a mapping"):
        load_model_spec(path)
    doc = spec_doc(2)
    doc["outputs"][1]["index"] = 9
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ModelSpecError, match=rf"^{path}: outputs\[1\]\.index: 9 is out of range"):
        load_model_spec(path)


def test_check_off_skips_the_model_but_not_the_files(tmp_path, spec_doc):
    doc = spec_doc(2)
    doc["outputs"][1]["index"] = 9
    assert ModelSpec.from_dict(doc, tmp_path, check=False).n_replicates == 2
    doc["weights"][0] = "gone.safetensors"
    with pytest.raises(ModelSpecError, match=r"weights\[0\]: file not found"):
        ModelSpec.from_dict(doc, tmp_path, check=False)


def test_check_input_length(tmp_path, spec_doc):
    spec = ModelSpec.from_dict(spec_doc(2), tmp_path)
    spec.check_input_length(16)
    with pytest.raises(InputError, match="length 15 but the model spec's input_length is 16"):
        spec.check_input_length(15)


def test_digest_tracks_content_not_location(tmp_path, spec_doc):
    doc = spec_doc(2)
    digest = model_digest(ModelSpec.from_dict(doc, tmp_path))
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in doc["weights"]:
        shutil.copy(tmp_path / name, moved / name)
    assert model_digest(ModelSpec.from_dict(doc, moved)) == digest
    renamed = {
        **doc,
        "outputs": [{"name": "exposure", "index": 0}, {"name": "outcome", "index": [1, 2], "reduce": "max"}],
    }
    assert model_digest(ModelSpec.from_dict(renamed, tmp_path)) != digest
    torch.manual_seed(99)
    save_weights(small_cnn(**doc["kwargs"]), moved / "m1.safetensors")
    assert model_digest(ModelSpec.from_dict(doc, moved)) != digest


def test_model_that_fails_on_the_input_length(tmp_path):
    save_weights(torch.nn.Linear(3, 2), tmp_path / "lin.safetensors")
    doc = {
        "entrypoint": "torch.nn:Linear",
        "kwargs": {"in_features": 3, "out_features": 2},
        "weights": "lin.safetensors",
        "input_length": 5,
        "outputs": [{"name": "y", "index": 0, "reduce": "mean"}],
        "replicates": {"kind": "single"},
    }
    with pytest.raises(
        ModelSpecError, match="input_length: the model fails on one-hot input of length 5: RuntimeError"
    ):
        ModelSpec.from_dict(doc, tmp_path)
    doc["input_length"] = 3
    assert ModelSpec.from_dict(doc, tmp_path).task_names == ("y",)

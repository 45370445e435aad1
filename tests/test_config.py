"""Deep MR configuration: validation up front, errors that name the field."""

from pathlib import Path

import pytest

from dmr_ray.config import config_from_dict, load_config
from dmr_ray.errors import ConfigError

MINIMAL = {"store": "seqs.zarr", "model": "model.yaml", "out": "audit"}


def test_minimal_config_resolves_paths_against_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("store: seqs.zarr\nmodel: model.yaml\nout: audit\n")
    cfg = load_config(path)
    assert cfg.store == str(tmp_path / "seqs.zarr")
    assert cfg.model == tmp_path / "model.yaml"
    assert cfg.methods.estimators == ("deepmr",)
    assert cfg.meta.method == "DL" and cfg.meta.test == "z"
    assert cfg.instruments.filter == "zscore" and cfg.instruments.threshold == 1.0


def test_urls_are_not_resolved_as_paths() -> None:
    cfg = config_from_dict({**MINIMAL, "store": "s3://bucket/seqs.zarr"}, base_dir=Path("/x"))
    assert cfg.store == "s3://bucket/seqs.zarr"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"methods": {"estimators": ["egger", "magic"]}}, "methods.estimators"),
        ({"regions": {"kind": "tiles"}}, "regions"),
        ({"meta": {"method": "XX"}}, "meta.method"),
        ({"instruments": {"threshold": -1}}, "instruments.threshold"),
        ({"calibration": {"method": "isotonic"}}, "calibration"),
        ({"pairs": [["A", "A"]]}, "pairs"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"ism": {"actors": 0}}, "ism.actors"),
        ({"ism": {"precision": "float64"}}, "ism.precision"),
        ({"ism": {"fast": False, "precision": "bfloat16"}}, "ism"),
        (
            {
                "ism": {"precision": "float16"},
                "calibration": {"method": "variance", "store": "c.zarr", "labels": "c.npy"},
            },
            "ism.precision",
        ),
    ],
)
def test_invalid_fields_are_named(patch: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        config_from_dict({**MINIMAL, **patch}, source="cfg.yaml")


def test_missing_required_field_is_named() -> None:
    with pytest.raises(ConfigError, match="model"):
        config_from_dict({"store": "s", "out": "o"})


def test_unreadable_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listed)


def test_pairs_resolve_against_the_model_tasks() -> None:
    cfg = config_from_dict(MINIMAL)
    assert cfg.resolve_pairs(["A", "B", "C"]) == [
        ("A", "B"),
        ("A", "C"),
        ("B", "A"),
        ("B", "C"),
        ("C", "A"),
        ("C", "B"),
    ]
    explicit = config_from_dict({**MINIMAL, "pairs": [["A", "B"], ["A", "B"]]})
    assert explicit.resolve_pairs(["A", "B"]) == [("A", "B")]
    with pytest.raises(ConfigError, match="'Z'"):
        config_from_dict({**MINIMAL, "pairs": [["A", "Z"]]}).resolve_pairs(["A", "B"])

"""Configurations: validation up front, errors that name the field, one set of engine defaults, kinds."""

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Literal

import pytest

from dmr_ray.config import PIPELINES, PipelineConfig, config_from_dict, load_config, register, validate
from dmr_ray.config.commands import CommandGroup, dataclass_values
from dmr_ray.deepmr.config import DeepMRConfig
from dmr_ray.engine import EngineOptions, IsmJob
from dmr_ray.engine import cli as engine_cli
from dmr_ray.errors import ConfigError

MINIMAL = {"store": "seqs.zarr", "model": "model.yaml", "out": "audit"}


def test_minimal_config_resolves_paths_against_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("store: seqs.zarr\nmodel: model.yaml\nout: audit\n")
    cfg = load_config(path)
    assert cfg.store == str(tmp_path / "seqs.zarr")
    assert cfg.model == tmp_path / "model.yaml"
    assert cfg.methods.estimators == ("weighted_median",)
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
        ({"ism": {"actors": 2}}, "ism.actors: this key moved to engine.actors"),
        ({"ray": {"address": "auto"}}, "ray.address: this key moved to engine.address"),
        ({"engine": {"actors": -1}}, "engine: actors: must be an integer >= 0, got -1"),
        ({"engine": {"actors": 1, "replicate_groups": 2}}, "engine: actors: 1 actors cannot serve 2"),
        ({"engine": {"stall_timeout_s": 0}}, "engine: stall timeout: must be positive"),
        ({"engine": {"no_such_option": 1}}, "engine.no_such_option"),
        ({"ray": {"num_cpus": 0}}, "ray.num_cpus"),
        ({"ism": {"precision": "float64"}}, "ism.precision"),
        ({"ism": {"fast": False, "precision": "bfloat16"}}, "ism"),
        (
            {
                "ism": {"precision": "float16", "fast": "auto"},
                "calibration": {"method": "variance", "store": "c.zarr", "labels": "c.npy"},
            },
            "ism.precision",
        ),
    ],
)
def test_invalid_fields_are_named(patch: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(field)):
        config_from_dict({**MINIMAL, **patch}, source="cfg.yaml")


def test_missing_required_field_is_named() -> None:
    with pytest.raises(ConfigError, match="model"):
        config_from_dict({"store": "s", "out": "o"})


def test_a_misspelt_key_names_the_closest_known_one_at_its_place() -> None:
    data = {**MINIMAL, "instrumets": {}, "engine": {"stall_timout_s": 5}, "methods": {"estimator": ["ivw"]}}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, source="a.yaml")
    message = str(caught.value)
    assert "instrumets: unknown field (did you mean 'instruments'?)" in message
    assert "engine.stall_timout_s: unknown field (did you mean 'stall_timeout_s'?)" in message
    assert "methods.estimator: unknown field (did you mean 'estimators'?)" in message
    with pytest.raises(ConfigError, match=r"zzz: unknown field$"):
        config_from_dict({**MINIMAL, "zzz": 1})


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


def test_precision_with_calibration_is_refused_by_the_one_precision_rule() -> None:
    calibration = {"method": "variance", "store": "c.zarr", "labels": "c.npy"}
    with pytest.raises(ConfigError, match=r"ism\.precision: 'float16' cannot be combined with calibration"):
        config_from_dict({**MINIMAL, "ism": {"precision": "float16", "fast": "auto"}, "calibration": calibration})


def _cli_defaults() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    engine_cli.register(CommandGroup(parser.add_subparsers(dest="command")))
    return parser.parse_args(["ism", "--store", "s", "--model", "m", "--out", "o"])


def test_engine_and_ism_defaults_are_the_dataclasses_in_yaml_and_on_the_command_line() -> None:
    cfg = config_from_dict(MINIMAL)
    args = _cli_defaults()
    assert cfg.engine == EngineOptions() == EngineOptions(**dataclass_values(args, EngineOptions))
    for name, value in cfg.ism.model_dump().items():
        default = {f.name: f.default for f in dataclasses.fields(IsmJob)}[name]
        if name == "keep_replicates":  # the one on purpose: the audit's default inference needs them
            assert (value, default, getattr(args, name)) == (True, False, False)
            continue
        assert value == default == getattr(args, name), name


def test_every_engine_option_is_settable_in_yaml() -> None:
    values = {
        "actors": 0,
        "replicate_groups": 1,
        "threads": 3,
        "gpus_per_actor": 0.25,
        "max_in_flight": 5,
        "max_restarts": -1,
        "max_chunk_attempts": 7,
        "stall_timeout_s": 12.5,
        "address": "auto",
        "runtime_env": {"env_vars": {"A": "1"}},
    }
    fields = {f.name: f.default for f in dataclasses.fields(EngineOptions)}
    assert set(values) <= set(fields)
    # an option added to EngineOptions later is settable too (here: to its default, explicitly)
    values.update({name: default for name, default in fields.items() if name not in values})
    cfg = config_from_dict({**MINIMAL, "engine": values})
    assert isinstance(cfg.engine, EngineOptions)
    assert dataclasses.asdict(cfg.engine) == values
    assert config_from_dict({**MINIMAL, "engine": {"actors": 2, "replicate_groups": 2}}).engine.replicate_groups == 2


def test_kind_defaults_to_deep_mr_and_picks_the_pipeline(monkeypatch) -> None:
    assert isinstance(config_from_dict(MINIMAL), DeepMRConfig)
    assert isinstance(config_from_dict({**MINIMAL, "kind": "deep_mr"}), DeepMRConfig)
    monkeypatch.setitem(PIPELINES, "toy", "")
    register("toy", f"{__name__}:ToyConfig")
    toy = config_from_dict({"kind": "toy", "out": "o", "size": 3}, base_dir=Path("/base"))
    assert isinstance(toy, ToyConfig) and toy.size == 3 and toy.out == Path("/base/o")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: invalid configuration: size"):
        config_from_dict({"kind": "toy", "out": "o", "size": "big"}, source="cfg.yaml")


class ToyConfig(PipelineConfig):
    """A pipeline registered by a test."""

    kind: Literal["toy"] = "toy"
    size: int = 1


@pytest.mark.parametrize("kind", ["nonesuch", 3, None])
def test_an_unknown_kind_is_one_clear_error(tmp_path: Path, kind) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"kind: {kind}\nstore: s\nmodel: m\nout: o\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: kind: unknown pipeline") and "'deep_mr'" in message and "\n" not in message


def test_deep_mr_config_refuses_another_kind() -> None:
    with pytest.raises(ConfigError, match=r"cfg\.yaml: invalid configuration: kind: Input should be 'deep_mr'"):
        validate(DeepMRConfig, {**MINIMAL, "kind": "toy"}, base_dir=Path("/x"), source="cfg.yaml")


def test_a_misspelt_key_inside_a_list_entry_names_the_closest_known_one() -> None:
    from pydantic import BaseModel, ConfigDict, ValidationError

    from dmr_ray._validation import describe_errors

    class Entry(BaseModel):
        model_config = ConfigDict(extra="forbid")
        spec: str = ""

    class Plan(BaseModel):
        model_config = ConfigDict(extra="forbid")
        models: list[Entry] = []
        named: dict[str, Entry] | None = None

    with pytest.raises(ValidationError) as caught:
        Plan.model_validate({"models": [{"spec": "a"}, {"spc": "b"}], "named": {"x": {"spek": "c"}}})
    assert describe_errors(caught.value, Plan) == [
        "models[1].spc: unknown field (did you mean 'spec'?)",
        "named.x.spek: unknown field (did you mean 'spec'?)",
    ]

"""``dmr-ray demo``'s output directory: its identity (seed, settings) guards what it reuses."""

from __future__ import annotations

import pytest

from dmr_ray.cli import main
from dmr_ray.demo import DemoSettings, prepare_demo
from dmr_ray.errors import InputError

TINY = DemoSettings(n_train=200, n_calibration=60, n_audit=4, members=2, epochs=1)


def _weights(out):
    return {p.name: p.read_bytes() for p in sorted((out / "model").glob("*.safetensors"))}


def test_another_seed_is_refused_before_writing_and_overwrite_starts_afresh(tmp_path) -> None:
    out = tmp_path / "demo"
    prepare_demo(out, seed=0, settings=TINY)
    first = _weights(out)
    prepare_demo(out, seed=0, settings=TINY)  # same identity: resumes, keeps the members
    assert _weights(out) == first
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="--overwrite"):
        prepare_demo(out, seed=1, settings=TINY)
    assert _weights(out) == first
    prepare_demo(out, seed=1, settings=TINY, overwrite=True)
    assert set(_weights(out)) == set(first) and _weights(out) != first
    assert (out / "notes.txt").read_text() == "mine"  # not the demo's: kept


def test_a_directory_the_demo_did_not_write_is_refused(tmp_path, capsys) -> None:
    (tmp_path / "data.csv").write_text("user data")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "not a dmr_ray demo" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


def test_the_demo_audit_reports_three_methods_the_default_estimator_first(tmp_path) -> None:
    import yaml

    from dmr_ray.deepmr.config import DEFAULT_ESTIMATOR
    from dmr_ray.demo import REPORTED_ESTIMATORS, audit_config

    (tmp_path / "model").mkdir()
    path = audit_config(tmp_path, tmp_path / "model" / "model.yaml")
    estimators = yaml.safe_load(path.read_text())["methods"]["estimators"]
    assert estimators[0] == DEFAULT_ESTIMATOR and sorted(estimators) == sorted(REPORTED_ESTIMATORS)

"""``dmr-ray attribution benchmark`` and ``dmr-ray run`` with ``kind: attribution``."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from dmr_ray.attribution.cli import register
from dmr_ray.cli import main
from dmr_ray.config.commands import CommandGroup

SMALL = ["--n-samples", "80", "--n-subclasses", "4", "--n-pathways", "24", "--pathways-per-class", "3"]


def test_help_lists_the_options_and_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        main(["attribution", "benchmark", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in ("--simulation", "--model", "--seeds", "--out", "--gap-per-class", "--actors", "SimuC"):
        assert option in text
    assert "dmr-ray attribution benchmark --simulation SIMU1 --model lr --seeds 10" in text


def test_benchmark_command_writes_the_summary(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["attribution", "benchmark", "--model", "mlp", "--seeds", "1", "--out", str(out), *SMALL]
    argv += ["--methods", "ig", "saliency", "--no-gaps", "--actors", "0"]
    assert main(argv) == 0
    assert str(out) in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "mlp" and summary["simulation"]["n_genes"] == 240
    assert set(summary["methods"]) == {"ig", "saliency"}
    assert 0 <= summary["methods"]["ig"]["global_agreement"] <= 1


def test_run_dispatches_a_kind_attribution_config(tmp_path):
    config = {
        "kind": "attribution",
        "out": "bench",
        "seeds": 1,
        "methods": ["saliency"],
        "simulation": {"name": "SimuA", "n_samples": 60, "n_pathways": 20, "pathways_per_class": 4},
        "gaps": {"enabled": False},
        "engine": {"actors": 0},
    }
    path = tmp_path / "attribution.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    summary = json.loads((tmp_path / "bench" / "summary.json").read_text())  # relative to the YAML
    assert summary["simulation"]["name"] == "SimuA" and summary["simulation"]["n_classes"] == 2


@pytest.mark.parametrize(
    ("options", "field"),
    [(["--seeds", "0"], "seeds"), (["--n-random", "0"], "gaps.n_random"), (["--n-pathways", "5"], "simulation")],
)
def test_bad_option_is_one_line_and_writes_nothing(tmp_path, capsys, options, field):
    out = tmp_path / "never"
    assert main(["attribution", "benchmark", "--out", str(out), *options]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and field in error
    assert not out.exists()


def test_the_group_holds_benchmark_and_sequences():
    parser = argparse.ArgumentParser()
    register(CommandGroup(parser.add_subparsers(dest="command", required=True)))
    for command in ("benchmark", "sequences"):
        args = parser.parse_args(["attribution", command, "--out", "o"])
        assert args.command == "attribution" and callable(args.func)

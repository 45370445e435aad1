"""The command line's surface: --version, shared -v/-q, help with defaults and examples,
quiet broken pipes, per-command interrupt messages, kind dispatch of ``dmr-ray run``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import dmr_ray
from dmr_ray.cli import build_parser, main
from dmr_ray.store import write_sequence_store

REPO = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every leaf command: (its words, its parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))
            return
    yield path, parser


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"dmr-ray {dmr_ray.__version__}"


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["store", "info", "x.zarr", "-v"], True, False),
        (["-v", "store", "info", "x.zarr"], True, False),
        (["store", "info", "-q", "x.zarr"], False, True),
        (["store", "info", "x.zarr"], False, False),
    ],
)
def test_verbose_and_quiet_before_or_after_the_subcommand(argv, verbose, quiet) -> None:
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_every_command_has_an_example_and_an_interrupt_message() -> None:
    leaves = dict(_commands(build_parser()))
    assert {("store", "build"), ("store", "info"), ("ism",), ("run",), ("deep-mr", "run"), ("demo",)} <= set(leaves)
    for words, parser in leaves.items():
        assert "example:\n  dmr-ray " + " ".join(words) in parser.format_help(), words
        assert parser.get_default("interrupted"), words


def test_help_shows_the_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["ism", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "--max-in-flight MAX_IN_FLIGHT Chunks queued on one actor at a time (default: 2)",
        "(default: 1800.0)",
        "--fast {true,false,auto}",
        "(default: float32)",
        "0 runs the task in this process without Ray",
    ):
        assert expected in text, expected


def test_interrupt_messages_are_the_commands_own(monkeypatch, tmp_path, capsys) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    import dmr_ray.store

    monkeypatch.setattr(dmr_ray.store, "build_from_fasta_bed", interrupted)
    argv = ["store", "build", "--fasta", "g.fa", "--bed", "p.bed", "--out", str(tmp_path / "s.zarr")]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        "dmr-ray: interrupted; the store is renamed into place only when complete, so --out was not written; "
        "rerun to build it"
    )
    messages = {words: p.get_default("interrupted") for words, p in _commands(build_parser())}
    assert "finished chunks are kept" not in messages[("store", "build")]
    assert messages[("ism",)] == "finished chunks are kept and a rerun resumes"
    assert messages[("store", "info")] == "nothing was written"


def test_a_closed_stdout_pipe_is_quiet(tmp_path) -> None:
    """``dmr-ray store info ... | head`` with head gone: no traceback, exit 1 (Python's SIGPIPE note)."""
    store = tmp_path / "s.zarr"
    write_sequence_store(store, np.zeros((3, 8), dtype=np.uint8), np.array(["a", "b", "c"]), source="test")
    child = subprocess.Popen(
        [sys.executable, "-m", "dmr_ray.cli", "store", "info", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    child.stdout.close()  # the reader goes away before the command writes
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 1
    assert err == "", err


def test_run_dispatches_on_kind(tmp_path, capsys) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"kind": "nonesuch", "out": "o"}))
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    kinds = "['attribution', 'deep_mr', 'grids']"
    assert err == f"dmr-ray: error: {config}: kind: unknown pipeline 'nonesuch'; choose from {kinds}"
    config.write_text(yaml.safe_dump({"store": "s.zarr", "out": "o", "engine": {"actors": "many"}}))
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"dmr-ray: error: {config}: invalid configuration: engine.actors: Input should be a valid integer, "
        "unable to parse string as an integer (got 'many'); model: field required"
    )

"""``dmr-ray run CONFIG.yaml``: run any pipeline, chosen by the configuration's ``kind``."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from dmr_ray.config.commands import CommandGroup


def register(commands: CommandGroup) -> None:
    """Add ``run``."""
    add_run(
        commands,
        help="run (or resume) the pipeline a YAML config describes (its 'kind', default deep_mr)",
        example="dmr-ray run audit.yaml",
        interrupted="finished stages and chunks are kept and a rerun resumes",
    )


def add_run(
    commands: CommandGroup, *, help: str, example: str, interrupted: str, kind: str | None = None
) -> argparse.ArgumentParser:
    """Add a ``run CONFIG [--overwrite]`` command to ``commands``.

    With ``kind`` the file is validated as that pipeline's configuration (a pipeline's own
    ``run`` command, e.g. ``grids run``); without, as the pipeline its ``kind`` key names.
    """
    run = commands.command("run", partial(_run, kind), help=help, example=example, interrupted=interrupted)
    run.add_argument("config", type=Path, help=f"{kind or 'pipeline'} configuration (YAML)")
    run.add_argument(
        "--overwrite", action="store_true", help="remove the outputs dmr_ray recorded in the output directory first"
    )
    return run


def _run(kind: str | None, args: argparse.Namespace) -> int:
    from dmr_ray.config import load_config
    from dmr_ray.config.registry import config_class

    config = load_config(args.config) if kind is None else config_class(kind).load(args.config)
    print(config.run(overwrite=args.overwrite))
    return 0

"""``dmr-ray run CONFIG.yaml``: run any pipeline, chosen by the configuration's ``kind``."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmr_ray.config.commands import CommandGroup


def register(commands: CommandGroup) -> None:
    """Add ``run``."""
    run = commands.command(
        "run",
        _run,
        help="run (or resume) the pipeline a YAML config describes (its 'kind', default deep_mr)",
        example="dmr-ray run audit.yaml",
        interrupted="finished stages and chunks are kept and a rerun resumes",
    )
    run.add_argument("config", type=Path, help="pipeline configuration")
    run.add_argument(
        "--overwrite", action="store_true", help="remove the outputs dmr_ray recorded in the output directory first"
    )


def _run(args: argparse.Namespace) -> int:
    from dmr_ray.config import load_config

    print(load_config(args.config).run(overwrite=args.overwrite))
    return 0

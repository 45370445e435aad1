"""``dmr-ray grids run CONFIG.yaml``: every task of a GRIDS configuration, tuned on Ray (same as ``dmr-ray run``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmr_ray.config.commands import CommandGroup


def add_run(grids: CommandGroup) -> None:
    """Add ``run`` to the ``grids`` command group."""
    run = grids.command(
        "run",
        _run,
        help="train (or load) the surrogate, tune GRIDS per task on Ray, run the baselines, write the tables",
        example="dmr-ray grids run grids.yaml",
        interrupted="finished tasks and Tune trials are kept; rerun the same command to resume",
    )
    run.add_argument("config", type=Path, help="GRIDS configuration (kind: grids)")
    run.add_argument(
        "--overwrite", action="store_true", help="remove the outputs dmr_ray recorded in the output directory first"
    )


def _run(args: argparse.Namespace) -> int:
    from dmr_ray.grids.config import GridsConfig

    print(GridsConfig.load(args.config).run(overwrite=args.overwrite))
    return 0

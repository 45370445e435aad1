"""``dmr-ray grids run CONFIG.yaml``: every task of a GRIDS configuration, tuned on Ray (same as ``dmr-ray run``)."""

from __future__ import annotations

from dmr_ray.config.cli import add_run as add_config_run
from dmr_ray.config.commands import CommandGroup


def add_run(grids: CommandGroup) -> None:
    """Add ``run`` to the ``grids`` command group."""
    add_config_run(
        grids,
        kind="grids",
        help="train (or load) the surrogate, tune GRIDS per task on Ray, run the baselines, write the tables",
        example="dmr-ray grids run grids.yaml",
        interrupted="finished tasks and Tune trials are kept; rerun the same command to resume",
    )

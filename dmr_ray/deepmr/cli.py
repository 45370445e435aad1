"""``dmr-ray deep-mr run`` and ``dmr-ray demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmr_ray.config.commands import CommandGroup

RESUMES = "finished stages and chunks are kept and a rerun resumes"


def register(commands: CommandGroup) -> None:
    """Add ``deep-mr run`` and ``demo``."""
    deep_mr = commands.group("deep-mr", help="Deep Mendelian randomization audits")
    run = deep_mr.command(
        "run",
        _run,
        help="run (or resume) the audit a YAML config describes",
        example="dmr-ray deep-mr run audit.yaml",
        interrupted=RESUMES,
    )
    run.add_argument("config", type=Path, help="audit configuration (docs/deep_mr.md)")
    run.add_argument(
        "--overwrite", action="store_true", help="remove the outputs dmr_ray recorded in the audit directory first"
    )
    demo = commands.command(
        "demo",
        _demo,
        help="run the embedded default end to end (no downloads)",
        example="dmr-ray demo --out /tmp/demo",
        interrupted="the data, model and " + RESUMES,
    )
    demo.add_argument("--out", default="dmr_ray_output/demo", help="output directory")
    demo.add_argument("--seed", type=int, default=0, help="seed of the embedded data and model")
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --out that holds a demo of another seed (removes only what the demo wrote)",
    )


def _run(args: argparse.Namespace) -> int:
    from dmr_ray.deepmr.config import DeepMRConfig

    print(DeepMRConfig.load(args.config).run(overwrite=args.overwrite))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from dmr_ray.demo import run_demo

    print(run_demo(Path(args.out), seed=args.seed, overwrite=args.overwrite))
    return 0

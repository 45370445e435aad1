"""``dmr-ray ism``: saturation mutagenesis of a sequence store into ``effects.zarr``.

The job options come from :class:`~dmr_ray.engine.IsmJob` and the engine options from
:class:`~dmr_ray.engine.EngineOptions` (their fields, defaults and docstrings), the same as a
configuration's ``ism`` and ``engine`` sections.
"""

from __future__ import annotations

import argparse

from dmr_ray.config.commands import CommandGroup, add_dataclass_options, dataclass_values, true_false_or
from dmr_ray.engine import EngineOptions, IsmJob

JOB_FIELDS_SET_ELSEWHERE = ("store", "model", "out", "calibration")
"""IsmJob fields with their own required options (``calibration`` belongs to Deep MR audits)."""

FLAGS = {"stall_timeout_s": "--stall-timeout", "runtime_env": "--runtime-env-json"}


def register(commands: CommandGroup) -> None:
    """Add ``ism``."""
    ism = commands.command(
        "ism",
        _ism,
        help="saturation mutagenesis of every store sequence into effects.zarr (on Ray)",
        description="Saturation mutagenesis on Ray replica actors, committed chunk by chunk: rerunning the "
        "same command resumes; a run with another model or options is refused.",
        example="dmr-ray ism --store seqs.zarr --model model.yaml --out effects.zarr --actors 2 --fast auto",
        interrupted="finished chunks are kept and a rerun resumes",
    )
    ism.add_argument("--store", required=True, help="sequences.zarr path or URL")
    ism.add_argument("--model", required=True, help="model spec YAML")
    ism.add_argument("--out", required=True, help="effects.zarr output path or URL")
    ism.add_argument("--overwrite", action="store_true", help="discard an existing output and start fresh")
    add_dataclass_options(
        ism,
        IsmJob,
        exclude=JOB_FIELDS_SET_ELSEWHERE,
        overrides={
            "fast": {"type": true_false_or, "choices": [True, False, "auto"], "metavar": "{true,false,auto}"},
            # Checked by IsmJob rather than argparse choices, so that a bad value is one error line.
            "precision": {"choices": None, "metavar": "{float32,bfloat16,float16}"},
        },
    )
    add_dataclass_options(ism.add_argument_group("Ray engine"), EngineOptions, flags=FLAGS)


def _ism(args: argparse.Namespace) -> int:
    from dmr_ray.engine import run_ism

    job = IsmJob(
        store=args.store,
        model=args.model,
        out=args.out,
        **dataclass_values(args, IsmJob, exclude=JOB_FIELDS_SET_ELSEWHERE),
    )
    options = EngineOptions(**dataclass_values(args, EngineOptions))
    print(run_ism(job, options, overwrite=args.overwrite).describe())
    return 0

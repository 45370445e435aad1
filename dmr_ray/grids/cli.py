"""``dmr-ray grids simulate|digits|search``: GRIDS from the command line.

:func:`register` adds the group; :func:`grids_group` returns it, so another module can attach
one more command to the same group (``grids run``, the distributed search).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dmr_ray.config.commands import CommandGroup, add_dataclass_options, dataclass_values
from dmr_ray.grids.digits import DigitsOptions
from dmr_ray.grids.search import ARCHITECTURES
from dmr_ray.grids.simulate import SimulationOptions
from dmr_ray.grids.training import TrainingOptions


def grids_group(commands: CommandGroup) -> CommandGroup:
    """Add the ``grids`` group (no commands yet) and return it."""
    return commands.group("grids", help="GRIDS: find the peaks whose joint removal switches a gene off")


def register(commands: CommandGroup) -> None:
    """Add ``grids simulate``, ``grids digits``, ``grids search`` and ``grids run`` (:mod:`dmr_ray.grids.run_cli`)."""
    from dmr_ray.grids.run_cli import add_run

    grids = grids_group(commands)
    add_commands(grids)
    add_run(grids)


def add_commands(grids: CommandGroup) -> None:
    """Add this module's commands to the ``grids`` group."""
    simulate = grids.command(
        "simulate",
        _simulate,
        help="write a synthetic multiome with planted redundant regulation (and its truth)",
        example="dmr-ray grids simulate --out data.h5mu --truth truth.json --seed 1",
        interrupted="each file is renamed into place only when complete, so nothing half-written was left",
    )
    simulate.add_argument("--out", required=True, type=Path, help="the .h5mu file to write")
    simulate.add_argument("--truth", type=Path, default=None, help="also write the planted truth to this JSON file")
    simulate.add_argument("--overwrite", action="store_true", help="replace an earlier simulation's files")
    add_dataclass_options(simulate.add_argument_group("simulation"), SimulationOptions)

    digits = grids.command(
        "digits",
        _digits,
        help="the 8→3 demo on scikit-learn's 8×8 digits: GRIDS vs Random, Saliency and SAGE",
        example="dmr-ray grids digits --out digits/",
        interrupted="digits.json and digits.png are written only when complete; rerun to finish",
    )
    digits.add_argument("--out", required=True, type=Path, help="output directory (digits.json, digits.png)")
    digits.add_argument("--overwrite", action="store_true", help="recompute and replace an earlier demo's outputs")
    add_dataclass_options(digits.add_argument_group("demo"), DigitsOptions)

    search = grids.command(
        "search",
        _search,
        help="one task in process: train (or load) the surrogate, run GRIDS and the baselines, write result.json",
        example=(
            "dmr-ray grids search --data data.h5mu --cell-type T1 --gene G1 --L 3 --truth truth.json --out search/"
        ),
        interrupted="a trained surrogate is kept in OUT/surrogate/ and reused on a rerun; result.json is written last",
    )
    search.add_argument("--data", required=True, type=Path, help="the multiome (.h5mu with rna and atac)")
    search.add_argument("--cell-type", required=True, help="the cell population searched")
    search.add_argument("--gene", required=True, help="the target gene")
    search.add_argument("--L", type=int, required=True, dest="L", help="peaks to select")
    search.add_argument("--out", required=True, type=Path, help="output directory (result.json, surrogate/)")
    search.add_argument("--surrogate", type=Path, default=None, help="a saved surrogate directory (default: train one)")
    search.add_argument("--truth", type=Path, default=None, help="a simulation's truth.json (adds planted recovery)")
    search.add_argument(
        "--methods", nargs="+", default=None, help="grids and baseline names (default: grids and all but sage)"
    )
    search.add_argument("--direction", choices=("down", "up"), default="down", help="remove peaks (down) or open them")
    search.add_argument("--k", type=int, default=32, help="GRIDS candidates per step")
    search.add_argument(
        "--steps",
        type=int,
        default=None,
        dest="search_steps",
        help="GRIDS steps (default: until a sweep brings nothing)",
    )
    search.add_argument("--restarts", type=int, default=1, help="GRIDS random restarts")
    search.add_argument(
        "--seed", type=int, default=0, dest="search_seed", help="seeds GRIDS and the stochastic baselines"
    )
    search.add_argument("--window", type=int, default=None, help="only peaks within this many bp of the gene's TSS")
    search.add_argument("--cell-type-key", default="cell_type", help="obs column with the cell types")
    search.add_argument("--overwrite", action="store_true", help="recompute and replace this directory's outputs")
    train = search.add_argument_group("surrogate training (when --surrogate is not given)")
    train.add_argument(
        "--architecture", choices=tuple(ARCHITECTURES), default="original",
        help="the original's widths, or a small network (enough for a simulated multiome)",
    )  # fmt: skip
    add_dataclass_options(
        train,
        TrainingOptions,
        exclude=("start_at_mean",),
        overrides={
            "steps": {"help": "Adam steps"},
            "batch_size": {"help": "cells per minibatch"},
            "learning_rate": {"help": "Adam step size"},
            "grad_clip": {"help": "gradient-norm clip"},
        },
        flags={name: f"--train-{name.replace('_', '-')}" for name in ("steps", "batch_size", "seed", "threads")},
    )


def _simulate(args: argparse.Namespace) -> int:
    from dmr_ray.grids.simulate import write_simulation

    options = SimulationOptions(**dataclass_values(args, SimulationOptions))
    truth = write_simulation(args.out, args.truth, options, overwrite=args.overwrite)
    targets = ", ".join(f"{g.gene} (in {'/'.join(g.cell_types)})" for g in truth.genes)
    print(f"wrote {options.n_cells} cells to {args.out}; planted targets: {targets}")
    return 0


def _digits(args: argparse.Namespace) -> int:
    from dmr_ray.grids.digits import write_digits

    result = write_digits(args.out, DigitsOptions(**dataclass_values(args, DigitsOptions)), overwrite=args.overwrite)
    flipped = ", ".join(f"{m} {v:.0%}" for m, v in result.fraction_three.items())
    print(f"classifier accuracy {result.accuracy:.1%}; test 8s read as 3: {flipped}")
    print(f"GRIDS and SAGE share {result.sage_overlap:.0%} of their pixels; see {args.out / 'digits.png'}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from dmr_ray.grids.search import SearchOptions, run_search

    options = SearchOptions(
        methods=None if args.methods is None else tuple(args.methods),
        direction=args.direction,
        k=args.k,
        steps=args.search_steps,
        restarts=args.restarts,
        seed=args.search_seed,
        window=args.window,
    )
    result = run_search(
        args.data,
        args.cell_type,
        args.gene,
        args.L,
        out=args.out,
        surrogate=args.surrogate,
        truth=args.truth,
        options=options,
        training=TrainingOptions(**dataclass_values(args, TrainingOptions, exclude=("start_at_mean",))),
        architecture=ARCHITECTURES[args.architecture],
        cell_type_key=args.cell_type_key,
        overwrite=args.overwrite,
    )
    summary = {
        method: {
            "avg_delta": entry["metrics"]["expression_change"].get("avg_delta"),
            "recovered": entry["metrics"].get("recovery"),
            "seconds": round(entry["seconds"], 2),
        }
        for method, entry in result["methods"].items()
    }
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out / 'result.json'}")
    return 0

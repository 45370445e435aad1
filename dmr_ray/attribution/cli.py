"""``dmr-ray attribution …``: the attribution-limits commands.

:func:`register` adds the ``attribution`` group; each command is added by its own
``add_<name>(group)`` function, so another module can add one more command to the same group.
The benchmark's options are those of :class:`~dmr_ray.attribution.config.AttributionConfig`
(the same as a ``kind: attribution`` YAML for ``dmr-ray run``), and the engine's come from
:class:`~dmr_ray.engine.EngineOptions`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dmr_ray.config.commands import CommandGroup, add_dataclass_options, dataclass_values
from dmr_ray.engine import EngineOptions
from dmr_ray.engine.cli import FLAGS as ENGINE_FLAGS

SIMULATIONS = ("SIMU1", "SIMU2", "SimuA", "SimuB", "SimuC")
SIZE_OVERRIDES = ("n_samples", "n_genes", "n_pathways", "n_subclasses", "pathways_per_class", "n_reads")


def register(commands: CommandGroup) -> CommandGroup:
    """Add the ``attribution`` group with ``benchmark`` and ``sequences``; returns the group (for more commands)."""
    from dmr_ray.attribution.sequences_cli import add_sequences

    group = commands.group("attribution", help="how far attributions recover known biomarkers and motifs")
    add_benchmark(group)
    add_sequences(group)
    return group


def add_benchmark(group: CommandGroup) -> None:
    """Add ``attribution benchmark``."""
    parser = group.command(
        "benchmark",
        _benchmark,
        help="IG / Saliency / SmoothGrad against the true genes of an LDA expression simulation",
        description="Simulate a hierarchical LDA expression data set with known biomarkers, train a classifier "
        "per seed (on Ray), attribute its correctly classified test samples and score the attributions: "
        "feature agreement with the true genes (local and global) and prediction gaps (PGI, PGU, PGR). "
        "Writes DIR/summary.json, summary.md and figures; rerunning resumes (finished seeds are kept).",
        example="dmr-ray attribution benchmark --simulation SIMU1 --model lr --seeds 10 --out simu1_lr",
        interrupted="finished seeds are kept and a rerun resumes",
    )
    parser.add_argument("--simulation", choices=SIMULATIONS, default="SIMU1", help="simulation preset")
    parser.add_argument("--model", choices=("lr", "mlp"), default="lr", help="classifier")
    parser.add_argument("--seeds", type=int, default=10, help="training seeds (first-seed, first-seed + 1, …)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--first-seed", type=int, default=0, help="first training seed")
    parser.add_argument("--simulation-seed", type=int, default=1, help="seed of the simulated data set")
    parser.add_argument(
        "--methods", nargs="+", choices=("ig", "saliency", "smoothgrad"), default=None, help="methods (default: all)"
    )
    sizes = parser.add_argument_group("simulation size (default: the preset's)")
    for name in SIZE_OVERRIDES:
        sizes.add_argument("--" + name.replace("_", "-"), type=int, default=None, help=f"override {name}")
    cost = parser.add_argument_group("cost")
    cost.add_argument(
        "--explain-per-class", type=int, default=None, help="explain at most this many test samples per class"
    )
    cost.add_argument("--gap-per-class", type=int, default=None, help="mask at most this many samples per class")
    cost.add_argument("--n-random", type=int, default=30, help="random orders averaged for PGR")
    cost.add_argument("--no-gaps", action="store_true", help="skip the prediction gaps")
    parser.add_argument("--overwrite", action="store_true", help="remove the outputs dmr_ray recorded in DIR first")
    add_dataclass_options(parser.add_argument_group("Ray engine"), EngineOptions, flags=ENGINE_FLAGS)


def benchmark_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ``kind: attribution`` configuration mapping the options describe."""
    simulation = {"name": args.simulation, "seed": args.simulation_seed}
    simulation |= {name: getattr(args, name) for name in SIZE_OVERRIDES if getattr(args, name) is not None}
    config: dict[str, Any] = {
        "kind": "attribution",
        "out": str(args.out),
        "simulation": simulation,
        "model": args.model,
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "explain": {"samples_per_class": args.explain_per_class},
        "gaps": {"enabled": not args.no_gaps, "samples_per_class": args.gap_per_class, "n_random": args.n_random},
        "engine": dataclass_values(args, EngineOptions),
    }
    if args.methods is not None:
        config["methods"] = args.methods
    return config


def _benchmark(args: argparse.Namespace) -> int:
    from dmr_ray.config import config_from_dict

    print(config_from_dict(benchmark_config(args), source="options").run(overwrite=args.overwrite))
    return 0

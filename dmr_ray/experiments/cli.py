"""``dmr-ray experiment simulation``, ``simulation-summary``, ``bpnet`` and ``deepsea``."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmr_ray.config.commands import CommandGroup


def register(commands: CommandGroup) -> None:
    """Add the ``experiment`` commands: ``simulation``, ``simulation-summary``, ``bpnet`` and ``deepsea``."""
    from dmr_ray.demo import ARCHITECTURES
    from dmr_ray.experiments.simulation import DEFAULT_ARCHITECTURE, HEADS, SCENARIOS, SIZES

    experiment = commands.group("experiment", help="ground-truth experiments with planted causal effects")
    simulation = experiment.command(
        "simulation",
        _simulation,
        help="the Deep MR simulation study: rounds of simulate, train, audit, score against truth",
        example="dmr-ray experiment simulation --scenario none --rounds 5 --quick --out /tmp/sim_none",
        interrupted="finished rounds (rounds/<i>/round.json) are kept; the rounds in flight are lost and a rerun "
        "computes only the missing ones",
    )
    simulation.add_argument("--scenario", required=True, help=f"confounding scenario: {', '.join(SCENARIOS)}")
    simulation.add_argument("--rounds", type=int, required=True, help="number of rounds (each seeded by its index)")
    simulation.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="size",
        help="small rounds (pooled_cnn: about 2.5 min a round on one core, so 1.25 min a round on 2 cores two at "
        "a time; small_cnn: about half that)",
    )
    simulation.add_argument("--size", choices=tuple(SIZES), default="full", help=argparse.SUPPRESS)
    simulation.add_argument("--seed", type=int, default=0, help="seed of the round draws")
    simulation.add_argument(
        "--heads",
        choices=HEADS,
        default="shared",
        help="the ensemble's dense layers: shared by the two tasks (the original's model) or a separate tower "
        "per task (default: %(default)s)",
    )
    simulation.add_argument(
        "--architecture",
        choices=tuple(ARCHITECTURES),
        default=DEFAULT_ARCHITECTURE,
        help="the ensemble's network: pooled_cnn (convolutions pooled over positions, whose intervals cover the "
        "local truths in every scenario) or small_cnn (the original's; docs/experiments.md) (default: %(default)s)",
    )
    simulation.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="rounds at once, each a Ray task with its own CPUs (default: as many as the cluster's CPUs hold; "
        "1 runs them one after another)",
    )
    simulation.add_argument("--out", type=Path, required=True, help="experiment directory")
    simulation.add_argument(
        "--overwrite", action="store_true", help="remove the rounds and summary this command wrote there first"
    )
    combined = experiment.command(
        "simulation-summary",
        _simulation_summary,
        help="one table (a row per scenario x method) and one set of figures across simulation experiments",
        example="dmr-ray experiment simulation-summary /tmp/sim_none /tmp/sim_sequence --out /tmp/sim_all",
        interrupted="rerun it: it only reads the experiments and rewrites its own files",
    )
    combined.add_argument("directories", nargs="+", type=Path, help="simulation experiment directories")
    combined.add_argument("--out", type=Path, required=True, help="directory for the combined table and figures")
    _add_bpnet(experiment)
    _add_deepsea(experiment)


def _add_bpnet(experiment: CommandGroup) -> None:
    bpnet = experiment.command(
        "bpnet",
        _bpnet,
        help="BPNet-style audit: Oct4-Sox2 recruits Nanog and Klf4 (planted); all 12 pairs against the truth",
        example="dmr-ray experiment bpnet --quick --out /tmp/bpnet_quick",
        interrupted="trained members and finished audit stages are kept; a rerun computes only what is missing",
    )
    bpnet.add_argument(
        "--quick", action="store_const", const="quick", dest="size", help="small data and ensemble (minutes on 2 cores)"
    )
    bpnet.add_argument("--size", default="full", help=argparse.SUPPRESS)
    bpnet.add_argument("--seed", type=int, default=0, help="seed of the simulation and the training")
    bpnet.add_argument("--out", type=Path, required=True, help="experiment directory")
    bpnet.add_argument("--overwrite", action="store_true", help="remove what this command wrote there first")


def _simulation(args: argparse.Namespace) -> int:
    from dmr_ray.experiments.simulation import run_simulation_experiment

    run_simulation_experiment(
        args.scenario,
        args.rounds,
        args.out,
        size=args.size,
        seed=args.seed,
        heads=args.heads,
        architecture=args.architecture,
        parallel=args.parallel,
        overwrite=args.overwrite,
    )
    print(f"summary: {args.out / 'summary.json'} and {args.out / 'summary.md'}")
    return 0


def _simulation_summary(args: argparse.Namespace) -> int:
    from dmr_ray.experiments.combined import combine_simulation_summaries

    combine_simulation_summaries(args.directories, args.out)
    print(f"summary: {args.out / 'summary.json'} and {args.out / 'summary.md'}")
    return 0


def _bpnet(args: argparse.Namespace) -> int:
    from dmr_ray.experiments.bpnet import run_bpnet_experiment

    run_bpnet_experiment(args.out, size=args.size, seed=args.seed, overwrite=args.overwrite)
    print(f"summary: {args.out / 'summary.json'} and {args.out / 'summary.md'}; figures in {args.out / 'figures'}")
    return 0


def _add_deepsea(experiment: CommandGroup) -> None:
    from dmr_ray.experiments.deepsea import SIZES

    deepsea = experiment.command(
        "deepsea",
        _deepsea,
        help="DeepSEA-style multi-task model: TF binding opens accessibility; audit TF → DNase and the reverse",
        example="dmr-ray experiment deepsea --quick --out /tmp/deepsea",
        interrupted="finished steps (simulation, trained members, audit chunks) are kept; a rerun does the rest",
    )
    deepsea.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="size",
        help="small data and model (a few minutes on 2 cores)",
    )
    deepsea.add_argument("--size", choices=tuple(SIZES), default="full", help=argparse.SUPPRESS)
    deepsea.add_argument("--seed", type=int, default=0, help="seed of the simulation and the training")
    deepsea.add_argument("--out", type=Path, required=True, help="experiment directory")
    deepsea.add_argument("--overwrite", action="store_true", help="remove what this command wrote there first")


def _deepsea(args: argparse.Namespace) -> int:
    from dmr_ray.experiments.deepsea import run_deepsea_experiment

    run_deepsea_experiment(args.out, size=args.size, seed=args.seed, overwrite=args.overwrite)
    print(f"summary: {args.out / 'summary.json'} and {args.out / 'summary.md'}; figures: {args.out / 'figures'}")
    return 0

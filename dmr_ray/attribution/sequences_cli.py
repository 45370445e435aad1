"""``dmr-ray attribution sequences``: how well a sequence model's attributions find planted motifs.

:func:`add_sequences` adds the command to the ``attribution`` command group. Without
``--model`` it simulates GATA → TAL1 cooperativity sequences, trains the small CNN ensemble
of the Deep MR demo (saved in ``OUT/model``) and scores ISM, integrated gradients, saliency and
gradient × input on held-out sequences against the planted motif positions; with ``--model``,
``--store`` and ``--motifs`` it scores a user's model on a sequence store whose motif
positions are known. Outputs: ``OUT/sequences.json``, ``OUT/sequences.md`` and two figures.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from dmr_ray.attribution.sequences import (
    BASELINES,
    METHODS,
    SimulationSettings,
    check_method_options,
    check_output_directory,
    evaluate_attributions,
    motif_bed_truth,
    run_simulated_benchmark,
    write_evaluation,
)
from dmr_ray.config.commands import CommandGroup, field_docs
from dmr_ray.errors import InputError

log = logging.getLogger(__name__)

_DEFAULTS = SimulationSettings()


def add_sequences(group: CommandGroup) -> argparse.ArgumentParser:
    """Add ``sequences`` to the ``attribution`` command group; returns its parser."""
    parser = group.command(
        "sequences",
        _run,
        help="score ISM, IG, saliency and gradient × input of a sequence model against planted motif positions",
        example="dmr-ray attribution sequences --out seq_attr --members 5 --n-eval 200",
        interrupted="files already written in OUT are complete; rerun with --overwrite",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="attribution methods")
    parser.add_argument("--ig-steps", type=int, default=50, help="Gauss–Legendre steps of integrated gradients")
    parser.add_argument("--baseline", choices=BASELINES, default="uniform", help="integrated-gradients baseline")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--overwrite", action="store_true", help="replace this command's earlier outputs in OUT")
    user = parser.add_argument_group("a user's model (instead of the simulation)")
    user.add_argument("--model", type=Path, help="model spec YAML")
    user.add_argument("--store", help="sequence store (.zarr) of the sequences to attribute")
    user.add_argument(
        "--motifs", type=Path, help="motif positions: lines 'seq_id start end [output]' (0-based, end exclusive)"
    )
    sim = parser.add_argument_group("the simulated benchmark")
    docs = field_docs(SimulationSettings)
    for f in fields(SimulationSettings):
        sim.add_argument(
            "--" + f.name.replace("_", "-"),
            type=float if f.type == "float" else int,
            default=getattr(_DEFAULTS, f.name),
            help=docs.get(f.name),
        )
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    methods = check_method_options(args.methods, ig_steps=args.ig_steps, baseline=args.baseline)
    user_model = (args.model, args.store, args.motifs)
    if any(v is not None for v in user_model) and any(v is None for v in user_model):
        raise InputError("--model, --store and --motifs go together (a user's model needs known motif positions)")
    settings = (
        None
        if args.model
        else SimulationSettings(**{f.name: getattr(args, f.name) for f in fields(SimulationSettings)})
    )
    out: Path = args.out
    check_output_directory(out, overwrite=args.overwrite)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    common = {"methods": methods, "ig_steps": args.ig_steps, "baseline": args.baseline}
    if settings is not None:
        evaluation = run_simulated_benchmark(settings, out / "model", **common)
        source: dict = {"simulation": asdict(settings), "model": str(out / "model" / "model.yaml")}
    else:
        evaluation = _user_evaluation(args, common)
        source = {"model": str(args.model), "store": str(args.store), "motifs": str(args.motifs)}
    info = {**source, **common, "methods": list(methods), "seconds": round(time.perf_counter() - started, 1)}
    paths = write_evaluation(evaluation, out, info)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _user_evaluation(args: argparse.Namespace, common: dict):
    from dmr_ray.models import load_model_spec
    from dmr_ray.store import open_sequence_store
    from dmr_ray.uncertainty import build_predictor

    spec = load_model_spec(args.model)
    store = open_sequence_store(args.store)
    ids = [str(s) for s in store.seq_ids()]
    truth = motif_bed_truth(args.motifs, ids, store.length, spec.task_names)
    return evaluate_attributions(build_predictor(spec), store.read(), truth, seq_ids=ids, **common)

"""Command-line interface: argument parsing only; the work happens in the packages."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dmr_ray.errors import DmrRayError

log = logging.getLogger("dmr_ray")


def _add_store_commands(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser("store", help="build and inspect sequence stores (sequences.zarr)")
    store_sub = store.add_subparsers(dest="store_command", required=True)

    build = store_sub.add_parser("build", help="build sequences.zarr from FASTA + BED")
    build.add_argument("--fasta", required=True, type=Path, help="reference FASTA (indexed on the fly)")
    build.add_argument("--bed", required=True, type=Path, help="BED intervals (0-based, half-open)")
    build.add_argument("--out", required=True, help="output store path")
    build.add_argument(
        "--length",
        type=int,
        default=None,
        help="window length centred on each interval (default: the intervals as they are)",
    )
    build.add_argument(
        "--sample", type=int, default=None, help="sample this many windows at random from the intervals instead"
    )
    build.add_argument("--seed", type=int, default=0, help="seed for --sample")
    build.add_argument("--chunk-size", type=int, default=None, help="sequences per Zarr chunk")
    build.add_argument("--overwrite", action="store_true", help="replace an existing store")
    build.set_defaults(func=_cmd_store_build)

    info = store_sub.add_parser("info", help="summarise a sequence store")
    info.add_argument("path", help="store path or URL")
    info.set_defaults(func=_cmd_store_info)


def _add_ism_command(sub: argparse._SubParsersAction) -> None:
    ism = sub.add_parser(
        "ism",
        help="saturation mutagenesis of every store sequence into effects.zarr (on Ray)",
        description="Saturation mutagenesis on Ray replica actors, committed chunk by chunk: rerunning the "
        "same command resumes; a run with another model or options is refused.",
    )
    ism.add_argument("--store", required=True, help="sequences.zarr path or URL")
    ism.add_argument("--model", required=True, type=Path, help="model spec YAML")
    ism.add_argument("--out", required=True, help="effects.zarr output path or URL")
    ism.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="sequences per unit of work, commit and resume (default: the store's chunk size)",
    )
    ism.add_argument(
        "--batch-size", type=int, default=None, help="mutants per forward pass (default: derived from a memory budget)"
    )
    ism.add_argument("--ddof", type=int, default=0, help="ddof of the replicate SD (0 as the original)")
    ism.add_argument("--device", default=None, help="torch device (default: cuda when the cluster has GPUs, else cpu)")
    ism.add_argument("--fast", choices=["true", "false", "auto"], default="false", help="receptive-field fast path")
    # Checked by IsmJob rather than argparse choices, so that a bad value is one error line.
    ism.add_argument(
        "--precision",
        default="float32",
        metavar="{float32,bfloat16,float16}",
        help="autocast dtype of the fast path's linear layers on differences "
        "(default float32; the others need --fast true or auto and are meant for CUDA)",
    )
    ism.add_argument("--overwrite", action="store_true", help="discard an existing output and start fresh")
    ray_options = ism.add_argument_group("Ray engine")
    ray_options.add_argument(
        "--actors",
        type=int,
        default=None,
        help="replica actors (default: one per GPU, else one per CPU); 0 runs in this process without Ray",
    )
    ray_options.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join: 'auto' or host:port (default: RAY_ADDRESS, else a local instance)",
    )
    ray_options.add_argument(
        "--replicate-groups",
        type=int,
        default=1,
        help="spread ensemble members / MC-dropout passes over this many groups of actors "
        "(default 1: all replicates in every actor)",
    )
    ray_options.add_argument(
        "--threads", type=int, default=None, help="torch threads per actor (default: CPUs / actors on CPU, 1 on GPU)"
    )
    ray_options.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        help="GPU share per actor, e.g. 0.25 for 4 replicas per GPU (default: GPUs / actors, at most 1)",
    )
    ray_options.add_argument("--max-in-flight", type=int, default=2, help="chunks queued per actor (default 2)")
    ray_options.add_argument("--max-restarts", type=int, default=3, help="restarts of a lost actor (default 3)")
    ray_options.add_argument(
        "--stall-timeout",
        type=float,
        default=1800.0,
        help="seconds without finished work before the run fails (default 1800)",
    )
    ray_options.add_argument(
        "--runtime-env-json",
        type=_json_object,
        default=None,
        help="Ray runtime environment of the actors, e.g. "
        '\'{"py_modules": ["my_models"]}\' for model code that is not installed',
    )
    ism.set_defaults(func=_cmd_ism)


def _add_deep_mr_commands(sub: argparse._SubParsersAction) -> None:
    deep_mr = sub.add_parser("deep-mr", help="Deep Mendelian randomization audits")
    deep_mr_sub = deep_mr.add_subparsers(dest="deep_mr_command", required=True)
    run = deep_mr_sub.add_parser("run", help="run (or resume) the audit a YAML config describes")
    run.add_argument("config", type=Path, help="audit configuration (docs/deep_mr.md)")
    run.add_argument("--overwrite", action="store_true", help="discard earlier results and start fresh")
    run.set_defaults(func=_cmd_deep_mr_run)


def _add_demo_command(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the embedded default end to end (no downloads)")
    demo.add_argument("--out", default="dmr_ray_output/demo", help="output directory")
    demo.add_argument("--seed", type=int, default=0, help="seed of the embedded data and model")
    demo.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``dmr-ray`` argument parser."""
    parser = argparse.ArgumentParser(prog="dmr-ray", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_store_commands(sub)
    _add_ism_command(sub)
    _add_deep_mr_commands(sub)
    _add_demo_command(sub)
    return parser


def _cmd_store_build(args: argparse.Namespace) -> int:
    from dmr_ray.store import build_from_fasta_bed

    store = build_from_fasta_bed(
        args.fasta,
        args.bed,
        args.out,
        length=args.length,
        sample=args.sample,
        seed=args.seed,
        chunk_size=args.chunk_size,
        overwrite=args.overwrite,
    )
    print(f"wrote {store.n_seq} sequences of {store.length} bp to {args.out}")
    return 0


def _cmd_store_info(args: argparse.Namespace) -> int:
    from dmr_ray.store import store_info

    print(json.dumps(store_info(args.path), indent=2, default=str))
    return 0


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _fast_option(value: str) -> bool | str:
    return {"true": True, "false": False}.get(value, value)


def _cmd_ism(args: argparse.Namespace) -> int:
    from dmr_ray.engine import EngineOptions, IsmJob, run_ism

    job = IsmJob(
        store=args.store,
        model=str(args.model),
        out=args.out,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        ddof=args.ddof,
        device=args.device,
        fast=_fast_option(args.fast),
        precision=args.precision,
    )
    options = EngineOptions(
        actors=args.actors,
        replicate_groups=args.replicate_groups,
        threads=args.threads,
        gpus_per_actor=args.gpus_per_actor,
        max_in_flight=args.max_in_flight,
        max_restarts=args.max_restarts,
        stall_timeout_s=args.stall_timeout,
        address=args.address,
        runtime_env=args.runtime_env_json,
    )
    summary = run_ism(job, options, overwrite=args.overwrite)
    print(summary.describe())
    return 0


def _cmd_deep_mr_run(args: argparse.Namespace) -> int:
    from dmr_ray.config import load_config
    from dmr_ray.deepmr.pipeline import run_audit

    summary = run_audit(load_config(args.config), overwrite=args.overwrite)
    print(f"report: {summary.report}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dmr_ray.demo import run_demo

    print(run_demo(Path(args.out), seed=args.seed))
    return 0


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dmr-ray`` command line; returns the process exit code.

    A :class:`~dmr_ray.errors.DmrRayError` is reported as one line on stderr with exit code 2.
    """
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return args.func(args)
    except DmrRayError as exc:
        print(f"dmr-ray: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dmr-ray: interrupted; finished chunks are kept and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

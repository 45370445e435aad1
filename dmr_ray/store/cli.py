"""``dmr-ray store build|info``: sequence stores."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dmr_ray.config.commands import CommandGroup


def register(commands: CommandGroup) -> None:
    """Add ``store build`` and ``store info``."""
    store = commands.group("store", help="build sequence stores; describe sequence or effects stores")
    build = store.command(
        "build",
        _build,
        help="build sequences.zarr from FASTA + BED",
        example="dmr-ray store build --fasta genome.fa --bed peaks.bed --length 1000 --out seqs.zarr",
        interrupted="the store is renamed into place only when complete, so --out was not written; rerun to build it",
    )
    build.add_argument("--fasta", required=True, type=Path, help="reference FASTA (indexed on the fly)")
    build.add_argument("--bed", required=True, type=Path, help="BED intervals (0-based, half-open)")
    build.add_argument("--out", required=True, help="output store path")
    build.add_argument(
        "--length", type=int, default=None, help="window length centred on each interval (default: the intervals)"
    )
    build.add_argument(
        "--sample", type=int, default=None, help="sample this many windows at random from the intervals instead"
    )
    build.add_argument("--seed", type=int, default=0, help="seed for --sample")
    build.add_argument("--chunk-size", type=int, default=None, help="sequences per Zarr chunk")
    build.add_argument("--overwrite", action="store_true", help="replace an existing store")
    info = store.command(
        "info",
        _info,
        help="describe a sequence or effects store (JSON: size, chunks complete, identity)",
        example="dmr-ray store info seqs.zarr",
        interrupted="nothing was written",
    )
    info.add_argument("path", help="store path or URL")


def _build(args: argparse.Namespace) -> int:
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


def _info(args: argparse.Namespace) -> int:
    from dmr_ray.store import store_info

    print(json.dumps(store_info(args.path), indent=2, default=str))
    return 0

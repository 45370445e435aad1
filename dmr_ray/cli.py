"""dmr-ray: distributed audits of what genomic deep-learning models have learned.

This module holds only the main parser, the registry of command packages, logging and error
handling; each package adds its own subcommands (``register`` in its ``cli.py``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from dmr_ray import __version__
from dmr_ray.config.commands import CommandGroup, HelpFormatter, shared_options
from dmr_ray.errors import DmrRayError

log = logging.getLogger("dmr_ray")

COMMAND_MODULES = (
    "dmr_ray.store.cli",
    "dmr_ray.engine.cli",
    "dmr_ray.config.cli",
    "dmr_ray.deepmr.cli",
    "dmr_ray.grids.cli",
    "dmr_ray.audit.cli",
    "dmr_ray.attribution.cli",
    "dmr_ray.experiments.cli",
)
"""Packages whose ``register(CommandGroup)`` adds subcommands, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """Return the ``dmr-ray`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="dmr-ray",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="example:\n  dmr-ray demo\n  dmr-ray ism --help",
        parents=[shared_options(suppress=False)],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = CommandGroup(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # anndata/mudata report routine conversions ("storing 'chrom' as categorical") at INFO.
    for name in ("anndata", "mudata"):
        logging.getLogger(name).setLevel(level if verbose else max(level, logging.WARNING))


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``dmr-ray ... | head``): stop without a traceback.

    Python's documented way (the SIGPIPE note of the ``signal`` module): point stdout at
    devnull so the interpreter's final flush cannot fail again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dmr-ray`` command line; returns the process exit code.

    A :class:`~dmr_ray.errors.DmrRayError` is reported as one line on stderr with exit code 2;
    Ctrl-C as one line saying what the command keeps (exit 130); a closed stdout pipe ends
    quietly (exit 1).
    """
    args = None
    try:
        try:
            args = build_parser().parse_args(argv)
            _configure_logging(args.verbose, args.quiet)
            return args.func(args)
        finally:
            sys.stdout.flush()  # here, not at exit, so that a closed pipe is handled below
    except DmrRayError as exc:
        print(f"dmr-ray: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        interrupted = getattr(args, "interrupted", "nothing was done")
        print(f"dmr-ray: interrupted; {interrupted}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()


if __name__ == "__main__":
    sys.exit(main())

"""``dmr-ray audit run|status|diff|export``: audit plans from the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from dmr_ray.config.commands import CommandGroup

EXPORT_TARGETS = ("rayjob", "raycronjob", "cronjob", "slurm", "airflow")


def register(commands: CommandGroup) -> None:
    """Add the ``audit`` group."""
    audit = commands.group("audit", help="scheduled audits: plans over models × data × audits (docs/audits.md)")
    run = audit.command(
        "run",
        _run,
        help="compute the cells of a plan that are not complete (on the local Ray instance or RAY_ADDRESS)",
        example="dmr-ray audit run plan.yaml --only version=v2 --json",
        interrupted="complete cells are kept, leases are released, and a rerun resumes the interrupted cells",
    )
    run.add_argument("plan", type=Path, help="audit plan (YAML)")
    run.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="run only matching cells; FIELD: model (name or name@version), version, data, audit, key (prefix); "
        "repeat to select more",
    )
    run.add_argument("--json", action="store_true", help="print a JSON summary (pipeline logs go to stderr)")
    run.add_argument("--poll", type=float, default=10.0, help="seconds between checks of cells another run holds")
    status = audit.command(
        "status",
        _status,
        help="show the plan's matrix (model versions × data / audit) and which cells are done",
        example="dmr-ray audit status plan.yaml",
        interrupted="nothing was changed",
    )
    status.add_argument("plan", type=Path, help="audit plan (YAML)")
    diff = audit.command(
        "diff",
        _diff,
        help="compare two model versions cell by cell (table, and an HTML page with figures)",
        example="dmr-ray audit diff plan.yaml --from v1 --to v2",
        interrupted="nothing was changed but a partial diff page",
    )
    diff.add_argument("plan", type=Path, help="audit plan (YAML)")
    diff.add_argument("--from", dest="from_version", required=True, help="the earlier model version")
    diff.add_argument("--to", dest="to_version", required=True, help="the later model version")
    diff.add_argument("--out", type=Path, default=None, help="directory of the HTML page (default: under the output)")
    export = audit.command(
        "export",
        _export,
        help="write a scheduler's manifest that runs the plan (KubeRay, CronJob, Slurm, Airflow)",
        example="dmr-ray audit export plan.yaml --to rayjob --out deploy/",
        interrupted="files already written are complete",
    )
    export.add_argument("plan", type=Path, help="audit plan (YAML)")
    export.add_argument("--to", dest="target", required=True, choices=EXPORT_TARGETS, help="the scheduler")
    export.add_argument("--out", type=Path, required=True, help="directory for the manifest(s)")


def _run(args: argparse.Namespace) -> int:
    from dmr_ray.audit import load_plan, run_plan

    plan = load_plan(args.plan)
    if args.json:
        with contextlib.redirect_stdout(sys.stderr):
            result = run_plan(plan, only=args.only, echo=lambda line: print(line, file=sys.stderr), poll_s=args.poll)
        print(json.dumps(result.as_json(), indent=2))
    else:
        result = run_plan(plan, only=args.only, poll_s=args.poll)
        print(", ".join(f"{result.count(s)} {s}" for s in ("computed", "skipped", "failed")))
    return 1 if result.count("failed") else 0


def _status(args: argparse.Namespace) -> int:
    from dmr_ray.audit import load_plan
    from dmr_ray.audit.status import plan_status

    print(plan_status(load_plan(args.plan)).matrix())
    return 0


def _diff(args: argparse.Namespace) -> int:
    from dmr_ray.audit import load_plan
    from dmr_ray.audit.diff import diff_plan

    print(diff_plan(load_plan(args.plan), args.from_version, args.to_version, args.out).text())
    return 0


def _export(args: argparse.Namespace) -> int:
    from dmr_ray.audit import load_plan
    from dmr_ray.audit.export import export_plan

    for path in export_plan(load_plan(args.plan), args.plan, args.target, args.out):
        print(path)
    return 0

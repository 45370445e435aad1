"""``dmr-ray audit run``: compute the cells of a plan that are not complete.

For each selected cell: complete (its ``COMPLETE`` marker exists) → skipped; else the run
takes the cell's lease (:mod:`dmr_ray.audit.lease`) and computes it; a cell leased by another
live run is waited for, and counted as skipped once that run completes it (or taken over if
that run dies). A cell whose pipeline fails is recorded with its reason and the others go on.
An interrupted cell resumes through its pipeline's own resume (the output directory is kept).

Where cells run: without ``cell_resources`` one after another in this driver, each pipeline's
engine sizing its actors from the whole cluster (the right choice when one audit fills the
cluster, e.g. an ISM pool on every GPU); with ``cell_resources`` each cell is a Ray task in a
placement group of those resources, whose engine sizes its pool from that group, and Ray runs
as many cells at once as the cluster holds.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmr_ray import __version__
from dmr_ray.audit.cells import CELLS, COMPLETE, MANIFEST, OUT, Cell, KeyedCell, cell_config, expand_cells, key_cells
from dmr_ray.audit.index import IndexRow, append_rows
from dmr_ray.audit.kinds import audit_kind
from dmr_ray.audit.lease import Lease, LeaseState, owner_id, try_acquire
from dmr_ray.audit.output import Output
from dmr_ray.audit.plan import AuditPlan
from dmr_ray.errors import InputError

log = logging.getLogger(__name__)

SELECTOR_FIELDS = ("model", "version", "data", "audit", "key")
"""What ``--only FIELD=VALUE`` may name."""


@dataclass(frozen=True)
class CellOutcome:
    """What a run did with one cell.

    Attributes
    ----------
    key : str
        Empty when the cell could not be keyed (its inputs could not be read).
    status : str
        ``computed``, ``skipped`` or ``failed``.
    output : str or None
        The cell's directory (``<output>/cells/<key>``).
    reason : str
        Why it failed, or who computed it when it was skipped.
    """

    key: str
    model: str
    version: str
    data: str
    audit: str
    status: str
    output: str | None
    reason: str = ""
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` entry of this cell."""
        names = ("key", "model", "version", "data", "audit", "status", "output")
        return {name: getattr(self, name) for name in names}

    def line(self) -> str:
        """One status line for the terminal."""
        text = f"[{self.status}] {self.model}@{self.version} × {self.data} × {self.audit}"
        text += f"  {self.key or '(no key)'}"
        if self.status == "computed":
            text += f"  {self.seconds:.1f} s"
        return text + (f"  ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class PlanRun:
    """The outcome of one :func:`run_plan`."""

    run_id: str
    outcomes: tuple[CellOutcome, ...]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        """``{"computed", "skipped", "failed", "cells"}`` as ``dmr-ray audit run --json`` prints."""
        counts = {status: self.count(status) for status in ("computed", "skipped", "failed")}
        return {**counts, "cells": [o.as_json() for o in self.outcomes]}


@dataclass(frozen=True)
class CellResult:
    """What computing a cell gave (returned from wherever it ran)."""

    ok: bool
    seconds: float
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def select_cells(cells: Iterable[Cell], only: Sequence[str]) -> list[Cell]:
    """The cells matching every ``FIELD=VALUE`` of ``only`` (values of one field are ORed).

    ``model`` matches a name or ``name@version``; ``key`` is matched later, by prefix.

    Raises
    ------
    InputError
        For a malformed selector or an unknown field.
    """
    wanted = parse_only(only)
    selected = []
    for cell in cells:
        values = {"model": {cell.model.name, cell.model.label}, "version": {cell.model.version}}
        values |= {"data": {cell.data.name}, "audit": {cell.audit.name}}
        if all(values[f] & set(v) for f, v in wanted.items() if f != "key"):
            selected.append(cell)
    return selected


def parse_only(only: Sequence[str]) -> dict[str, list[str]]:
    """``["model=bpnet", "audit=deepmr"]`` → ``{"model": ["bpnet"], "audit": ["deepmr"]}``."""
    wanted: dict[str, list[str]] = {}
    for item in only:
        name, sep, value = item.partition("=")
        if not sep or not value or name not in SELECTOR_FIELDS:
            raise InputError(f"--only {item!r}: expected FIELD=VALUE with FIELD one of {list(SELECTOR_FIELDS)}")
        wanted.setdefault(name, []).append(value)
    return wanted


def is_complete(output: Output, key: str) -> bool:
    """Whether the cell ``key`` has its completion marker."""
    return output.exists(CELLS, key, COMPLETE)


def local_out(plan: AuditPlan, output: Output, key: str) -> Path:
    """Where the cell's pipeline writes: in place on a local output, else under the work dir."""
    if output.is_local:
        return output.local(CELLS, key, OUT)
    work = plan.work_dir or Path("~/.cache/dmr_ray/audits").expanduser() / plan.name
    return work / key / OUT


def execute_cell(cell: Cell, out: Path, upload: tuple[str, str] | None = None) -> CellResult:
    """Run (or resume) the cell's pipeline into ``out`` and read its headline metrics.

    Parameters
    ----------
    upload
        ``(output location, key)``: copy ``out`` to ``<output>/cells/<key>/out`` when done
        (outputs that are URLs).

    Returns
    -------
    CellResult
        ``ok`` False with the reason when anything failed (nothing is raised but interrupts).
    """
    started = time.monotonic()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        config = cell_config(cell, out)
        print(config.run())
        metrics = audit_kind(cell.audit.kind).headline(out)
        if upload is not None:
            Output(upload[0]).put_dir(out, CELLS, upload[1], OUT)
    except Exception as exc:  # a failing cell fails alone: its reason is recorded
        log.debug("cell %s failed", cell.label, exc_info=True)
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return CellResult(False, time.monotonic() - started, reason)
    return CellResult(True, time.monotonic() - started, metrics=metrics)


class _Executor:
    """Computes leased cells and hands back results: in this process, one at a time."""

    sequential = True

    def __init__(self, plan: AuditPlan, output: Output) -> None:
        self.plan, self.output = plan, output
        self._done: list[tuple[KeyedCell, CellResult]] = []

    def _args(self, keyed: KeyedCell) -> tuple[Cell, Path, tuple[str, str] | None]:
        upload = None if self.output.is_local else (self.output.location, keyed.key)
        return keyed.cell, local_out(self.plan, self.output, keyed.key), upload

    def submit(self, keyed: KeyedCell) -> None:
        self._done.append((keyed, execute_cell(*self._args(keyed))))

    def results(self) -> Iterable[tuple[KeyedCell, CellResult]]:
        done, self._done = self._done, []
        yield from done


class _RayExecutor(_Executor):
    """Each cell a Ray task in its own placement group of ``cell_resources``."""

    sequential = False

    def __init__(self, plan: AuditPlan, output: Output) -> None:
        super().__init__(plan, output)
        import ray

        from dmr_ray.engine import connect

        connect()
        self._ray = ray
        self._remote: Any = ray.remote(num_cpus=0)(execute_cell)
        self._running: dict[Any, tuple[KeyedCell, Any]] = {}

    def submit(self, keyed: KeyedCell) -> None:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        assert self.plan.cell_resources is not None
        group = placement_group([dict(self.plan.cell_resources)])
        strategy = PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)
        ref = self._remote.options(scheduling_strategy=strategy).remote(*self._args(keyed))
        self._running[ref] = (keyed, group)

    def results(self) -> Iterable[tuple[KeyedCell, CellResult]]:
        from ray.util.placement_group import remove_placement_group

        while self._running:
            ready, _ = self._ray.wait(list(self._running), num_returns=1)
            keyed, group = self._running.pop(ready[0])
            try:
                result = self._ray.get(ready[0])
            except Exception as exc:  # the task itself was lost (node died): the cell fails alone
                result = CellResult(False, 0.0, f"{type(exc).__name__}: {exc}".splitlines()[0])
            remove_placement_group(group)
            yield keyed, result

    def cancel(self) -> None:
        for ref in self._running:
            self._ray.cancel(ref, force=True)


def run_plan(
    plan: AuditPlan,
    *,
    only: Sequence[str] = (),
    echo: Callable[[str], None] = print,
    run_id: str | None = None,
    poll_s: float = 10.0,
) -> PlanRun:
    """Compute every selected cell of ``plan`` that is not complete; see the module docstring.

    Parameters
    ----------
    only
        ``FIELD=VALUE`` selectors (:func:`select_cells`; ``key=`` matches a key prefix).
    echo
        Receives one status line per cell as it is settled.
    run_id
        Recorded in the index, manifests and leases (default: a new random id).
    poll_s
        How often cells leased by another run are checked while waiting for them.

    Returns
    -------
    PlanRun
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    output = Output(plan.output)
    cells = select_cells(expand_cells(plan), only)
    keyed, unkeyed = key_cells(cells)
    prefixes = parse_only(only).get("key")
    if prefixes:
        keyed = [k for k in keyed if any(k.key.startswith(p) for p in prefixes)]
    outcomes: dict[tuple[str, str, str], CellOutcome] = {}

    def settle(outcome: CellOutcome, cell: Cell) -> None:
        outcomes[cell.ident] = outcome
        echo(outcome.line())

    for cell, reason in unkeyed:
        settle(_outcome(cell, "", "failed", None, reason), cell)
        _record(output, plan, run_id, None, cell, "failed", 0.0, reason, {})
    executor = _RayExecutor(plan, output) if plan.cell_resources else _Executor(plan, output)
    owner = owner_id(run_id)
    leases: dict[str, Lease] = {}
    pending = list(keyed)
    waiting: dict[str, str] = {}
    try:
        while pending:
            deferred = []
            for item in pending:
                if is_complete(output, item.key):
                    reason = f"computed by {waiting[item.key]}" if item.key in waiting else ""
                    settle(_outcome(item.cell, item.key, "skipped", output.url(CELLS, item.key), reason), item.cell)
                    continue
                got = try_acquire(output, item.key, owner, plan.lease_ttl_s)
                if isinstance(got, LeaseState):
                    if item.key not in waiting:
                        echo(f"[waiting] {item.cell.label}  {item.key}  (leased by {got.owner})")
                    waiting[item.key] = got.owner
                    deferred.append(item)
                    continue
                leases[item.key] = got
                if is_complete(output, item.key):  # completed between the check and the lease
                    leases.pop(item.key).release()
                    settle(_outcome(item.cell, item.key, "skipped", output.url(CELLS, item.key)), item.cell)
                    continue
                executor.submit(item)
                if executor.sequential:
                    _settle_results(executor, output, plan, run_id, leases, settle)
            _settle_results(executor, output, plan, run_id, leases, settle)
            pending = deferred
            if pending:
                time.sleep(poll_s)
    finally:
        if isinstance(executor, _RayExecutor) and leases:
            executor.cancel()
        for lease in leases.values():
            lease.release()
    return PlanRun(run_id, tuple(outcomes[c.ident] for c in cells if c.ident in outcomes))


def _settle_results(
    executor: _Executor,
    output: Output,
    plan: AuditPlan,
    run_id: str,
    leases: dict[str, Lease],
    settle: Callable[[CellOutcome, Cell], None],
) -> None:
    """Finish every cell the executor has a result for: marker (when computed), lease, index, line."""
    for item, result in executor.results():
        lease = leases.pop(item.key)
        status = "computed" if result.ok else "failed"
        try:
            if result.ok:
                _complete(output, plan, run_id, item, result, lease)
        finally:
            lease.release()
        cell, seconds, reason, metrics = item.cell, result.seconds, result.reason, result.metrics
        _record(output, plan, run_id, item, cell, status, seconds, reason, metrics)
        settle(_outcome(cell, item.key, status, output.url(CELLS, item.key), reason, seconds, metrics), cell)


def _complete(output: Output, plan: AuditPlan, run_id: str, item: KeyedCell, result: CellResult, lease: Lease) -> None:
    """Write the cell's manifest, then its completion marker (last, atomically)."""
    cell = item.cell
    manifest = {
        "key": item.key,
        "plan": plan.name,
        "model": {"name": cell.model.name, "version": cell.model.version, "spec": str(cell.model.spec)},
        "data": {"name": cell.data.name, "store": cell.data.store},
        "audit": {"name": cell.audit.name, "kind": cell.audit.kind},
        "identity": item.identity,
        "run_id": run_id,
        "seconds": result.seconds,
        "metrics": result.metrics,
        "code_version": __version__,
    }
    output.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str), CELLS, item.key, MANIFEST)
    if not lease.held():
        log.warning("cell %s: its lease was taken over; leaving the completion to the other run", item.key)
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    output.write_text(json.dumps({"run_id": run_id, "finished": stamp}), CELLS, item.key, COMPLETE)
    if not output.is_local:
        shutil.rmtree(local_out(plan, output, item.key).parent, ignore_errors=True)  # the work copy dmr_ray made


def _outcome(
    cell: Cell,
    key: str,
    status: str,
    output: str | None,
    reason: str = "",
    seconds: float = 0.0,
    metrics: dict[str, float] | None = None,
) -> CellOutcome:
    model, data, audit = cell.model, cell.data.name, cell.audit.name
    return CellOutcome(key, model.name, model.version, data, audit, status, output, reason, seconds, metrics or {})


def _record(
    output: Output,
    plan: AuditPlan,
    run_id: str,
    item: KeyedCell | None,
    cell: Cell,
    status: str,
    seconds: float,
    reason: str,
    metrics: dict[str, float],
) -> None:
    """Append the cell run's row to the index."""
    identity = item.identity if item is not None else {}
    row = IndexRow(
        run_id=run_id,
        plan=plan.name,
        key=item.key if item is not None else "",
        model=cell.model.name,
        version=cell.model.version,
        model_digest=identity.get("model_digest", ""),
        data=cell.data.name,
        data_digest=identity.get("data_digest", ""),
        audit=cell.audit.name,
        kind=cell.audit.kind,
        status=status,
        seconds=seconds,
        reason=reason,
        metrics=metrics,
    )
    append_rows(output, [row])

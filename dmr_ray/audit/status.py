"""``dmr-ray audit status``: the plan's matrix (model versions × data/audit) and what is done.

A cell is ``done`` (completion marker), ``running`` (a live lease), ``failed`` (its last
recorded run failed), ``pending`` (never finished) or ``error`` (it cannot be keyed: an input
is missing or its configuration is invalid).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dmr_ray.audit.cells import expand_cells, key_cells
from dmr_ray.audit.index import read_index
from dmr_ray.audit.lease import current_lease
from dmr_ray.audit.output import Output
from dmr_ray.audit.plan import AuditPlan
from dmr_ray.audit.runner import is_complete


@dataclass(frozen=True)
class CellState:
    """One cell of the matrix."""

    model: str
    """``name@version``."""
    column: str
    """``data / audit``."""
    key: str
    state: str
    detail: str = ""


@dataclass(frozen=True)
class PlanStatus:
    """Every cell's state, in plan order."""

    cells: tuple[CellState, ...]

    def counts(self) -> dict[str, int]:
        """Cells per state."""
        counts: dict[str, int] = {}
        for cell in self.cells:
            counts[cell.state] = counts.get(cell.state, 0) + 1
        return counts

    def matrix(self) -> str:
        """Rows: model versions; columns: data / audit; entries: state and key prefix."""
        rows = list(dict.fromkeys(c.model for c in self.cells))
        columns = list(dict.fromkeys(c.column for c in self.cells))
        entry = {(c.model, c.column): f"{c.state} {c.key[:8]}".strip() for c in self.cells}
        table = [["model", *columns]] + [[r, *(entry.get((r, col), "—") for col in columns)] for r in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(columns) + 1)]
        lines = ["  ".join(text.ljust(w) for text, w in zip(line, widths, strict=True)).rstrip() for line in table]
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.counts().items()))
        return "\n".join([*lines, "", counts])


def plan_status(plan: AuditPlan) -> PlanStatus:
    """The state of every cell of ``plan`` (reads markers, leases and the index; runs nothing)."""
    output = Output(plan.output)
    cells = expand_cells(plan)
    keyed, unkeyed = key_cells(cells)
    index = read_index(output).to_pylist()
    last = {row["key"]: row for row in index}
    now = time.time()
    states = {}
    for item in keyed:
        lease = current_lease(output, item.key)
        if is_complete(output, item.key):
            state, detail = "done", ""
        elif lease is not None and not lease.free(now):
            state, detail = "running", lease.owner
        elif item.key in last and last[item.key]["status"] == "failed":
            state, detail = "failed", last[item.key]["reason"]
        else:
            state, detail = "pending", ""
        states[item.cell.ident] = CellState(item.cell.model.label, _column(item.cell), item.key, state, detail)
    for cell, reason in unkeyed:
        states[cell.ident] = CellState(cell.model.label, _column(cell), "", "error", reason)
    return PlanStatus(tuple(states[c.ident] for c in cells))


def _column(cell) -> str:
    return f"{cell.data.name} / {cell.audit.name}"

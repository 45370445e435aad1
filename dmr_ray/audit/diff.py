"""``dmr-ray audit diff``: what changed between two model versions.

Cells of the two versions are joined on (model name, data, audit, configuration digest); each
joined pair of complete cells is compared by its audit kind's ``diff`` hook
(:class:`~dmr_ray.audit.kinds.AuditKind`). The result is a table per pair for the terminal and
an HTML page (``index.html``) with each kind's figure, written to a local directory.
"""

from __future__ import annotations

import html
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dmr_ray._atomic import write_text_atomic
from dmr_ray.audit.cells import CELLS, OUT, KeyedCell, expand_cells, key_cells
from dmr_ray.audit.kinds import KindDiff, audit_kind
from dmr_ray.audit.output import Output
from dmr_ray.audit.plan import AuditPlan
from dmr_ray.audit.runner import is_complete
from dmr_ray.errors import InputError


@dataclass(frozen=True)
class CellDiff:
    """One joined pair of cells.

    Attributes
    ----------
    model, data, audit : str
    from_key, to_key : str
    diff : KindDiff or None
        None when a cell is not complete (``missing`` says which).
    missing : str
    """

    model: str
    data: str
    audit: str
    from_key: str
    to_key: str
    diff: KindDiff | None
    missing: str = ""

    @property
    def title(self) -> str:
        return f"{self.model} × {self.data} × {self.audit}"


@dataclass(frozen=True)
class PlanDiff:
    """Every joined pair of two versions, and where the page is."""

    from_version: str
    to_version: str
    cells: tuple[CellDiff, ...]
    page: Path

    def text(self) -> str:
        """The terminal report: per pair, its summary lines and table."""
        blocks = []
        for cell in self.cells:
            head = f"== {cell.title}: {self.from_version} ({cell.from_key[:8]}) → {self.to_version} ({cell.to_key[:8]})"
            if cell.diff is None:
                blocks.append(f"{head}\n{cell.missing}")
                continue
            table = format_table(cell.diff.header, cell.diff.rows)
            blocks.append("\n".join([head, *cell.diff.summary, table]))
        return "\n\n".join([*blocks, f"page: {self.page}"])


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def format_table(header: tuple[str, ...], rows: tuple[tuple[object, ...], ...]) -> str:
    """A plain-text table with aligned columns."""
    lines = [list(header)] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(t.ljust(w) for t, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def join_versions(plan: AuditPlan, from_version: str, to_version: str) -> list[tuple[KeyedCell, KeyedCell]]:
    """Pairs of keyed cells of the two versions with the same model name, data, audit and config.

    Raises
    ------
    InputError
        When a version is not in the plan, or no cells join.
    """
    versions = {m.version for m in plan.models}
    for version in (from_version, to_version):
        if version not in versions:
            raise InputError(f"version {version!r} is not in the plan (versions: {sorted(versions)})")
    keyed, _ = key_cells(c for c in expand_cells(plan) if c.model.version in (from_version, to_version))

    def join_key(item: KeyedCell) -> tuple[str, str, str, str]:
        cell = item.cell
        return (cell.model.name, cell.data.name, cell.audit.name, item.identity["config_digest"])

    before = {join_key(k): k for k in keyed if k.cell.model.version == from_version}
    after = {join_key(k): k for k in keyed if k.cell.model.version == to_version}
    pairs = [(before[j], after[j]) for j in before if j in after]
    if not pairs:
        raise InputError(f"no cells of {from_version} and {to_version} share model, data, audit and configuration")
    return pairs


def diff_plan(plan: AuditPlan, from_version: str, to_version: str, out: Path | None = None) -> PlanDiff:
    """Compare two versions cell by cell and write the HTML page.

    Parameters
    ----------
    out
        Directory of the page and figures (default: ``<output>/diffs/<from>-vs-<to>`` for a
        local output, ``./diff-<from>-vs-<to>`` otherwise).

    Returns
    -------
    PlanDiff
    """
    output = Output(plan.output)
    name = f"{from_version}-vs-{to_version}"
    out = out or (output.local("diffs", name) if output.is_local else Path(f"diff-{name}"))
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="dmr_ray-diff-") as scratch:
        for i, (a, b) in enumerate(join_versions(plan, from_version, to_version)):
            cell = a.cell
            missing = [f"{k.cell.model.label} ({k.key[:8]})" for k in (a, b) if not is_complete(output, k.key)]
            if missing:
                note = f"not complete: {', '.join(missing)}; run `dmr-ray audit run` first"
                results.append(CellDiff(cell.model.name, cell.data.name, cell.audit.name, a.key, b.key, None, note))
                continue
            old, new = (_local_out(output, k.key, Path(scratch)) for k in (a, b))
            figure = out / f"figure-{i}.png"
            diff = audit_kind(cell.audit.kind).diff(old, new, figure, (from_version, to_version))
            results.append(CellDiff(cell.model.name, cell.data.name, cell.audit.name, a.key, b.key, diff))
    page = out / "index.html"
    result = PlanDiff(from_version, to_version, tuple(results), page)
    write_text_atomic(page, _page(plan, result))
    return result


def _local_out(output: Output, key: str, scratch: Path) -> Path:
    """The cell's pipeline output as a local directory (downloaded for URL outputs)."""
    if output.is_local:
        return output.local(CELLS, key, OUT)
    target = scratch / key
    output.fs.get(output.path(CELLS, key, OUT), str(target), recursive=True)
    return target


def _page(plan: AuditPlan, result: PlanDiff) -> str:
    e = html.escape
    sections = []
    for cell in result.cells:
        body = f"<p>{e(cell.missing)}</p>"
        if cell.diff is not None:
            summary = "".join(f"<li>{e(line)}</li>" for line in cell.diff.summary)
            head = "".join(f"<th>{e(h)}</th>" for h in cell.diff.header)
            rows = "".join("<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in row) + "</tr>" for row in cell.diff.rows)
            figure = f'<img src="{e(cell.diff.figure.name)}" alt="figure">' if cell.diff.figure else ""
            body = f"<ul>{summary}</ul><table><tr>{head}</tr>{rows}</table>{figure}"
        keys = f"{result.from_version}: {cell.from_key} → {result.to_version}: {cell.to_key}"
        sections.append(f"<h2>{e(cell.title)}</h2><p class='keys'>{e(keys)}</p>{body}")
    title = f"{plan.name}: {result.from_version} → {result.to_version}"
    style = "body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}.keys{color:#666}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{style}</style>"
        f"</head><body><h1>{e(title)}</h1>{''.join(sections)}</body></html>\n"
    )

"""The HTML report of a Deep MR audit: ``<out>/report/index.html`` and its PNG figures.

The page is self-contained (inline CSS, no scripts, no network) and links its figures by
relative paths, so the ``report`` folder can be moved or archived whole. Every string that
comes from data (task names, sequence ids, configuration values) is HTML-escaped.

Figures are written first, each under a temporary name and renamed into place, then the page
the same way, so a reader never sees a half-written page nor a page that links a missing
figure; figures left over from an earlier report are removed afterwards.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pyarrow as pa
from matplotlib.figure import Figure

from dmr_ray._atomic import write_atomic, write_text_atomic
from dmr_ray.errors import InputError
from dmr_ray.report.attribution import METRIC_HEADER, example_tracks_figure, metric_rows, metrics_figure
from dmr_ray.report.data import CalibrationCurves, ScatterData
from dmr_ray.report.direction import DirectionStatus, direction_calls, direction_status, row_key
from dmr_ray.report.figures import (
    SIGNIFICANCE_NOTE,
    calibration_figure,
    filter_table,
    forest_figure,
    format_error,
    format_p,
    format_value,
    heatmap_figure,
    scatter_figure,
    significance_stars,
)

ALPHA = 0.05
"""Significance level of the headline summary."""

REPORT_VERSION = 2
"""Version of the report's reading of an audit's tables, part of the report stage's identity so
that a rerun rewrites the report of an older version. 2: direction calls test dominance."""

PREFERRED_METHOD = "weighted_median"
"""The primary method when none is named and this one is present: the Deep MR audit's default
estimator (``dmr_ray.deepmr.config.DEFAULT_ESTIMATOR``; the report, a building block, does not
import the pipeline's configuration)."""

FIGURE_DPI = 110

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
.sig { color: #b2182b; font-weight: 600; }
.note { background: #f7f7f2; border-left: 4px solid #c9c58f; padding: .5em 1em; }
.muted { color: #777; }
"""


def write_report(
    out_dir: Path,
    *,
    global_table: pa.Table,
    local_table: pa.Table,
    scatter: Sequence[ScatterData] = (),
    calibration: CalibrationCurves | None = None,
    run_info: Mapping[str, Any] = MappingProxyType({}),
    primary_method: str | None = None,
    attribution: Mapping[str, Any] | None = None,
    effect_sd: Mapping[str, float] | None = None,
) -> Path:
    """Write the report of an audit to ``out_dir/report``.

    Parameters
    ----------
    out_dir
        The audit's output directory.
    global_table
        ``global_effects`` (one row per exposure, outcome and MR method).
    local_table
        ``local_effects`` (one row per region, exposure, outcome and MR method).
    scatter
        Regions whose instruments are drawn as scatter plots.
    calibration
        Calibration curves of the predictor, or None for no calibration section.
    run_info
        Free-form run information shown in order (configuration, timings, instrument counts,
        ...); nested mappings become nested tables.
    primary_method
        MR method of the headline summary and forest plots; default ``deepmr`` when present,
        else the first method of ``global_table``.
    attribution
        The attribution stage's summary (``attribution.json``), or None for no such section.
    effect_sd
        Each task's mutational SD (:func:`dmr_ray.deepmr.pipeline.effect_sd`), for the test of
        which direction of a pair dominates; None for no such test.

    Returns
    -------
    pathlib.Path
        The path of ``index.html``.

    Raises
    ------
    InputError
        When ``primary_method`` is named but absent from a non-empty ``global_table``.
    """
    report_dir = Path(out_dir) / "report"
    figures = _FigureWriter(report_dir / "figures")
    methods = list(dict.fromkeys(global_table.column("method").to_pylist()))
    primary = _primary_method(methods, primary_method)
    methods.sort(key=lambda m: m != primary)  # the primary method's heatmap first
    rows = filter_table(global_table, method=primary).to_pylist() if primary else []
    status = direction_status(global_table, effect_sd, alpha=ALPHA)
    sections = [
        _summary_section(rows, primary, status),
        _direction_section(global_table, local_table, effect_sd),
        _how_to_read_section(),
        _heatmap_section(figures, global_table, methods),
        _forest_section(figures, rows, local_table, primary),
        _scatter_section(figures, scatter),
        _global_table_section(global_table, status),
    ]
    if calibration is not None:
        sections.append(_calibration_section(figures, calibration))
    if attribution is not None:
        sections.append(_attribution_section(figures, attribution))
    sections.append(_run_info_section(run_info, local_table))
    index = report_dir / "index.html"
    write_text_atomic(index, _page(sections))
    figures.remove_stale()
    return index


# --- files -------------------------------------------------------------------------------------


class _FigureWriter:
    """Saves figures as PNGs under one directory and renders their ``<figure>`` elements."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.written: set[str] = set()
        directory.mkdir(parents=True, exist_ok=True)

    def add(self, fig: Figure, kind: str, *parts: str, caption: str) -> str:
        """Save ``fig`` under a name derived from ``kind`` and ``parts``; return its HTML."""
        name = _file_name(kind, *parts)
        write_atomic(
            self.directory / name, lambda tmp: fig.savefig(tmp, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
        )
        self.written.add(name)
        alt = " ".join((kind, *parts))
        return (
            f'<figure><img src="figures/{_e(name)}" alt="{_e(alt)}" loading="lazy">'
            f"<figcaption>{caption}</figcaption></figure>"
        )

    def remove_stale(self) -> None:
        """Delete PNGs of earlier reports that this report does not link."""
        for path in self.directory.glob("*.png"):
            if path.name not in self.written:
                path.unlink(missing_ok=True)


def _file_name(kind: str, *parts: str) -> str:
    """A readable, filesystem-safe and collision-free PNG name."""
    slug = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", p).strip("_.")[:40] or "x" for p in (kind, *parts))
    digest = hashlib.sha1("\x1f".join((kind, *parts)).encode()).hexdigest()[:8]
    return f"{slug}-{digest}.png"


# --- page --------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(sections: list[str]) -> str:
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Deep MR audit report</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>Deep MR audit report</h1>\n{body}\n</body>\n</html>\n"
    )


def _p(p_value: float | None) -> str:
    return _e(format_p(p_value))


def _section(title: str, anchor: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_e(title)}</h2>\n{body}\n</section>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    """An HTML table; cells are already-escaped HTML, header cells are plain text."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>" for c, num in zip(row, numeric, strict=True))
        + "</tr>\n"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _pair(row: Mapping[str, Any]) -> str:
    return f"{_e(row['exposure'])} → {_e(row['outcome'])}"


def _ci(row: Mapping[str, Any], low: str = "ci_low", high: str = "ci_high") -> str:
    return f"{format_value(row[low])} to {format_value(row[high])}"


def _is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _is_significant(row: Mapping[str, Any]) -> bool:
    return _is_finite(row["estimate"]) and _is_finite(row["p_value"]) and row["p_value"] < ALPHA


def _primary_method(methods: list[str], requested: str | None) -> str | None:
    if requested is not None:
        if methods and requested not in methods:
            raise InputError(
                f"primary_method {requested!r} is not in the global effects table (methods: {', '.join(methods)})"
            )
        return requested
    if PREFERRED_METHOD in methods:
        return PREFERRED_METHOD
    return methods[0] if methods else None


# --- sections ----------------------------------------------------------------------------------


def _summary_section(
    rows: list[dict[str, Any]], primary: str | None, status: Mapping[tuple[str, str, str], DirectionStatus]
) -> str:
    if not rows:
        return _section("Summary", "summary", "<p>No global causal effects were estimated.</p>")
    significant = sorted((r for r in rows if _is_significant(r)), key=lambda r: r["p_value"])
    not_dominant = [r for r in significant if status[row_key(r)].status == "not_dominant"]
    learned = [r for r in significant if status[row_key(r)].status != "not_dominant"]
    missing = [r for r in rows if not _is_finite(r["estimate"])]
    rest = [r for r in rows if _is_finite(r["estimate"]) and not _is_significant(r)]
    meta = f"{_e(rows[0]['meta_method'])} random-effects pooling, {_e(rows[0]['test'])} test"
    parts = [
        f"<p>Primary MR method: <b>{_e(primary)}</b> ({meta}). "
        f"<b>{len(significant)}</b> of {len(rows)} exposure → outcome pairs have a pooled "
        f"causal effect significant at p &lt; {ALPHA} (not adjusted for multiple testing)"
        + (f"; {len(not_dominant)} of them do not dominate their reverse direction" if not_dominant else "")
        + ".</p>"
    ]
    if learned:
        replicate = all(r.get("inference") == "replicate" for r in rows)
        parts.append(
            "<p>What the model learned (significant pairs, most significant first; replicate test"
            + ("; each dominates its reverse direction where both were audited" if replicate else "")
            + "):</p>"
            if replicate
            else "<p>Significant under pooled inference (no replicate test, so not a direction finding; "
            "see Direction calls), most significant first:</p>"
        )
        parts.append(
            _table(
                ["pair", "direction", "effect", "95 % CI", "p", "regions pooled"],
                [
                    [
                        _pair(r),
                        "increases" if r["estimate"] > 0 else "decreases",
                        f'<span class="sig">{format_value(r["estimate"])}{significance_stars(r["p_value"])}</span>',
                        _ci(r),
                        _p(r["p_value"]),
                        f"{r['k']} of {r['n_regions']}",
                    ]
                    for r in learned
                ],
                [False, False, True, True, True, True],
            )
        )
    if not_dominant:
        parts.append(
            "<p>Significant, but not a causal direction: the standardized effect is not "
            "significantly larger than the reverse direction's (see Direction calls): "
            + "; ".join(_not_dominant_html(r, status[row_key(r)]) for r in not_dominant)
            + ".</p>"
        )
    if rest:
        parts.append(
            "<p>Not significant: "
            + "; ".join(f"{_pair(r)} ({format_value(r['estimate'])}, p = {_p(r['p_value'])})" for r in rest)
            + ".</p>"
        )
    if missing:
        parts.append("<p>Not estimable (no region with an estimate): " + "; ".join(_pair(r) for r in missing) + ".</p>")
    return _section("Summary", "summary", "\n".join(parts))


def _not_dominant_html(row: Mapping[str, Any], status: DirectionStatus) -> str:
    d = status.dominance
    assert d is not None  # not_dominant is decided by a dominance test
    return (
        f"{_pair(row)} ({format_value(row['estimate'])}, p = {_p(row['p_value'])}; standardized "
        f"{format_value(d.forward)} against {format_value(d.reverse)} the other way)"
    )


def _direction_section(global_table: pa.Table, local_table: pa.Table, effect_sd: Mapping[str, float] | None) -> str:
    calls = direction_calls(global_table, local_table, alpha=ALPHA, effect_sd=effect_sd)
    if not calls:
        return _section("Direction calls", "direction", "<p>No pair was audited in both directions.</p>")
    items = "\n".join(f'<li class="{"sig" if c.verdict == "supported" else "muted"}">{_e(c.text)}</li>' for c in calls)
    intro = (
        "<p>Per pair of tasks audited both ways, the direction the audit supports and on what "
        "evidence. A direction is a finding only under the replicate test (inference across "
        "ensemble members), and only where it dominates the other way: its effect, standardized by "
        "the two tasks' mutational SDs, is significantly larger than the reverse's, paired over "
        "the members (without recorded SDs: where no method is significant the other way).</p>"
    )
    return _section("Direction calls", "direction", f"{intro}<ul>\n{items}\n</ul>")


def _how_to_read_section() -> str:
    body = """<div class="note"><ul>
<li>For each exposure → outcome pair of model tasks, the model's predicted effects of single
substitutions (mutant − reference) on the exposure task serve as instruments for its effects on
the outcome task. In each region an MR estimator gives a <i>local</i> causal effect; a
random-effects meta-analysis pools the regions into the <i>global</i> effect.</li>
<li>An effect of 0.5 means: in the model, a mutation that raises the exposure prediction by one
unit raises the outcome prediction by 0.5 on average, through the exposure. Positive effects are
red, negative blue in the heatmaps. This is what the <i>model</i> learned, not a biological
finding.</li>
<li>The 95 % CI is the uncertainty of the pooled (mean) effect. The band pooled ± 2τ in the
forest plots is something else: the spread of the true local effects between regions (τ is
their standard deviation, τ² their variance). A wide band with a narrow CI means the effect is
well determined on average but differs between regions.</li>
<li>p-values are not adjusted for the number of pairs and methods tested: among many pairs
some will be significant by chance. Significance says nothing about the size of an effect.</li>
<li>Regions with too few instruments or a degenerate fit are skipped; their counts and reasons
are under Run information.</li>
</ul></div>"""
    return _section("How to read this report", "how-to-read", body)


def _heatmap_section(figures: _FigureWriter, global_table: pa.Table, methods: list[str]) -> str:
    if not methods:
        return _section("Global causal effects", "heatmaps", "<p>No global effects to draw.</p>")
    body = "\n".join(
        figures.add(heatmap_figure(global_table, m), "heatmap", m, caption=_heatmap_caption(m)) for m in methods
    )
    return _section("Global causal effects", "heatmaps", body)


def _heatmap_caption(method: str) -> str:
    return (
        f"Pooled causal effect of each exposure (row) on each outcome (column) for MR method "
        f"<b>{_e(method)}</b>; red positive, blue negative; grey: the diagonal, or a pair not "
        f"run or without an estimate (n/a). {_e(SIGNIFICANCE_NOTE)}."
    )


def _forest_section(
    figures: _FigureWriter, rows: list[dict[str, Any]], local_table: pa.Table, primary: str | None
) -> str:
    title = "Local effects per pair"
    if not rows or primary is None:  # rows come from the primary method: both or neither
        return _section(title, "forest", "<p>No pairs to draw.</p>")
    local = filter_table(local_table, method=primary)
    intro = (
        f"<p>Per pair, the local causal effects of the regions (method <b>{_e(primary)}</b>) "
        f"with their 95 % CIs, the pooled estimate (diamond: its 95 % CI) and the band "
        f"pooled ± 2τ (the between-region spread, not a CI).</p>"
    )
    items = [
        figures.add(
            forest_figure(filter_table(local, exposure=r["exposure"], outcome=r["outcome"]), r),
            "forest",
            primary,
            r["exposure"],
            r["outcome"],
            caption=f"{_pair(r)}: pooled {format_value(r['estimate'])} "
            f"(95 % CI {_ci(r)}), τ = {format_value(r['tau'])}, "
            f"τ² = {format_value(r['tau2'])}.",
        )
        for r in rows
    ]
    return _section(title, "forest", intro + "\n".join(items))


def _scatter_section(figures: _FigureWriter, scatter: Sequence[ScatterData]) -> str:
    title = "Instruments of example regions"
    if not scatter:
        return _section(title, "scatter", '<p class="muted">No example regions were selected.</p>')
    items = [
        figures.add(
            scatter_figure(d),
            "scatter",
            str(i),
            d.exposure,
            d.outcome,
            d.seq_id,
            d.region or "",
            caption=f"{_e(d.exposure)} → {_e(d.outcome)} in {_e(d.seq_id)}"
            + (f" region {_e(d.region)}" if d.region is not None else "")
            + ": each point is one substitution, bars ±1.96·SE; lines are the "
            "IVW (through the origin) and MR-Egger fits.",
        )
        for i, d in enumerate(scatter)
    ]
    return _section(title, "scatter", "\n".join(items))


_GLOBAL_COLUMNS = (
    ("method", lambda r: _e(r["method"]), False),
    ("exposure", lambda r: _e(r["exposure"]), False),
    ("outcome", lambda r: _e(r["outcome"]), False),
    ("estimate", lambda r: format_value(r["estimate"]) + significance_stars(r["p_value"]), True),
    ("SE", lambda r: format_value(r["se"]), True),
    ("95 % CI", _ci, True),
    ("p", lambda r: _p(r["p_value"]), True),
    ("τ", lambda r: format_value(r["tau"]), True),
    ("τ²", lambda r: format_value(r["tau2"]), True),
    ("I² (%)", lambda r: format_value(r["i2"], 2), True),
    ("Q p", lambda r: _p(r["q_p"]), True),
    ("95 % PI", lambda r: _ci(r, "pi_low", "pi_high"), True),
    ("regions pooled", lambda r: f"{r['k']} of {r['n_regions']}", True),
)


_STATUS_TEXT = {"finding": "finding", "not_dominant": "not dominant", "significant": "significant"}


def _global_table_section(global_table: pa.Table, status: Mapping[tuple[str, str, str], DirectionStatus]) -> str:
    title = "Global effects table"
    if not global_table.num_rows:
        return _section(title, "global-table", "<p>No global effects.</p>")
    rows = sorted(global_table.to_pylist(), key=lambda r: (r["method"], r["exposure"], r["outcome"]))
    pooling = ", ".join(sorted({f"{r['meta_method']} / {r['test']}" for r in rows}))
    intro = (
        f"<p>Random-effects pooling (τ² estimator / test): {_e(pooling)}. PI: prediction "
        f"interval for the effect in a new region. {_e(SIGNIFICANCE_NOTE)}. Direction: "
        "finding (significant, and dominates the reverse direction), not dominant (significant, but "
        "its standardized effect is not significantly larger than the reverse's), significant (no "
        "dominance testable).</p>"
    )
    table = _table(
        [*(h for h, _, _ in _GLOBAL_COLUMNS), "direction"],
        [[*(cell(r) for _, cell, _ in _GLOBAL_COLUMNS), _STATUS_TEXT.get(status[row_key(r)].status, "")] for r in rows],
        [*(num for _, _, num in _GLOBAL_COLUMNS), False],
    )
    return _section(title, "global-table", intro + table)


def _calibration_section(figures: _FigureWriter, curves: CalibrationCurves) -> str:
    figure = figures.add(
        calibration_figure(curves),
        "calibration",
        curves.method,
        caption="Observed against expected proportions of the predictive "
        "distributions per task; the dotted diagonal is perfect calibration.",
    )
    after = curves.error_after
    table = _table(
        ["task", "error before", "error after"],
        [
            [_e(task), format_error(curves.error_before[i]), format_error(after[i]) if after is not None else "n/a"]
            for i, task in enumerate(curves.tasks)
        ],
        [False, True, True],
    )
    return _section(
        "Calibration",
        "calibration",
        f"<p>Recalibration: <b>{_e(curves.method)}</b>. Calibration error: mean absolute "
        f"difference between observed and expected proportions (0 is perfect), "
        f"measured on held-out labelled sequences.</p>" + _residual_miscalibration(curves) + figure + table,
    )


RESIDUAL_ERROR = 0.05
"""Calibration error above which a task is reported as still miscalibrated."""


def _residual_miscalibration(curves: CalibrationCurves) -> str:
    """A warning naming tasks the map could not fix, and why that happens."""
    errors = curves.error_after if curves.error_after is not None else curves.error_before
    bad = [task for task, error in zip(curves.tasks, errors, strict=True) if error > RESIDUAL_ERROR]
    if not bad:
        return ""
    return (
        f"<p class='warn'><b>Still miscalibrated</b> (error &gt; {RESIDUAL_ERROR}): "
        f"{_e(', '.join(bad))}. The spread between ensemble members (or dropout passes) "
        "reflects model uncertainty only; where members agree, no monotone map of their "
        "predictive CDF can create the missing spread. Effect standard errors of these tasks "
        "are too small: consider variance scaling, more members, or wider thresholds.</p>"
    )


def _attribution_section(figures: _FigureWriter, summary: Mapping[str, Any]) -> str:
    title = "How far can this model's attributions be trusted"
    if not summary.get("truth"):
        return _section(
            title,
            "attribution",
            "<p class='note'>No motif positions were given (<code>attribution.motifs</code>), so the "
            "attributions cannot be checked. This check is only meaningful where the true motif "
            "positions are known, e.g. on sequences simulated with planted motifs; on real "
            "sequences a high attribution is not evidence of a motif.</p>",
        )
    intro = (
        f"<p>Per sequence, the positions ranked by each attribution method are compared with the "
        f"planted motif positions that drive each output (AUROC: 0.5 is a random ranking, 1 "
        f"perfect; AUPRC against the random level in the table), on {summary['n_sequences']} "
        f"sequences and {summary['n_replicates']} replicates (mean ± SD over replicates; "
        f"ensemble: the attribution of the replicate-mean model). A method that ranks motif "
        f"positions poorly here will also mislead on sequences whose motifs are unknown.</p>"
    )
    table = _table(METRIC_HEADER, [[_e(c) for c in row] for row in metric_rows(summary)], [False, False] + [True] * 6)
    metrics = figures.add(
        metrics_figure(summary),
        "attribution",
        "metrics",
        caption="AUROC and AUPRC per method and output: bars the replicate means with ±1 SD, "
        "dots the replicates, diamonds the ensemble attribution; dashed lines: random.",
    )
    tracks = figures.add(
        example_tracks_figure(summary),
        "attribution",
        "example",
        caption="One sequence's ensemble attribution per position; shaded: planted motif positions.",
    )
    return _section(title, "attribution", intro + table + metrics + tracks)


# --- run information -----------------------------------------------------------------------------


def _run_info_section(run_info: Mapping[str, Any], local_table: pa.Table) -> str:
    info = _mapping_html(run_info) if run_info else '<p class="muted">No run information given.</p>'
    return _section(
        "Run information", "run-info", info + "\n<h3>Regions fitted and skipped</h3>\n" + _regions_html(local_table)
    )


def _mapping_html(mapping: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(key)}</th><td>{_value_html(value)}</td></tr>\n" for key, value in mapping.items())
    return f"<table>\n{rows}</table>"


def _value_html(value: Any) -> str:
    if isinstance(value, Mapping):
        return _mapping_html(value) if value else "—"
    if isinstance(value, float):
        return format_value(value, 4)
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_html(v) for v in value) or "—"
    return _e(value)


def _regions_html(local_table: pa.Table) -> str:
    """Fits per method and reason, with instrument counts, from ``local_effects``."""
    if not local_table.num_rows:
        return "<p>No local effects.</p>"
    grouped = local_table.group_by(["method", "reason"]).aggregate(
        [
            ("n_instruments", "count"),
            ("n_instruments", "min"),
            ("n_instruments", "max"),
            ("n_instruments", "mean"),
            ("n_unusable", "sum"),
        ]
    )
    rows = sorted(grouped.to_pylist(), key=lambda r: (r["method"], r["reason"] != "ok", r["reason"]))
    table = _table(
        [
            "method",
            "outcome of the fit",
            "region fits",
            "instruments per region (min–max, mean)",
            "unusable substitutions",
        ],
        [
            [
                _e(r["method"]),
                _e(r["reason"]),
                str(r["n_instruments_count"]),
                f"{r['n_instruments_min']}–{r['n_instruments_max']}, {format_value(r['n_instruments_mean'])}",
                str(r["n_unusable_sum"]),
            ]
            for r in rows
        ],
        [False, False, True, True, True],
    )
    return (
        "<p>One fit per region, exposure → outcome pair and method. <i>ok</i>: fitted; "
        "<i>too_few_instruments</i>: fewer instruments than the method needs; "
        "<i>degenerate</i>: no spread to estimate from; <i>not_converged</i>: the robust fit "
        "did not converge (values kept as reported). Unusable substitutions (e.g. a zero "
        "exposure effect) are excluded before MR.</p>" + table
    )

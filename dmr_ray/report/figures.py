"""Figures of the Deep MR report, each a :class:`matplotlib.figure.Figure`.

No pyplot: figures are built as ``Figure`` objects, so nothing leaks into matplotlib's global
state and no backend needs selecting (``Figure.savefig`` renders PNG with Agg). Every figure
function accepts empty or all-NaN inputs and then returns a figure with one "no data" panel
that says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dmr_ray.report.data import CalibrationCurves, ScatterData

Z95 = 1.959963984540054
"""Normal quantile of a two-sided 95 % interval."""

SIGNIFICANCE_LEVELS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))
"""(threshold, mark) pairs, most significant first."""

SIGNIFICANCE_NOTE = (
    "* p < 0.05   ** p < 0.01   *** p < 0.001 (two-sided p of the pooled estimate; not adjusted for multiple testing)"
)

EFFECT_LABEL = "effect (mutant − reference)"

ANNOTATE_MAX_TASKS = 30
"""Heatmap cells are annotated up to this many tasks; beyond, the text would not fit."""

MAX_HEATMAP_INCHES = 25.0
"""Upper bound on the heatmap's height, whatever the number of tasks."""

_CMAP = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#e8e8e8")


def significance_stars(p_value: float | None) -> str:
    """The significance mark of a p-value (see :data:`SIGNIFICANCE_LEVELS`); ``""`` if none."""
    if p_value is None or not math.isfinite(p_value):
        return ""
    return next((mark for level, mark in SIGNIFICANCE_LEVELS if p_value < level), "")


def format_value(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; ``"n/a"`` for None or NaN."""
    if value is None or math.isnan(float(value)):
        return "n/a"
    return f"{float(value):.{digits}g}"


def format_p(p_value: float | None) -> str:
    """A p-value with two significant digits; underflow to 0 is shown as ``"<1e-300"``."""
    if p_value == 0:
        return "<1e-300"
    return format_value(p_value, 2)


def format_error(value: float | None) -> str:
    """A calibration error (in [0, 0.5]) to three decimals, tiny values shown as 0."""
    return format_value(None if value is None else round(float(value), 3))


def filter_table(table: pa.Table, **equal: str) -> pa.Table:
    """The rows of ``table`` whose string columns equal the given values."""
    mask = None
    for name, value in equal.items():
        match = pc.equal(table.column(name), value)
        mask = match if mask is None else pc.and_(mask, match)
    return table if mask is None else table.filter(mask)


def float_column(table: pa.Table, name: str) -> np.ndarray:
    """Column ``name`` as float64 with nulls as NaN."""
    return table.column(name).cast(pa.float64()).fill_null(np.nan).to_numpy()


def no_data_figure(title: str, reason: str) -> Figure:
    """A one-panel figure that says there is nothing to draw, and why."""
    fig = Figure(figsize=(6, 2.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, f"no data\n{reason}", ha="center", va="center", fontsize=11, color="0.35", transform=ax.transAxes)
    return fig


# --- heatmap -----------------------------------------------------------------------------------


def heatmap_figure(global_table: pa.Table, method: str) -> Figure:
    """Exposure × outcome matrix of global causal effects for one MR method.

    Parameters
    ----------
    global_table
        ``global_effects`` table (columns exposure, outcome, method, estimate, p_value, ...).
    method
        The per-region MR method whose pooled estimates are drawn.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes (matrix and colour bar): a diverging colour map centred at 0, each estimated
        cell annotated with its estimate and significance marks (:data:`SIGNIFICANCE_NOTE`),
        NaN estimates as ``n/a``, the diagonal and pairs not run left blank (grey).
    """
    rows = filter_table(global_table, method=method).to_pylist()
    title = f"Global causal effects · {method}"
    if not rows:
        return no_data_figure(title, f"no global effects for method {method!r}")
    tasks = list(dict.fromkeys(name for row in rows for name in (row["exposure"], row["outcome"])))
    index = {task: i for i, task in enumerate(tasks)}
    matrix = np.full((len(tasks), len(tasks)), np.nan)
    for row in rows:
        matrix[index[row["exposure"]], index[row["outcome"]]] = _as_float(row["estimate"])
    np.fill_diagonal(matrix, np.nan)
    finite = np.abs(matrix[np.isfinite(matrix)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    size = min(2.5 + 0.75 * len(tasks), MAX_HEATMAP_INCHES)
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=_CMAP, vmin=-limit, vmax=limit)
    fig.colorbar(image, ax=ax, shrink=0.8, label="global causal effect (pooled estimate)")
    if len(tasks) <= ANNOTATE_MAX_TASKS:
        _annotate_cells(ax, rows, index, limit)
    ticks = range(len(tasks))
    ax.set_xticks(ticks, labels=tasks, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, labels=tasks)
    ax.set_xlabel("outcome")
    ax.set_ylabel("exposure")
    ax.set_title(title)
    fig.supxlabel(SIGNIFICANCE_NOTE, fontsize="small", color="0.3")
    return fig


def _annotate_cells(ax: Axes, rows: list[dict[str, Any]], index: dict[str, int], limit: float) -> None:
    fontsize = 9 if len(index) <= 8 else 7
    for row in rows:
        i, j = index[row["exposure"]], index[row["outcome"]]
        if i == j:
            continue
        estimate = _as_float(row["estimate"])
        text = format_value(estimate) + significance_stars(_as_float(row["p_value"]))
        dark = math.isfinite(estimate) and abs(estimate) > 0.6 * limit
        ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color="white" if dark else "black")


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


# --- scatter -----------------------------------------------------------------------------------


def scatter_figure(data: ScatterData) -> Figure:
    """Outcome against exposure effects of one region's instruments, with the MR fits.

    Instruments are oriented so that the exposure effect is ≥ 0 (both effects of an instrument
    with ``bx < 0`` change sign), as MR-Egger is fitted; the IVW line is unaffected.

    Parameters
    ----------
    data
        The region's instruments and fitted IVW / Egger lines.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: points with ±1.96·SE error bars in both directions, the IVW line through the
        origin and the Egger line (each drawn when its parameters are finite), a legend.
    """
    where = f"{data.seq_id}" + (f" · region {data.region}" if data.region is not None else "")
    title = f"{data.exposure} → {data.outcome}\n{where}"
    ok = np.isfinite(data.bx) & np.isfinite(data.by) & np.isfinite(data.bxse) & np.isfinite(data.byse)
    if not ok.any():
        return no_data_figure(title, "no instrument with finite effects and SEs")
    sign = np.where(data.bx[ok] < 0, -1.0, 1.0)
    x, y = data.bx[ok] * sign, data.by[ok] * sign
    xerr, yerr = Z95 * data.bxse[ok], Z95 * data.byse[ok]
    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.8", lw=0.8)
    ax.axvline(0.0, color="0.8", lw=0.8)
    ax.errorbar(
        x,
        y,
        xerr=xerr,
        yerr=yerr,
        fmt="o",
        ms=4,
        color="0.2",
        ecolor="0.65",
        elinewidth=0.8,
        label=f"instruments (n = {x.size}) ± 1.96·SE",
    )
    line_x = np.array([0.0, float(np.max(x + xerr))])
    if math.isfinite(data.ivw_slope):
        ax.plot(line_x, data.ivw_slope * line_x, color="C0", lw=2, label=f"IVW: slope {format_value(data.ivw_slope)}")
    if math.isfinite(data.egger_slope) and math.isfinite(data.egger_intercept):
        ax.plot(
            line_x,
            data.egger_intercept + data.egger_slope * line_x,
            color="C3",
            lw=2,
            ls="--",
            label=f"MR-Egger: slope {format_value(data.egger_slope)}, intercept {format_value(data.egger_intercept)}",
        )
    ax.set_xlabel(f"{data.exposure} {EFFECT_LABEL}\n(instruments oriented to exposure effect ≥ 0)")
    ax.set_ylabel(f"{data.outcome} {EFFECT_LABEL}")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="best")
    return fig


# --- forest ------------------------------------------------------------------------------------


def forest_figure(local_rows: pa.Table, global_row: Mapping[str, Any] | None, max_regions: int = 40) -> Figure:
    """Local causal effects of one (exposure, outcome, method) and their pooled estimate.

    Parameters
    ----------
    local_rows
        Rows of ``local_effects`` for one exposure, outcome and method (columns seq_id,
        region_start, region_end, exposure, outcome, method, estimate, se, ci_low, ci_high).
    global_row
        The matching row of ``global_effects`` as a mapping, or None.
    max_regions
        At most this many regions are drawn: the most precise (smallest SE) ones.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: regions sorted by estimate with their CIs, the pooled estimate as a diamond
        spanning its CI, and the band pooled estimate ± 2τ (the between-region spread, a
        different thing from the CI; deep_mr.md §13 #11), with τ and τ² given separately
        (#10).
    """
    if global_row is None and not local_rows.num_rows:
        return no_data_figure("Local causal effects", "no local effects and no pooled estimate")
    names = global_row if global_row is not None else local_rows.slice(0, 1).to_pylist()[0]
    title = f"{names['exposure']} → {names['outcome']} · {names['method']}"
    estimate, se = float_column(local_rows, "estimate"), float_column(local_rows, "se")
    with np.errstate(invalid="ignore"):
        usable = np.flatnonzero(np.isfinite(estimate) & np.isfinite(se) & (se > 0))
    shown = usable[np.argsort(se[usable], kind="stable")[:max_regions]]
    shown = shown[np.argsort(estimate[shown], kind="stable")[::-1]]
    pooled = global_row is not None and math.isfinite(_as_float(global_row.get("estimate")))
    if not shown.size and not pooled:
        return no_data_figure(title, f"none of {local_rows.num_rows} regions has an estimate")
    fig = Figure(figsize=(7.5, 2.6 + 0.24 * (shown.size + 2)), layout="constrained")
    ax = fig.add_subplot()
    ticks = _draw_regions(ax, local_rows, shown)
    if pooled and global_row is not None:  # pooled implies a row
        ticks.append(_draw_pooled(ax, global_row))
    ax.set_yticks([y for y, _ in ticks], labels=[label for _, label in ticks], fontsize="small")
    ax.set_ylim(-1, shown.size + 1)
    ax.axvline(0.0, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel(f"causal effect of {names['exposure']} on {names['outcome']}")
    ax.set_title(f"{title}\n{_shown_note(shown.size, usable.size, local_rows.num_rows)}", fontsize="medium")
    handles, labels = ax.get_legend_handles_labels()  # regions, pooled estimate, band
    fig.legend(handles[::-1], labels[::-1], loc="outside lower center", fontsize="small", frameon=False)
    return fig


def _shown_note(n_shown: int, n_usable: int, n_rows: int) -> str:
    note = f"showing {n_shown} of {n_usable} regions with an estimate"
    if n_shown < n_usable:
        note += " (the most precise)"
    if n_rows > n_usable:
        note += f"\n{n_rows - n_usable} region(s) without an estimate are not drawn"
    return note


def _draw_regions(ax: Axes, rows: pa.Table, shown: np.ndarray) -> list[tuple[int, str]]:
    """Draw the shown regions from y = len(shown) down to 1; return (y, label) ticks."""
    if not shown.size:
        return []
    estimate, se = float_column(rows, "estimate")[shown], float_column(rows, "se")[shown]
    low, high = float_column(rows, "ci_low")[shown], float_column(rows, "ci_high")[shown]
    low = np.where(np.isfinite(low), low, estimate - Z95 * se)
    high = np.where(np.isfinite(high), high, estimate + Z95 * se)
    ys = np.arange(shown.size, 0, -1)
    ax.errorbar(
        estimate,
        ys,
        xerr=[np.maximum(estimate - low, 0), np.maximum(high - estimate, 0)],
        fmt="s",
        ms=3.5,
        color="0.25",
        ecolor="0.55",
        elinewidth=1,
        label="region estimate (95 % CI)",
    )
    picked = rows.take(pa.array(shown)).select(["seq_id", "region_start", "region_end"]).to_pylist()
    return [(int(y), f"{r['seq_id']}:{r['region_start']}-{r['region_end']}") for y, r in zip(ys, picked, strict=True)]


def _draw_pooled(ax: Axes, row: Mapping[str, Any]) -> tuple[int, str]:
    """Draw the pooled diamond at y = 0 and the ±2τ band; return the (y, label) tick."""
    estimate, tau = _as_float(row.get("estimate")), _as_float(row.get("tau"))
    low, high = _as_float(row.get("ci_low")), _as_float(row.get("ci_high"))
    if math.isfinite(tau):
        ax.axvspan(
            estimate - 2 * tau,
            estimate + 2 * tau,
            color="C1",
            alpha=0.15,
            lw=0,
            label=f"pooled ± 2τ: between-region spread, not a CI "
            f"(τ = {format_value(tau)}, τ² = {format_value(_as_float(row.get('tau2')))})",
        )
    if math.isfinite(low) and math.isfinite(high):
        ax.fill(
            [low, estimate, high, estimate],
            [0, 0.4, 0, -0.4],
            color="C3",
            zorder=3,
            label=f"pooled estimate {format_value(estimate)} "
            f"(95 % CI {format_value(low)} to {format_value(high)}, p = {format_p(row.get('p_value'))})",
        )
    else:
        ax.plot([estimate], [0], "D", color="C3", zorder=3, label=f"pooled estimate {format_value(estimate)} (no CI)")
    i2 = _as_float(row.get("i2"))
    return 0, f"pooled (k = {row.get('k')}, I² = {format_value(i2, 2)} %)"


# --- calibration -------------------------------------------------------------------------------


def calibration_figure(curves: CalibrationCurves | None, max_tasks: int = 12) -> Figure:
    """Expected against observed proportions per task, before and after recalibration.

    Parameters
    ----------
    curves
        The calibration curves, or None.
    max_tasks
        At most this many tasks get a panel: those worst calibrated before recalibration.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per task shown, each with the ideal diagonal, the curve before and (when
        given) after recalibration, and the calibration errors in the legend.
    """
    title = "Calibration of the predictive distributions"
    if curves is None or not curves.tasks or not np.isfinite(curves.expected).any():
        return no_data_figure(title, "no calibration curves")
    order = np.argsort(-np.nan_to_num(curves.error_before, nan=-np.inf), kind="stable")[:max_tasks]
    n_cols = min(4, order.size)
    n_rows = -(-order.size // n_cols)
    fig = Figure(figsize=(3.1 * n_cols, 3.1 * n_rows + 0.8), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[order.size :]:
        fig.delaxes(ax)
    for ax, task in zip(axes[: order.size], order, strict=True):
        _calibration_panel(ax, curves, int(task))
    shown = (
        ""
        if order.size == len(curves.tasks)
        else f"\n{order.size} of {len(curves.tasks)} tasks shown (worst calibrated before recalibration)"
    )
    fig.suptitle(f"{title} · recalibration: {curves.method}{shown}")
    fig.supxlabel("expected proportion")
    fig.supylabel("observed proportion")
    return fig


def _calibration_panel(ax: Axes, curves: CalibrationCurves, task: int) -> None:
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="ideal")
    ax.plot(
        curves.expected,
        curves.observed_before[task],
        color="C1",
        lw=1.8,
        label=f"before (error {format_error(curves.error_before[task])})",
    )
    if curves.observed_after is not None and curves.error_after is not None:
        ax.plot(
            curves.expected,
            curves.observed_after[task],
            color="C0",
            lw=1.8,
            label=f"after (error {format_error(curves.error_after[task])})",
        )
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", title=curves.tasks[task])
    ax.legend(fontsize="x-small", loc="upper left")

"""Figure functions: content of the axes, and "no data" panels for empty or NaN inputs."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from dmr_ray.errors import InputError
from dmr_ray.report import (
    CalibrationCurves,
    ScatterData,
    calibration_figure,
    forest_figure,
    heatmap_figure,
    scatter_figure,
)
from dmr_ray.report.figures import format_error, format_value, significance_stars


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _is_no_data(fig: Figure) -> bool:
    return len(fig.axes) == 1 and any(t.startswith("no data") for t in _texts(fig))


def _ytick_labels(fig: Figure) -> list[str]:
    """Y tick labels of the only axes, bottom up."""
    (ax,) = fig.axes
    ticks = zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)
    return [t.get_text() for _, t in sorted(ticks, key=lambda p: p[0])]


def _legend_labels(fig: Figure) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return [t.get_text() for legend in legends if legend is not None for t in legend.get_texts()]


@pytest.mark.parametrize("value, text", [(0.0934, "0.093"), (3.4e-18, "0"), (0.25, "0.25"), (float("nan"), "n/a")])
def test_format_error(value, text):
    assert format_error(value) == text


@pytest.mark.parametrize(
    "p_value, stars", [(0.2, ""), (0.04, "*"), (0.009, "**"), (1e-5, "***"), (float("nan"), ""), (None, "")]
)
def test_significance_stars(p_value, stars):
    assert significance_stars(p_value) == stars


def test_heatmap_annotates_every_off_diagonal_pair(global_table, global_row):
    rows = [
        global_row("A", "B", "ivw", 0.5, 0.001 / 2),
        global_row("B", "A", "ivw", -0.25, 0.03),
        global_row("A", "C", "ivw", 0.1, 0.4),
        global_row("C", "B", "ivw", float("nan"), float("nan")),
        global_row("A", "B", "egger", 9.0, 0.5),
    ]
    fig = heatmap_figure(global_table(rows), "ivw")
    assert len(fig.axes) == 2  # matrix and colour bar
    expected = [format_value(r["estimate"]) + significance_stars(r["p_value"]) for r in rows[:4]]
    assert sorted(_texts(fig)) == sorted(expected)
    assert "0.5***" in expected and "-0.25*" in expected and "n/a" in expected
    image = fig.axes[0].images[0].get_array()
    assert image.mask.diagonal().all()
    assert image.min() == pytest.approx(-0.25) and image.max() == pytest.approx(0.5)
    clim = fig.axes[0].images[0].get_clim()
    assert clim[0] == -clim[1]  # centred at 0


@pytest.mark.parametrize("estimates", [[], [float("nan")]])
def test_heatmap_without_estimates(global_table, global_row, estimates):
    table = global_table([global_row("A", "B", "ivw", e, float("nan")) for e in estimates])
    fig = heatmap_figure(table, "ivw")
    assert _is_no_data(fig) if not estimates else _texts(fig) == ["n/a"]


def test_heatmap_of_absent_method_is_no_data(global_table, global_row):
    assert _is_no_data(heatmap_figure(global_table([global_row("A", "B", "ivw", 1.0, 0.1)]), "mbe"))


def test_scatter_orients_instruments_and_draws_both_fits(scatter_data):
    fig = scatter_figure(scatter_data)
    (ax,) = fig.axes
    x, y = ax.containers[0].lines[0].get_data()
    assert np.all(np.asarray(x) >= 0)
    np.testing.assert_allclose(
        np.asarray(x) * np.asarray(y), scatter_data.bx * scatter_data.by
    )  # sign flipped together
    labels = _legend_labels(fig)
    assert len(labels) == 3
    assert any(label.startswith("IVW: slope 0.6") for label in labels)
    assert any("MR-Egger: slope 0.58" in label for label in labels)
    assert "GATA effect (mutant − reference)" in ax.get_xlabel()
    assert "TAL1 effect (mutant − reference)" in ax.get_ylabel()


def test_scatter_skips_nan_fits_and_points(scatter_data):
    bx = scatter_data.bx.copy()
    bx[0] = np.nan
    data = ScatterData(
        seq_id="s", exposure="A", outcome="B", bx=bx, bxse=scatter_data.bxse, by=scatter_data.by, byse=scatter_data.byse
    )
    fig = scatter_figure(data)
    assert _legend_labels(fig) == ["instruments (n = 7) ± 1.96·SE"]


@pytest.mark.parametrize("bx", [[], [np.nan, np.nan]])
def test_scatter_without_instruments_is_no_data(bx):
    data = ScatterData(
        seq_id="s", exposure="A", outcome="B", bx=bx, bxse=np.ones(len(bx)), by=np.ones(len(bx)), byse=np.ones(len(bx))
    )
    assert _is_no_data(scatter_figure(data))


def test_forest_shows_most_precise_regions_pooled_and_tau_band(local_table, global_row):
    n = 50
    se = np.linspace(0.05, 0.5, n)
    estimate = np.linspace(-1, 1, n)
    rows = local_table("A", "B", "deepmr", np.r_[estimate, [np.nan] * 3], np.r_[se, [np.nan] * 3])
    fig = forest_figure(rows, global_row("A", "B", "deepmr", 0.1, 0.01), max_regions=40)
    (ax,) = fig.axes
    labels = _ytick_labels(fig)
    assert len(labels) == 41
    assert labels[0].startswith("pooled (k = 8")
    assert {f"seq{i}:0-100" for i in range(40)} == set(labels[1:])  # smallest SEs
    assert labels[-1] == "seq39:0-100"  # largest estimate on top
    assert (
        "showing 40 of 50 regions with an estimate (the most precise)\n"
        "3 region(s) without an estimate are not drawn" in ax.get_title()
    )
    legend = " | ".join(_legend_labels(fig))
    assert "pooled ± 2τ: between-region spread, not a CI (τ = 0.2, τ² = 0.04)" in legend
    assert "pooled estimate 0.1 (95 % CI" in legend
    band = ax.patches[0]  # the ±2τ span, drawn before the diamond
    x = ax.transData.inverted().transform(band.get_verts())[:, 0]
    np.testing.assert_allclose([x.min(), x.max()], [0.1 - 0.4, 0.1 + 0.4])


def test_forest_with_pooled_estimate_only(local_table, global_row):
    empty = local_table("A", "B", "ivw", [], [])
    fig = forest_figure(empty, global_row("A", "B", "ivw", 0.3, 0.2, tau=float("nan")))
    assert _ytick_labels(fig)[0].startswith("pooled")
    assert not any("2τ" in label for label in _legend_labels(fig))


@pytest.mark.parametrize("n", [0, 2])
def test_forest_without_estimates_is_no_data(local_table, global_row, n):
    rows = local_table("A", "B", "ivw", [np.nan] * n, [np.nan] * n)
    global_ = global_row("A", "B", "ivw", float("nan"), float("nan")) if n else None
    assert _is_no_data(forest_figure(rows, global_))


def test_calibration_one_panel_per_task_with_errors(calibration_curves):
    fig = calibration_figure(calibration_curves)
    assert [ax.get_title() for ax in fig.axes] == ["GATA", "TAL1", "CTCF"]
    curves = calibration_curves
    for ax, before, after in zip(fig.axes, curves.error_before, curves.error_after, strict=True):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["ideal", f"before (error {format_error(before)})", f"after (error {format_error(after)})"]


def test_calibration_shows_worst_tasks_first(calibration_curves):
    fig = calibration_figure(calibration_curves, max_tasks=2)
    assert [ax.get_title() for ax in fig.axes] == ["GATA", "TAL1"]
    assert "2 of 3 tasks shown" in fig.get_suptitle()


def test_calibration_without_after_or_curves():
    p = np.linspace(0, 1, 5)
    curves = CalibrationCurves(
        tasks=("A",),
        expected=p,
        observed_before=p[None],
        observed_after=None,
        error_before=np.zeros(1),
        error_after=None,
        method="none",
    )
    assert len(calibration_figure(curves).axes[0].lines) == 2
    assert _is_no_data(calibration_figure(None))
    empty = CalibrationCurves(
        tasks=(),
        expected=p,
        observed_before=np.zeros((0, 5)),
        observed_after=None,
        error_before=np.zeros(0),
        error_after=None,
        method="none",
    )
    assert _is_no_data(calibration_figure(empty))


def test_inputs_are_validated():
    with pytest.raises(InputError, match="differ in length"):
        ScatterData(seq_id="s", exposure="A", outcome="B", bx=[1, 2], bxse=[1], by=[1, 2], byse=[1, 2])
    with pytest.raises(InputError, match="observed_before"):
        CalibrationCurves(
            tasks=("A", "B"),
            expected=np.zeros(3),
            observed_before=np.zeros((3, 2)),
            observed_after=None,
            error_before=np.zeros(2),
            error_after=None,
            method="x",
        )
    with pytest.raises(InputError, match="both"):
        CalibrationCurves(
            tasks=("A",),
            expected=np.zeros(3),
            observed_before=np.zeros((1, 3)),
            observed_after=np.zeros((1, 3)),
            error_before=np.zeros(1),
            error_after=None,
            method="x",
        )

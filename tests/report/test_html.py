"""The HTML report: files, links, headline summary, escaping, empty inputs, atomic rewrite."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dmr_ray.errors import InputError
from dmr_ray.report import write_report

EVIL = "<b>x</b>"


def _section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def _linked(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


@pytest.fixture(scope="module")
def report(
    tmp_path_factory, global_table, global_row, local_table, scatter_data, calibration_curves
) -> tuple[Path, str]:
    """One full report over two methods, three tasks (one named with markup), with all sections."""
    rows = [
        global_row("GATA", "TAL1", "deepmr", 0.8, 1e-6),
        global_row("TAL1", "GATA", "deepmr", -0.05, 0.6),
        global_row("GATA", EVIL, "deepmr", -0.4, 0.02),
        global_row(EVIL, "GATA", "deepmr", np.nan, np.nan, k=0),
        global_row("GATA", "TAL1", "ivw", 0.7, 0.0),
    ]
    rng = np.random.default_rng(1)
    local = pa.concat_tables(
        [
            local_table(r["exposure"], r["outcome"], r["method"], rng.normal(r["estimate"], 0.2, 6), np.full(6, 0.1))
            for r in rows
            if np.isfinite(r["estimate"])
        ]
        + [
            local_table(EVIL, "GATA", "deepmr", [np.nan] * 4, [np.nan] * 4, n_instruments=[0, 1, 2, 2]),
            local_table("GATA", "TAL1", "deepmr", [np.nan], [np.nan], reason=["degenerate"], n_instruments=[5]),
        ]
    )
    out = tmp_path_factory.mktemp("audit")
    index = write_report(
        out,
        global_table=global_table(rows),
        local_table=local,
        scatter=[scatter_data],
        calibration=calibration_curves,
        run_info={
            "config": {"store": "s.zarr", "pairs": [("GATA", "TAL1")], EVIL: EVIL},
            "timings (s)": {"ism": 12.3456789},
            "instruments kept": 1234,
        },
    )
    return index, index.read_text(encoding="utf-8")


def test_files_exist_and_every_figure_is_linked(report):
    index, page = report
    assert index == index.parent.parent / "report" / "index.html"
    on_disk = sorted(p.name for p in (index.parent / "figures").iterdir())
    linked = _linked(page)
    assert sorted(Path(src).name for src in linked) == on_disk
    assert all(src.startswith("figures/") for src in linked)  # relative: the folder can move
    # 2 heatmaps + 4 forest plots (primary method) + 1 scatter + 1 calibration
    assert len(on_disk) == 8
    assert all((index.parent / src).stat().st_size > 1000 for src in linked)


def test_summary_lists_significant_and_other_pairs(report):
    summary = _section(report[1], "summary")
    assert "<b>2</b> of 4 exposure → outcome pairs" in summary
    significant, rest = summary.split("Not significant")
    assert "GATA → TAL1" in significant and "0.8***" in significant and "1e-06" in significant
    assert "GATA → &lt;b&gt;x&lt;/b&gt;" in significant and "decreases" in significant
    assert "TAL1 → GATA (-0.05, p = 0.6)" in rest
    assert "Not estimable" in rest and "&lt;b&gt;x&lt;/b&gt; → GATA" in rest
    assert significant.index("GATA → TAL1") < significant.index("GATA → &lt;b&gt;x")  # by p


def test_task_names_are_escaped(report):
    page = report[1]
    assert EVIL not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "&lt;1e-300" in _section(page, "global-table")  # p = 0 of the ivw row
    assert not re.search(r"<(?!/?(?:[a-z][a-z0-9]*)[\s>/])", page.split("<body>")[1])  # every "<" opens a tag
    assert all(re.fullmatch(r"figures/[A-Za-z0-9_.-]+\.png", src) for src in _linked(page))


def test_sections_and_run_information(report):
    page = report[1]
    for anchor in (
        "summary",
        "how-to-read",
        "heatmaps",
        "forest",
        "scatter",
        "global-table",
        "calibration",
        "run-info",
    ):
        _section(page, anchor)
    table = _section(page, "global-table")
    assert table.count("<tr>") == 6  # header + 5 rows
    run = _section(page, "run-info")
    assert "s.zarr" in run and "GATA, TAL1" in run and "12.35" in run and "1234" in run
    # deepmr: 16 ok fits, 4 + 1 skipped; instrument counts from the local table
    assert re.search(
        r"<td>deepmr</td><td>too_few_instruments</td><td class=\"num\">4</td>"
        r"<td class=\"num\">0–2, 1.25</td>",
        run,
    )
    assert re.search(r"<td>deepmr</td><td>degenerate</td><td class=\"num\">1</td>", run)
    assert re.search(r"<td>deepmr</td><td>ok</td><td class=\"num\">18</td>", run)
    assert "<script" not in page and "http" not in page


def test_rewrite_removes_stale_figures_and_temporaries(tmp_path, global_table, global_row, local_table):
    local = local_table("A", "B", "ivw", [0.1, 0.3], [0.1, 0.1])
    first = [global_row("A", "B", "ivw", 0.2, 0.5), global_row("A", "B", "egger", 0.2, 0.5)]
    write_report(tmp_path, global_table=global_table(first), local_table=local)
    index = write_report(tmp_path, global_table=global_table(first[:1]), local_table=local)
    page = index.read_text(encoding="utf-8")
    figures = sorted(p.name for p in (index.parent / "figures").iterdir())
    assert len(figures) == 2 and sorted(Path(s).name for s in _linked(page)) == figures
    assert not [p for p in index.parent.rglob(".*")]  # no temporary left
    assert "<b>0</b> of 1" in _section(page, "summary")


def test_empty_tables_give_a_report(tmp_path, global_table, local_table):
    index = write_report(tmp_path, global_table=global_table([]), local_table=local_table("A", "B", "x", [], []))
    page = index.read_text(encoding="utf-8")
    assert "No global causal effects were estimated" in page
    assert "No local effects" in page
    assert _linked(page) == []


def test_unknown_primary_method_is_refused(tmp_path, global_table, global_row, local_table):
    with pytest.raises(InputError, match="'mbe'.*methods: ivw"):
        write_report(
            tmp_path,
            global_table=global_table([global_row("A", "B", "ivw", 0.2, 0.5)]),
            local_table=local_table("A", "B", "ivw", [], []),
            primary_method="mbe",
        )


def test_tasks_still_miscalibrated_after_the_map_are_called_out(calibration_curves):
    from dataclasses import replace

    from dmr_ray.report.html import RESIDUAL_ERROR, _residual_miscalibration

    assert _residual_miscalibration(calibration_curves) == ""  # all close to the diagonal after
    worse = replace(calibration_curves, error_after=np.array([0.2, 0.01, RESIDUAL_ERROR + 0.001]))
    text = _residual_miscalibration(worse)
    assert "Still miscalibrated" in text and "GATA, CTCF" in text and "TAL1" not in text


def test_a_significant_but_dominated_direction_is_not_presented_as_learned(tmp_path, global_row, local_table):
    """GATA → TAL1 0.69 and a significant TAL1 → GATA leak 0.07 (replicate test): with the tasks'
    mutational SDs the summary lists the leak apart, as not a causal direction, with both
    standardized effects; the global table says finding / not dominant; without SDs the leak is
    listed with what the model learned, as before."""
    rows = [
        global_row(
            "GATA", "TAL1", "ivw", 0.69, 1e-5,
            inference="replicate", n_replicates=5, replicate_estimates=[0.70, 0.66, 0.72, 0.69, 0.68],
        ),
        global_row(
            "TAL1", "GATA", "ivw", 0.07, 1e-3,
            inference="replicate", n_replicates=5, replicate_estimates=[0.08, 0.06, 0.07, 0.09, 0.05],
        ),
    ]  # fmt: skip
    table = pa.Table.from_pylist(rows)
    local = local_table("GATA", "TAL1", "ivw", [0.6, 0.7], [0.1, 0.1])
    page = write_report(tmp_path, global_table=table, local_table=local, effect_sd={"GATA": 2.0, "TAL1": 1.6})
    summary = _section(page.read_text(encoding="utf-8"), "summary")
    learned, apart = summary.split("Significant, but not a causal direction")
    assert "GATA → TAL1" in learned and "TAL1 → GATA" not in learned
    # standardized: 0.07 · 1.6 / 2 = 0.056 against 0.69 · 2 / 1.6 = 0.8625
    assert "TAL1 → GATA (0.07, p = 0.001; standardized 0.056 against 0.863 the other way)" in apart
    assert "1 of them do not dominate their reverse direction" in summary
    table_section = _section(page.read_text(encoding="utf-8"), "global-table")
    assert "<td>finding</td>" in table_section and "<td>not dominant</td>" in table_section
    calls = _section(page.read_text(encoding="utf-8"), "direction")
    assert "GATA → TAL1 supported" in calls
    plain = write_report(tmp_path / "plain", global_table=table, local_table=local)
    plain_summary = _section(plain.read_text(encoding="utf-8"), "summary")
    assert "not a causal direction" not in plain_summary and "TAL1 → GATA" in plain_summary


def test_the_default_estimator_is_primary_when_none_is_named(tmp_path, global_table, global_row, local_table):
    """With robust Egger listed first, the headline and forest plots still follow the audit's
    default estimator (the weighted median) when it is present."""
    from dmr_ray.deepmr.config import DEFAULT_ESTIMATOR
    from dmr_ray.report.html import PREFERRED_METHOD

    assert PREFERRED_METHOD == DEFAULT_ESTIMATOR

    rows = [global_row("A", "B", method, 0.5, 1e-4) for method in ("deepmr", "ivw", DEFAULT_ESTIMATOR)]
    local = pa.concat_tables([local_table("A", "B", r["method"], [0.5, 0.6], [0.1, 0.1]) for r in rows])
    page = write_report(tmp_path, global_table=global_table(rows), local_table=local).read_text(encoding="utf-8")
    assert f"Primary MR method: <b>{DEFAULT_ESTIMATOR}</b>" in page

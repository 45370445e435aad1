"""Turn an audit directory's outputs into the inputs of :func:`dmr_ray.report.write_report`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from dmr_ray.deepmr.attribution_stage import ATTRIBUTION_FILE, read_attribution
from dmr_ray.deepmr.calibration_stage import CALIBRATION_FILE, load_calibration
from dmr_ray.deepmr.config import DeepMRConfig
from dmr_ray.deepmr.local import LocalMROptions, region_rows
from dmr_ray.deepmr.pipeline import effect_sd
from dmr_ray.deepmr.stages import read_local_effects
from dmr_ray.errors import DmrRayError
from dmr_ray.report import CalibrationCurves, ScatterData, write_report
from dmr_ray.stats import mr


def _scatter_rows(local, method: str, exposure: str, outcome: str, count: int) -> list[dict]:
    """The ``count`` fitted regions of a pair with the most instruments."""
    chosen = local.filter(
        pc.and_(
            pc.and_(pc.equal(local["method"], method), pc.equal(local["reason"], "ok")),
            pc.and_(pc.equal(local["exposure"], exposure), pc.equal(local["outcome"], outcome)),
        )
    )
    rows = chosen.select(["seq_id", "region", "n_instruments"]).to_pylist()
    return sorted(rows, key=lambda r: (-r["n_instruments"], r["seq_id"], r["region"]))[:count]


def _fit_lines(bx, bxse, by, byse) -> tuple[float, float, float]:
    """IVW slope and Egger intercept and slope, NaN where a fit is impossible."""
    try:
        ivw = mr.ivw(bx, bxse, by, byse).estimate
    except DmrRayError:
        ivw = float("nan")
    try:
        egger = mr.egger(bx, bxse, by, byse)
        return ivw, float("nan") if egger.intercept is None else egger.intercept, egger.estimate
    except DmrRayError:
        return ivw, float("nan"), float("nan")


def scatter_inputs(
    effects, options: LocalMROptions, local, method: str, pair: tuple[str, str], count: int
) -> list[ScatterData]:
    """Instruments and fitted lines of the best-instrumented regions of one pair."""
    exposure, outcome = pair
    ids = {str(s): i for i, s in enumerate(effects.seq_ids())}
    tasks = list(options.tasks)
    out = []
    for row in _scatter_rows(local, method, exposure, outcome, count):
        index = ids[row["seq_id"]]
        chunk = effects.read(index, index + 1)
        rows = region_rows(chunk["beta"], chunk["se"], tasks.index(exposure), tasks.index(outcome), options)
        keep = rows.mask[row["region"]]
        bx, bxse, by, byse = (a[row["region"]][keep] for a in (rows.bx, rows.bxse, rows.by, rows.byse))
        ivw, intercept, slope = _fit_lines(bx, bxse, by, byse)
        start = row["region"] * options.region_width
        out.append(
            ScatterData(
                row["seq_id"],
                exposure,
                outcome,
                bx,
                bxse,
                by,
                byse,
                ivw_slope=ivw,
                egger_intercept=intercept,
                egger_slope=slope,
                region=f"{start}-{min(start + options.region_width, effects.length)}",
            )
        )
    return out


def calibration_inputs(path: Path, method: str) -> CalibrationCurves | None:
    """Calibration curves from ``calibration.json`` (tasks first, as the report wants)."""
    if not path.exists():
        return None
    fit = load_calibration(path)
    return CalibrationCurves(
        tasks=fit.tasks,
        expected=fit.expected,
        observed_before=fit.observed_before.T,
        observed_after=fit.observed_after.T,
        error_before=fit.error_before,
        error_after=fit.error_after,
        method=method,
    )


def build_report(
    config: DeepMRConfig,
    out: Path,
    pairs: list[tuple[str, str]],
    options: LocalMROptions,
    run_info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out/report/index.html`` from the audit outputs in ``out``."""
    from dmr_ray.store import EffectsStore

    local = read_local_effects(out / "local_effects.parquet")
    global_table = pq.read_table(out / "global_effects.parquet")
    primary = config.methods.estimators[0]
    effects = EffectsStore.open(str(out / "effects.zarr"), mode="r")
    scatter = (
        scatter_inputs(effects, options, local, primary, pairs[0], config.report.scatter_sequences) if pairs else []
    )
    info = {"configuration": json.loads(config.model_dump_json()), **(run_info or {})}
    attribution = read_attribution(out / ATTRIBUTION_FILE) if config.attribution is not None else None
    return write_report(
        out,
        global_table=global_table,
        local_table=local,
        scatter=scatter,
        calibration=calibration_inputs(out / CALIBRATION_FILE, config.calibration.method),
        run_info=info,
        primary_method=primary,
        attribution=attribution,
        effect_sd=effect_sd(out),
    )

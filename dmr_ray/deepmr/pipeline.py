"""A Deep MR audit end to end: calibration → ISM → instruments → local MR → meta-analysis → report.

Every stage writes its output under the audit directory and is resumable: a rerun of the
same configuration skips finished work (ISM and local MR per chunk), and a rerun with a
different configuration is refused unless ``overwrite`` is set.

Audit directory layout::

    calibration.json          fitted recalibration (when configured)
    effects.zarr/             ISM effects per chunk (engine)
    instruments.json          pooled exposure moments used by the instrument filters, reused
                              while the effects' fingerprint is unchanged
    local_effects.parquet/    one Parquet part per effects chunk
    global_effects.parquet    random-effects pooled causal effects
    report/index.html         figures and tables
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmr_ray.config import DeepMRConfig
from dmr_ray.deepmr.calibration_stage import (
    CALIBRATION_FILE,
    fit_calibration,
    load_calibration,
    save_calibration,
)
from dmr_ray.deepmr.instruments import ExposureMoments, effects_fingerprint, exposure_moments
from dmr_ray.deepmr.local import LocalMROptions
from dmr_ray.deepmr.stages import (
    read_local_effects,
    run_global_stage,
    run_local_stage,
    write_text_atomic,
)

log = logging.getLogger(__name__)

MOMENTS_FILE = "instruments.json"
"""Pooled exposure moments, with the fingerprint of the effects they were computed from."""


@dataclass
class AuditSummary:
    """Where an audit's outputs are and what each stage did."""

    out: Path
    stages: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def report(self) -> Path:
        """The report's index page."""
        return self.out / "report" / "index.html"

    def describe(self) -> str:
        """One line per stage, then the report's location."""
        lines = [f"{name:>12}: {text} ({self.seconds[name]:.1f} s)" for name, text in self.stages.items()]
        return "\n".join(lines + [f"report: {self.report}"])


class _Stages:
    """Runs named stages, timing each and printing its one-line summary."""

    def __init__(self, summary: AuditSummary, echo: Callable[[str], None]) -> None:
        self.summary = summary
        self.echo = echo

    def run(self, name: str, func: Callable[[], str]) -> None:
        started = time.monotonic()
        text = func()
        self.summary.stages[name] = text
        self.summary.seconds[name] = time.monotonic() - started
        self.echo(f"[{name}] {text} ({self.summary.seconds[name]:.1f} s)")


def run_audit(
    config: DeepMRConfig,
    *,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
    run_info: Mapping[str, Any] | None = None,
) -> AuditSummary:
    """Run (or resume) the Deep MR audit described by ``config``.

    Parameters
    ----------
    config
        A validated configuration.
    overwrite
        Discard earlier results in ``config.out`` instead of resuming.
    echo
        Receives one line per finished stage.
    run_info
        Extra facts shown in the report's run information (e.g. a simulation's planted truth).

    Returns
    -------
    AuditSummary
    """
    from dmr_ray.models import load_model_spec

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = load_model_spec(config.model)
    pairs = config.resolve_pairs(list(spec.task_names))
    from dmr_ray.engine import connect

    connect(config.ray.address, num_cpus=config.ray.num_cpus)  # joins RAY_ADDRESS under ray job submit
    summary = AuditSummary(out)
    stages = _Stages(summary, echo)
    calibration_path = out / CALIBRATION_FILE
    if config.calibration.method != "none":
        stages.run("calibration", lambda: _calibrate(config, spec, calibration_path, overwrite))
    elif calibration_path.exists():
        calibration_path.unlink()
    effects_path = out / "effects.zarr"
    stages.run("ism", lambda: _ism(config, effects_path, calibration_path, overwrite))
    local_dir = out / "local_effects.parquet"
    options = local_options(config, effects_path, pairs)
    stages.run("local MR", lambda: _local(effects_path, local_dir, options, overwrite))
    stages.run("meta", lambda: _meta(config, local_dir, out / "global_effects.parquet"))
    if config.report.enabled:
        info = {**(run_info or {}), "stages": dict(summary.stages)}
        stages.run("report", lambda: _report(config, out, pairs, options, info))
    return summary


def _calibrate(config: DeepMRConfig, spec, path: Path, overwrite: bool) -> str:
    from dmr_ray.uncertainty import build_predictor

    if path.exists() and not overwrite:
        fit = load_calibration(path)
        return f"reused {path.name}: error {_errors(fit)}"
    fit = fit_calibration(config.calibration, spec, build_predictor(spec, device=config.ism.device))
    save_calibration(fit, path)
    return f"{config.calibration.method} recalibration: error {_errors(fit)}"


def _errors(fit) -> str:
    rows = zip(fit.tasks, fit.error_before, fit.error_after, strict=True)
    return ", ".join(f"{t} {b:.3f}→{a:.3f}" for t, b, a in rows)


def _ism(config: DeepMRConfig, effects_path: Path, calibration_path: Path, overwrite: bool) -> str:
    from dmr_ray.engine import EngineOptions, IsmJob, run_ism

    options = config.ism
    job = IsmJob(
        store=config.store,
        model=str(config.model),
        out=str(effects_path),
        chunk_size=options.chunk_size,
        batch_size=options.batch_size,
        ddof=options.ddof,
        device=options.device,
        fast=options.fast,
        precision=options.precision,
        calibration=str(calibration_path) if calibration_path.exists() else None,
    )
    engine = EngineOptions(actors=options.actors if options.actors is not None else 1, address=config.ray.address)
    return run_ism(job, engine, overwrite=overwrite).describe()


def local_options(config: DeepMRConfig, effects_path: Path, pairs: list[tuple[str, str]]) -> LocalMROptions:
    """The local-MR options of ``config``, with the pooled moments of the effects that the
    instrument filters need (see :func:`pooled_moments`; recorded beside the effects)."""
    from dmr_ray.store import EffectsStore

    effects = EffectsStore.open(str(effects_path), mode="r")
    instruments = config.instruments
    moments = pooled_moments(effects, effects_path.parent / MOMENTS_FILE)
    zscore = instruments.filter == "zscore"
    methods = config.methods
    return LocalMROptions(
        tasks=tuple(effects.tasks),
        pairs=tuple(pairs),
        estimators=methods.estimators,
        filter=instruments.filter,
        threshold=instruments.threshold,
        moments_mean=tuple(moments.mean.tolist()) if zscore else (),
        moments_sd=tuple(moments.sd.tolist()) if zscore else (),
        region_width=config.regions.width if config.regions.kind == "tiles" else effects.length,
        direction_sd=tuple(moments.reference_sd.tolist()) if instruments.direction_filter else (),
        alpha=methods.alpha,
        iterations=methods.iterations,
        seed=methods.seed,
    )


def pooled_moments(effects, path: Path) -> ExposureMoments:
    """The pooled exposure moments of ``effects``, reused from ``path`` when recorded there
    for the same effects, else computed (one full read) and recorded, replacing ``path``.

    Parameters
    ----------
    effects : EffectsStore
        A complete effects store.
    path
        The record (``instruments.json``): the moments and the
        :func:`~dmr_ray.deepmr.instruments.effects_fingerprint` of the effects they describe.

    Returns
    -------
    ExposureMoments
    """
    fingerprint = effects_fingerprint(effects)
    recorded = _read_record(path)
    if fingerprint is not None and recorded.get("effects_fingerprint") == fingerprint:
        log.info("reusing the pooled exposure moments recorded in %s", path)
        return ExposureMoments.from_dict(recorded)
    moments = exposure_moments(effects)
    write_text_atomic(json.dumps({**moments.to_dict(), "effects_fingerprint": fingerprint}), path)
    return moments


def _read_record(path: Path) -> dict:
    """A JSON record, or an empty one when it is absent or unreadable (it is then rewritten)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _local(effects_path: Path, local_dir: Path, options: LocalMROptions, overwrite: bool) -> str:
    computed = run_local_stage(str(effects_path), local_dir, options, overwrite=overwrite)
    table = read_local_effects(local_dir)
    ok = sum(r == "ok" for r in table.column("reason").to_pylist())
    return f"{computed} chunks computed; {table.num_rows} region fits, {ok} with a result"


def _meta(config: DeepMRConfig, local_dir: Path, out: Path) -> str:
    table = run_global_stage(
        local_dir, out, method=config.meta.method, test=config.meta.test, alpha=config.methods.alpha
    )
    significant = sum(p < config.methods.alpha for p in table.column("p_value").to_pylist() if p == p)
    return f"{table.num_rows} pooled effects, {significant} significant at {config.methods.alpha}"


def _report(
    config: DeepMRConfig, out: Path, pairs: list[tuple[str, str]], options: LocalMROptions, run_info: Mapping[str, Any]
) -> str:
    from dmr_ray.deepmr.report_inputs import build_report

    path = build_report(config, out, pairs, options, run_info)
    return f"written to {path}"

"""A Deep MR audit end to end: calibration → ISM → instruments → local MR → meta-analysis → report.

Each stage runs through :class:`dmr_ray.stage.AuditDirectory`: it has an identity (its options
and its inputs' identities, upstream digests included) recorded with its timing in
``.dmr_ray/stages/<name>.json``. A rerun of the same configuration resumes (ISM and local MR
per chunk) and reuses finished stages; a changed downstream option (instrument filter,
estimators, meta-analysis, report) reruns that stage and those after it, removing only the
outputs they recorded, never an upstream stage whose identity is unchanged. ``effects.zarr``
keeps the engine's rule: a changed model or ISM option is refused unless ``overwrite``, which
removes every output dmr_ray recorded in the directory (and nothing else).

Audit directory layout::

    .dmr_ray/audit.json       marks a dmr_ray audit directory
    .dmr_ray/stages/*.json    one record per stage: identity, digest, outputs, seconds, finished
    calibration.json          fitted recalibration (when configured)
    effects.zarr/             ISM effects per chunk (engine)
    instruments.json          pooled exposure moments used by the instrument filters, reused
                              while the effects' fingerprint is unchanged
    local_effects.parquet/    one Parquet part per effects chunk
    local_replicates.parquet/ the same per replicate (``ism.keep_replicates``)
    global_effects.parquet    random-effects pooled causal effects
    attribution.json          attributions scored against motif positions (when configured)
    report/index.html         figures and tables
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dmr_ray._atomic import write_text_atomic
from dmr_ray.deepmr.calibration_stage import CALIBRATION_FILE, fit_calibration, save_calibration
from dmr_ray.deepmr.config import DeepMRConfig
from dmr_ray.deepmr.instruments import ExposureMoments, effects_fingerprint, exposure_moments
from dmr_ray.deepmr.local import LocalMROptions
from dmr_ray.deepmr.stages import read_local_effects, run_global_stage, run_local_stage
from dmr_ray.engine import EngineOptions
from dmr_ray.errors import ConfigError
from dmr_ray.stage import AuditDirectory, Stage, StageResult

log = logging.getLogger(__name__)

KIND = "deep_mr"

EFFECTS = "effects.zarr"
MOMENTS_FILE = "instruments.json"
"""Pooled exposure moments, with the fingerprint of the effects they were computed from."""
LOCAL = "local_effects.parquet"
LOCAL_REPLICATES = "local_replicates.parquet"
GLOBAL = "global_effects.parquet"
REPORT = "report"


@dataclass
class AuditSummary:
    """Where an audit's outputs are and what each stage did."""

    out: Path
    stages: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def report(self) -> Path:
        """The report's index page."""
        return self.out / REPORT / "index.html"

    def describe(self) -> str:
        """One line per stage, then the report's location."""
        lines = [f"{name:>12}: {text} ({self.seconds[name]:.1f} s)" for name, text in self.stages.items()]
        return "\n".join(lines + [f"report: {self.report}"])

    def add(self, result: StageResult) -> str:
        """Record ``result``; returns its one line for the terminal."""
        title = result.stage.title
        self.stages[title] = result.summary
        self.seconds[title] = result.seconds
        return f"[{title}] {result.summary} ({result.seconds:.1f} s)"


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
        Remove every output dmr_ray recorded in ``config.out`` (other files stay) and start
        fresh; refused for a directory that is not a dmr_ray audit directory.
    echo
        Receives one line per stage.
    run_info
        Extra facts shown in the report's run information (e.g. a simulation's planted truth).

    Returns
    -------
    AuditSummary
    """
    from dmr_ray.engine import connect
    from dmr_ray.models import load_model_spec, model_digest

    spec = load_model_spec(config.model)
    pairs = config.resolve_pairs(list(spec.task_names))
    if config.ism.keep_replicates and spec.n_replicates < 2:
        raise ConfigError(
            f"ism.keep_replicates: {config.model} has {spec.n_replicates} replicate; per-replicate inference needs "
            "at least 2 (set ism.keep_replicates: false and meta.inference: pooled)"
        )
    audit = AuditDirectory.claim(Path(config.out), KIND, overwrite=overwrite)
    out = audit.root
    connect(config.engine.address, num_cpus=config.ray.num_cpus)  # joins RAY_ADDRESS under ray job submit
    summary = AuditSummary(out)

    def run(stage: Stage, func: Callable[[], str]) -> str:
        echo(summary.add(audit.run(stage, func)))
        return stage.digest

    calibration_path: Path | None = None
    calibration_digest = None
    if config.calibration.method != "none":
        calibration_path = out / CALIBRATION_FILE
        identity: dict[str, Any] = {"options": config.calibration.model_dump(mode="json"), "model": model_digest(spec)}
        stage = Stage("calibration", identity, (CALIBRATION_FILE,))
        calibration_digest = run(stage, lambda: _calibrate(config, spec, out / CALIBRATION_FILE))
    else:
        audit.discard("calibration")
    job = config.ism.job(store=config.store, model=config.model, out=out / EFFECTS, calibration=calibration_path)
    ism_identity = {**asdict(job.resolved()), "out": EFFECTS, "calibration": calibration_digest}
    ism = Stage("ism", ism_identity, (EFFECTS, MOMENTS_FILE), resumable=True, keeps_outputs=True)
    ism_digest = run(ism, lambda: _ism(config, job))
    options = local_options(config, out / EFFECTS, pairs)
    replicates = out / LOCAL_REPLICATES if config.ism.keep_replicates else None
    local = Stage(
        "local_mr",
        {"ism": ism_digest, "effects": _fingerprint(out / EFFECTS), "options": asdict(options)},
        (LOCAL, LOCAL_REPLICATES) if replicates else (LOCAL,),
        label="local MR",
        resumable=True,
    )
    local_digest = run(local, lambda: _local(config, out / EFFECTS, out / LOCAL, options, replicates))
    meta_identity = {"local": local_digest, **config.meta.model_dump(), "alpha": config.methods.alpha}
    meta_replicates = replicates if config.meta.inference == "replicate" else None
    meta_digest = run(
        Stage("meta", meta_identity, (GLOBAL,)), lambda: _meta(config, out / LOCAL, out / GLOBAL, meta_replicates)
    )
    attribution_digest = _attribution(config, spec, audit, ism_digest, run)
    if config.report.enabled:
        info = {**(run_info or {}), "stages": dict(summary.stages)}
        from dmr_ray.report import REPORT_VERSION

        identity = {
            "version": REPORT_VERSION,
            "meta": meta_digest,
            "calibration": calibration_digest,
            "attribution": attribution_digest,
            "configuration": config.model_dump(mode="json"),
            "run_info": run_info or {},
        }
        run(Stage("report", identity, (REPORT,)), lambda: _report(config, out, pairs, options, info))
    return summary


def _attribution(config: DeepMRConfig, spec, audit: AuditDirectory, ism_digest: str, run) -> str | None:
    """The optional attribution stage (``attribution:``); returns its digest, None when off."""
    from dmr_ray.deepmr.attribution_stage import ATTRIBUTION_FILE, attribution_identity, run_attribution_stage

    options = config.attribution
    if options is None:
        audit.discard("attribution")
        return None
    identity = {"ism": ism_digest, **attribution_identity(options)}
    path = audit.root / ATTRIBUTION_FILE
    return run(
        Stage("attribution", identity, (ATTRIBUTION_FILE,)),
        lambda: run_attribution_stage(options, config.store, spec, config.ism.device, path),
    )


def _calibrate(config: DeepMRConfig, spec, path: Path) -> str:
    from dmr_ray.uncertainty import build_predictor

    fit = fit_calibration(config.calibration, spec, build_predictor(spec, device=config.ism.device))
    save_calibration(fit, path)
    return f"{config.calibration.method} recalibration: error {_errors(fit)}"


def _errors(fit) -> str:
    rows = zip(fit.tasks, fit.error_before, fit.error_after, strict=True)
    return ", ".join(f"{t} {b:.3f}→{a:.3f}" for t, b, a in rows)


def _ism(config: DeepMRConfig, job) -> str:
    from dmr_ray.engine import run_ism

    return run_ism(job, config.engine).describe()


def _fingerprint(effects_path: Path) -> str | None:
    from dmr_ray.store import EffectsStore

    return effects_fingerprint(EffectsStore.open(str(effects_path), mode="r"))


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
        region_width=config.regions.region_width(effects.length),
        direction_sd=tuple(moments.reference_sd.tolist()) if instruments.direction_filter else (),
        direction_scale=instruments.direction_scale,
        direction_against=instruments.direction_against,
        inference="replicate" if config.meta.inference == "replicate" else "ensemble",
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
    write_text_atomic(path, json.dumps({**moments.to_dict(), "effects_fingerprint": fingerprint}))
    return moments


def effect_sd(directory: Path) -> dict[str, float] | None:
    """Each task's mutational SD (its effects' SD, ddof 0, pooled over the audit's substitutions)
    from the moments recorded in ``directory`` (an audit's output directory), or None when none
    are recorded; the report's dominance test standardizes with them
    (:mod:`dmr_ray.stats.dominance`)."""
    recorded = _read_record(Path(directory) / MOMENTS_FILE)
    if not recorded:
        return None
    moments = ExposureMoments.from_dict(recorded)
    return dict(zip(moments.tasks, moments.sd.tolist(), strict=True))


def _read_record(path: Path) -> dict:
    """A JSON record, or an empty one when it is absent or unreadable (it is then rewritten)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _local(
    config: DeepMRConfig, effects_path: Path, local_dir: Path, options: LocalMROptions, replicates: Path | None
) -> str:
    for directory in (local_dir, replicates):
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
    computed = run_local_stage(str(effects_path), local_dir, options, local_engine(config.engine), replicates)
    table = read_local_effects(local_dir)
    ok = sum(r == "ok" for r in table.column("reason").to_pylist())
    return f"{computed} chunks computed; {table.num_rows} region fits, {ok} with a result"


def local_engine(engine: EngineOptions) -> EngineOptions:
    """How local MR runs: the audit's engine options for CPU tasks.

    In process when ISM is (``actors: 0``), else one CPU actor per CPU; replicate groups,
    GPU shares and torch threads concern the model replicas only.
    """
    return replace(
        engine, actors=0 if engine.actors == 0 else None, replicate_groups=1, gpus_per_actor=None, threads=None
    )


def _meta(config: DeepMRConfig, local_dir: Path, out: Path, replicates: Path | None) -> str:
    meta = config.meta
    table = run_global_stage(
        local_dir, out, method=meta.method, test=meta.test, alpha=config.methods.alpha, replicates=replicates
    )
    significant = sum(p < config.methods.alpha for p in table.column("p_value").to_pylist() if p == p)
    return (
        f"{table.num_rows} pooled effects ({meta.inference} inference), "
        f"{significant} significant at {config.methods.alpha}"
    )


def _report(
    config: DeepMRConfig, out: Path, pairs: list[tuple[str, str]], options: LocalMROptions, run_info: Mapping[str, Any]
) -> str:
    from dmr_ray.deepmr.report_inputs import build_report

    path = build_report(config, out, pairs, options, run_info)
    return f"written to {path}"

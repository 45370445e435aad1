"""The Deep MR simulation study (deep_mr.md §8–9): planted GATA → TAL1 effects, scored per round.

Each round ``i`` draws α ~ N(100, 3) and an effect (N(10, .5) with p = .5, else N(1, .5),
clipped at 0) from ``seed`` and ``i``, simulates the scenario's data, trains an ensemble, runs
the whole Deep MR audit (:func:`dmr_ray.deepmr.pipeline.run_audit`) and scores its local and
global estimates against the planted truth joined on ``seq_id``. A finished round is kept as
``rounds/<i>/round.json`` (written atomically, last); a rerun computes only the missing rounds
and scores again, from its stored audit, a round scored by an older version (:data:`SCORING`).

Rounds run as Ray tasks, ``parallel`` at a time, each in a placement group of its size's
``round_cpus`` (:mod:`dmr_ray.experiments.rounds`); the audit's engine runs in the round's
process (:attr:`ExperimentSize.engine_actors`). ``parallel = 1`` is the sequential run. A
round without ``round.json`` (interrupted, or failed) starts again: its half-written data and
audit are removed first; the ensemble members it finished are kept.

Directory layout::

    .dmr_ray/experiment.json   marks the directory and records scenario, size and seed
    rounds/<i>/                data, model and audit of round i
    rounds/<i>/round.json      the round's scores and its local estimates against truth
    summary.json               aggregate per method, the seed-layout table, per-round rows
    summary.md                 the tables and the list of figures
    *.png                      the figures (:mod:`dmr_ray.experiments.plots`)
"""

from __future__ import annotations

import difflib
import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dmr_ray._atomic import write_text_atomic
from dmr_ray.demo import REPORTED_ESTIMATORS, DemoSettings, check_architecture, simulated_seq_id
from dmr_ray.errors import InputError
from dmr_ray.experiments.directory import check_experiment_directory, claim_experiment_directory
from dmr_ray.experiments.model_truth import MotifSpans, model_local_effects
from dmr_ray.experiments.tables import finite, fmt, mean_of, median_of, weighted_mean

if TYPE_CHECKING:
    import pyarrow as pa

    from dmr_ray.stats.dominance import Dominance

SCENARIOS: dict[str, dict[str, Any]] = {
    "none": {},
    "sequence": {"confounder_motif": True},
    "random": {"confounder_prob": 0.5},
    "both": {"confounder_motif": True, "confounder_prob": 0.5},
}
"""The four scenarios of the original (REPRODUCIBILITY.md) as :func:`simulate_tf_coop` flags."""

METHODS = REPORTED_ESTIMATORS
"""The MR methods scored: those the demo's audit configuration (every round's audit) runs."""
EXPOSURE, OUTCOME = "GATA", "TAL1"
ALPHA = 0.05
BASELINE_Z = 1.96
"""Mutations with ``|bx / se_x|`` at least this enter the naive ratio-mean baseline."""


@dataclass(frozen=True)
class ExperimentSize:
    """The size of one round: data and training, and the audit engine's actors.

    Attributes
    ----------
    settings
        Sequences, ensemble members and training recipe (the demo's fields).
    engine_actors
        ``engine.actors`` of the round's audit: 0 runs ISM and local MR in the round's own
        process (one thread), ``None`` keeps the demo's two Ray actors, their pools nested in
        the round's placement group (then ``round_cpus`` must hold them: 2). In process is the
        default: at ``--quick`` size a round's ISM and local MR took 8–28 s in process against
        48–92 s as nested actor pools, whose every actor is a new process that imports torch
        and numba and loads the ensemble (docs/experiments.md).
    round_cpus
        CPUs a round reserves (its placement group's bundle).
    """

    settings: DemoSettings
    engine_actors: int | None = 0
    round_cpus: float = 1.0


SIZES: dict[str, ExperimentSize] = {
    "quick": ExperimentSize(DemoSettings(n_train=4000, n_calibration=500, n_audit=32, members=5, epochs=25)),
    "full": ExperimentSize(DemoSettings(n_train=10_000, n_calibration=1000, n_audit=100, members=5, epochs=50)),
    "tiny": ExperimentSize(DemoSettings(n_train=300, n_calibration=100, n_audit=6, members=2, epochs=1)),
}
"""Round sizes: ``quick`` (a round takes about 2.5 min on one core with ``pooled_cnn``, half
that with ``small_cnn``), ``full`` (the README command's training set, 10,000 sequences),
``tiny`` (tests only)."""

HEADS = ("shared", "separate")
"""The audited ensemble's dense layers (``small_cnn``'s ``heads``): ``shared`` by GATA and TAL1
as in the original's ``CountsRegressor``, or a ``separate`` tower per task after the shared
convolutions (docs/experiments.md: the shared layers teach GATA's output the TAL1 motif)."""


DEFAULT_ARCHITECTURE = "pooled_cnn"
"""The study's audited network when none is named: the one whose ensembles let the MR
intervals cover the local truths in all four scenarios (docs/experiments.md). An experiment
identity without an ``architecture`` is ``small_cnn``'s (the original's, the default before)."""


ABSENT_HINTS = {
    "architecture": "a directory without an architecture holds small_cnn rounds, the default before "
    "pooled_cnn: add --architecture small_cnn to resume it"
}
"""What a refusal adds when the directory's identity lacks these entries (:func:`check_experiment_directory`)."""


@dataclass(frozen=True)
class Recipe:
    """How an audited architecture trains, relative to the size's recipe.

    Attributes
    ----------
    epoch_factor
        Epochs = the size's epochs × this (early stopping may end training sooner).
    learning_rate
        Adam's step, replacing the size's.
    """

    epoch_factor: int = 1
    learning_rate: float | None = None

    def apply(self, settings: DemoSettings) -> DemoSettings:
        """``settings`` with this recipe's epochs and learning rate."""
        rate = settings.learning_rate if self.learning_rate is None else self.learning_rate
        return replace(settings, epochs=settings.epochs * self.epoch_factor, learning_rate=rate)


RECIPES: dict[str, Recipe] = {"pooled_cnn": Recipe(epoch_factor=4, learning_rate=1e-3)}
"""Per audited architecture (``DemoSettings.architecture``, :data:`dmr_ray.demo.ARCHITECTURES`),
how its training differs from the size's: ``pooled_cnn`` learns with a smaller step for
four times as many epochs (100 at ``--quick``; early stopping ends it; docs/experiments.md)."""


def round_size(identity: Mapping[str, Any]) -> ExperimentSize:
    """The round size of an experiment identity: its ``size`` with its ``heads`` (default shared)
    and ``architecture`` (absent: ``small_cnn``), trained by that architecture's :data:`RECIPES`."""
    size = SIZES[identity["size"]]
    architecture = identity.get("architecture", "small_cnn")
    settings = replace(size.settings, heads=identity.get("heads", "shared"), architecture=architecture)
    return replace(size, settings=RECIPES.get(architecture, Recipe()).apply(settings))


@dataclass(frozen=True)
class RoundDraw:
    """The per-round parameters of the original (deep_mr.md §8)."""

    alpha: float
    effect: float

    @classmethod
    def for_round(cls, seed: int, index: int) -> RoundDraw:
        """Draw α ~ N(100, 3) and the effect from ``(seed, index)``."""
        rng = np.random.default_rng([seed, index])
        alpha = float(rng.normal(100.0, 3.0))
        strong = rng.random() < 0.5
        effect = float(max(rng.normal(10.0 if strong else 1.0, 0.5), 0.0))
        return cls(alpha=alpha, effect=effect)


def run_simulation_experiment(
    scenario: str,
    rounds: int,
    out: Path,
    *,
    size: str = "quick",
    seed: int = 0,
    heads: str = "shared",
    architecture: str = DEFAULT_ARCHITECTURE,
    parallel: int | None = None,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) ``rounds`` rounds of ``scenario`` into ``out``; returns the summary.

    Parameters
    ----------
    heads
        The audited ensemble's dense layers (:data:`HEADS`); part of the experiment's identity
        when not ``"shared"``.
    architecture
        The audited ensemble's network (:data:`dmr_ray.demo.ARCHITECTURES`; ``heads`` are
        ``small_cnn``'s); part of the experiment's identity when not ``"small_cnn"``, so that
        directories written before ``pooled_cnn`` became the default keep their identity.
    parallel
        Rounds in flight at once (default: as many as the Ray cluster's CPUs hold at the
        size's ``round_cpus``); 1 runs them one after another.

    Raises
    ------
    InputError
        For an unknown scenario or size, a non-positive round count, a ``parallel`` the
        cluster cannot hold, or an ``out`` that is not this experiment's directory (without
        ``overwrite``) — before anything is written.
    DmrRayError
        Rounds failed (after every other round finished and was kept), naming them.
    """
    from dmr_ray.experiments.rounds import check_parallel

    if scenario not in SCENARIOS:
        close = difflib.get_close_matches(str(scenario), SCENARIOS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"scenario: {scenario!r} is not one of {', '.join(SCENARIOS)}{hint}")
    if size not in SIZES:
        raise InputError(f"size: {size!r} is not one of {', '.join(SIZES)}")
    if not isinstance(rounds, int) or rounds < 1:
        raise InputError(f"rounds: must be a positive integer, got {rounds!r}")
    if heads not in HEADS:
        raise InputError(f"heads: {heads!r} is not one of {', '.join(HEADS)}")
    check_architecture(architecture, heads)
    check_parallel(parallel)
    identity = {"experiment": "simulation", "scenario": scenario, "size": size, "seed": seed}
    if heads != "shared":
        identity["heads"] = heads
    if architecture != "small_cnn":
        identity["architecture"] = architecture
    check_experiment_directory(out, identity, overwrite=overwrite, absent_hints=ABSENT_HINTS)
    missing = [i for i in range(rounds) if overwrite or not round_file(out, i).exists()]
    if missing:
        _run_missing(out, identity, missing, parallel=parallel, overwrite=overwrite, echo=echo)
    stale = [i for i in range(rounds) if json.loads(round_file(out, i).read_text()).get("scoring") != SCORING]
    if stale:
        echo(f"{len(stale)} round(s) scored by an older version: scoring them again from their stored audits")
        for index in stale:
            rescore_round(out, index, scenario=scenario, size=round_size(identity), seed=seed)
    return write_summary(out, identity, rounds)


def round_file(out: Path, index: int) -> Path:
    """``out/rounds/<index>/round.json``: a finished round's record."""
    return out / "rounds" / str(index) / "round.json"


def _run_missing(
    out: Path,
    identity: dict[str, Any],
    missing: list[int],
    *,
    parallel: int | None,
    overwrite: bool,
    echo: Callable[[str], None],
) -> None:
    import ray

    from dmr_ray.engine import connect
    from dmr_ray.errors import DmrRayError
    from dmr_ray.experiments.rounds import RoundOutcome, cluster_cpus, plan_parallel, run_rounds

    size = round_size(identity)
    started = connect()
    try:
        in_flight = plan_parallel(parallel, size.round_cpus, cluster_cpus())
        outputs = ("rounds", "summary.json", "summary.md", *_figure_names(out))
        claim_experiment_directory(out, identity, outputs, overwrite=overwrite)
        at_once = min(in_flight, len(missing))
        echo(f"{len(missing)} round(s) to compute, {at_once} at a time ({size.round_cpus:g} CPUs each)")

        def finished(outcome: RoundOutcome) -> None:
            line = _round_line(outcome.record) if outcome.record is not None else f"FAILED: {outcome.error}"
            echo(f"[round {outcome.index}] {line}")

        work = partial(compute_round, out, scenario=identity["scenario"], size=size, seed=identity["seed"])
        outcomes = run_rounds(
            work,
            missing,
            round_cpus=size.round_cpus,
            parallel=in_flight,
            on_start=lambda i: echo(f"[round {i}] simulating, training and auditing"),
            on_finish=finished,
        )
    finally:
        if started:
            ray.shutdown()
    failed = sorted((o for o in outcomes if o.error), key=lambda o: o.index)
    if failed:
        listed = "; ".join(f"round {o.index}: {o.error}" for o in failed[:3])
        raise DmrRayError(f"{len(failed)} round(s) failed ({listed}); the others are kept, rerun to retry")


def compute_round(out: Path, index: int, *, scenario: str, size: ExperimentSize, seed: int) -> dict[str, Any]:
    """Compute round ``index`` and write ``round.json`` (atomically, last); returns its record.

    Whatever an interrupted attempt left in ``rounds/<index>`` is removed first, except its
    ``model/``: the members it finished (written atomically, from this round's data and seed;
    the directory claim ties ``rounds/`` to this experiment's identity) are kept.
    """
    path = round_file(out, index)
    for item in path.parent.iterdir() if path.parent.exists() else ():
        if item.is_dir() and item.name != "model":
            shutil.rmtree(item)
        elif not item.is_dir():
            item.unlink()
    row = run_round(scenario, index, path.parent, size=size, seed=seed)
    write_text_atomic(path, json.dumps(row, indent=1))
    return row


def write_summary(out: Path, identity: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Aggregate rounds ``0 .. rounds - 1`` into ``summary.json``, ``summary.md`` and the figures."""
    from dmr_ray.experiments.plots import write_experiment_figures
    from dmr_ray.experiments.tables import seed_table_rows

    rows = [json.loads(round_file(out, i).read_text()) for i in range(rounds)]
    full = {
        **identity,
        "rounds": rounds,
        "aggregate": aggregate(rows),
        "model": model_aggregate(rows),
        "per_round": rows,
    }
    summary = {
        **full,
        "seed_table": seed_table_rows([full]),
        "figures": [path.name for path in write_experiment_figures([full], out)],
        "per_round": [{k: v for k, v in r.items() if k != "local"} for r in rows],  # local estimates: round.json
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    write_text_atomic(out / "summary.md", summary_table(summary))
    return summary


def _figure_names(out: Path) -> list[str]:
    summary = out / "summary.json"
    return list(json.loads(summary.read_text()).get("figures", [])) if summary.exists() else []


SCORING = 4
"""Version of the scores in a round record (``round.json``'s ``scoring``). A record of another
version is scored again from the round's stored audit (:func:`rescore_round`), without
simulating afresh, training or auditing. Version 2 added the sequence-context truth, 3 the
direction call with Holm's correction across methods, 4 the dominance test: a direction is
false only where the method presents it as a finding (significant and dominating its reverse,
:func:`dmr_ray.report.direction.direction_status`)."""


def run_round(scenario: str, index: int, work: Path, *, size: ExperimentSize, seed: int) -> dict[str, Any]:
    """Simulate, train, audit and score round ``index``; ``work`` keeps its data and audit."""
    import yaml

    from dmr_ray.deepmr.config import DeepMRConfig
    from dmr_ray.deepmr.pipeline import run_audit
    from dmr_ray.demo import prepare_simulated_audit

    draw, round_seed, sim = _simulate_round(scenario, index, size=size, seed=seed)
    config_path, audit = prepare_simulated_audit(sim, size.settings, work, round_seed)
    if size.engine_actors is not None:
        raw = yaml.safe_load(config_path.read_text())
        raw["engine"] = {"actors": size.engine_actors}
        write_text_atomic(config_path, yaml.safe_dump(raw, sort_keys=False))
    config = DeepMRConfig.load(config_path)
    run_audit(config, echo=lambda _: None, run_info={"simulation": {"scenario": scenario, "round": index}})
    return round_record(index, draw, sim, audit, Path(config.out))


def rescore_round(out: Path, index: int, *, scenario: str, size: ExperimentSize, seed: int) -> dict[str, Any]:
    """Score a finished round again from its stored audit and rewrite ``round.json``; returns the record.

    The round's data are simulated again from its seed (deterministic, seconds) for the truths;
    the audited rows are the sequences of the stored effects.
    """
    from dmr_ray.deepmr.config import DeepMRConfig
    from dmr_ray.store import EffectsStore

    path = round_file(out, index)
    draw, _, sim = _simulate_round(scenario, index, size=size, seed=seed)
    audit_dir = Path(DeepMRConfig.load(path.parent / "audit.yaml").out)
    rows = {simulated_seq_id(i): i for i in range(len(sim.tokens))}
    stored = EffectsStore.open(str(audit_dir / "effects.zarr")).read()["seq_id"]
    audit = np.array([rows[str(seq_id)] for seq_id in stored], dtype=np.int64)
    record = round_record(index, draw, sim, audit, audit_dir)
    write_text_atomic(path, json.dumps(record, indent=1))
    return record


def _simulate_round(scenario: str, index: int, *, size: ExperimentSize, seed: int) -> tuple[RoundDraw, int, Any]:
    """Round ``index``'s draw, seed and simulated data (a deterministic function of its arguments)."""
    from dmr_ray.demo import simulated_sequences
    from dmr_ray.sim import simulate_tf_coop

    settings = size.settings
    draw = RoundDraw.for_round(seed, index)
    round_seed = seed * 100_003 + index
    sim = simulate_tf_coop(
        simulated_sequences(settings),
        length=settings.length,
        alpha=draw.alpha,
        effect=draw.effect,
        seed=round_seed,
        **SCENARIOS[scenario],
    )
    return draw, round_seed, sim


def round_record(index: int, draw: RoundDraw, sim: Any, audit: np.ndarray, audit_dir: Path) -> dict[str, Any]:
    """Score the audit in ``audit_dir`` of ``sim``'s rows ``audit`` against both truths: the round's record.

    The local truth is evaluated in the sequence's own context (``truth``; the function a model
    trained on the data can learn) and, as the original did, with the confounders removed
    (``truth_unconfounded``); see :func:`dmr_ray.sim.tf_coop.local_true_effects`. Without
    confounders they agree.
    """
    from dmr_ray.demo import subset_simulation
    from dmr_ray.sim import local_true_effects
    from dmr_ray.sim.tf_coop import EXPOSURE_MOTIF, OUTCOME_MOTIF

    audited = subset_simulation(sim, audit)
    ids = [simulated_seq_id(i) for i in audit]
    truth = dict(zip(ids, local_true_effects(audited, context="sequence").tolist(), strict=True))
    unconfounded = dict(zip(ids, local_true_effects(audited, context="unconfounded").tolist(), strict=True))
    spans = {
        seq_id: MotifSpans(int(e), EXPOSURE_MOTIF.length, int(o), OUTCOME_MOTIF.length)
        for seq_id, e, o in zip(ids, audited.exposure_start, audited.outcome_start, strict=True)
    }
    return {
        "round": index,
        "scoring": SCORING,
        **asdict(draw),
        "true_global": float(np.nanmean(list(truth.values()))),
        "true_global_unconfounded": float(np.nanmean(list(unconfounded.values()))),
        **score_round(audit_dir, truth, spans, unconfounded=unconfounded),
    }


def score_round(
    audit: Path,
    truth: dict[str, float],
    spans: Mapping[str, MotifSpans],
    *,
    unconfounded: Mapping[str, float],
) -> dict[str, Any]:
    """Score one audit directory against the local truths (``seq_id`` → true local effect).

    ``spans`` (the planted motifs of each audited sequence) give the model's own local effects
    (:mod:`dmr_ray.experiments.model_truth`), against which the local intervals are scored too.
    ``unconfounded`` holds the original's local truths (confounders removed), scored too.

    Returns
    -------
    dict
        ``methods``: per method the forward global estimate, its CI and p, the reverse p,
        whether each direction is a finding (``found``, and ``false_direction`` for the
        unplanted one: significant and dominating its reverse, see
        :func:`~dmr_ray.report.direction.direction_status`) and whether the reverse is
        significant at all (``reverse_significant``), the dominance comparison (``dominance``),
        whether the CI (and the original's estimate ± 2τ) holds the true global effect, local
        coverage (of the truth, and of the model's own local effect), median local CI width,
        power and the number of local estimates, local and global coverage of the
        ``unconfounded`` truths (``*_unconfounded``); ``model``: the median ratio of the model's
        local effect to the truth and the mean of its reverse local effects (planted 0);
        ``baseline``: the naive ratio-mean estimate and its 95 % interval; ``local``: per method
        the scored local estimates (``seq_id``, ``truth``, ``truth_unconfounded``, ``estimate``,
        ``ci_low``, ``ci_high``).
    """
    import pyarrow.parquet as pq

    from dmr_ray.deepmr.pipeline import effect_sd
    from dmr_ray.deepmr.stages import read_local_effects
    from dmr_ray.report.direction import direction_status
    from dmr_ray.store import EffectsStore

    effects = EffectsStore.open(str(audit / "effects.zarr")).read()
    learned = model_local_effects(effects["beta"], effects["seq_id"], spans)
    model_reverse = mean_of([r for _, r in learned.values() if math.isfinite(r)])

    global_table = pq.read_table(audit / "global_effects.parquet")
    local_table = read_local_effects(audit / "local_effects.parquet")
    scales = effect_sd(audit)
    status = direction_status(global_table, scales, alpha=ALPHA)
    global_rows = {(r["exposure"], r["outcome"], r["method"]): r for r in global_table.to_pylist()}
    local = local_table.to_pylist()
    true_global = float(np.nanmean(list(truth.values())))
    true_unconfounded = float(np.nanmean(list(unconfounded.values())))
    methods, estimates = {}, {}
    for method in METHODS:
        forward = global_rows[(EXPOSURE, OUTCOME, method)]
        reverse = global_rows[(OUTCOME, EXPOSURE, method)]
        rows = _scored_local(local, truth, method)
        estimates[method] = [
            {
                "seq_id": r["seq_id"],
                "truth": truth[r["seq_id"]],
                "truth_unconfounded": unconfounded[r["seq_id"]],
                **{k: r[k] for k in ("estimate", "ci_low", "ci_high")},
            }
            for r in rows
        ]
        covered = [r["ci_low"] <= truth[r["seq_id"]] <= r["ci_high"] for r in rows]
        covered_model = [
            r["ci_low"] <= learned[r["seq_id"]][0] <= r["ci_high"]
            for r in rows
            if math.isfinite(learned.get(r["seq_id"], (math.nan,))[0])
        ]
        nonzero = [r for r in rows if truth[r["seq_id"]] != 0.0]
        methods[method] = {
            "estimate": forward["estimate"],
            "ci_low": forward["ci_low"],
            "ci_high": forward["ci_high"],
            "p_value": forward["p_value"],
            "tau": forward["tau"],
            "global_covered": bool(forward["ci_low"] <= true_global <= forward["ci_high"]),
            "global_covered_2tau": bool(abs(forward["estimate"] - true_global) <= 2 * forward["tau"]),
            "reverse_estimate": reverse["estimate"],
            "reverse_p_value": reverse["p_value"],
            "reverse_covers_model": None
            if model_reverse is None or not finite(reverse["ci_low"], reverse["ci_high"])
            else bool(reverse["ci_low"] <= model_reverse <= reverse["ci_high"]),
            "reverse_significant": bool(reverse["p_value"] < ALPHA),
            "false_direction": status[(OUTCOME, EXPOSURE, method)].status == "finding",
            "found": status[(EXPOSURE, OUTCOME, method)].status == "finding",
            "dominance": _dominance_record(status[(EXPOSURE, OUTCOME, method)].dominance),
            "n_local": len(rows),
            "local_coverage": mean_of(covered),
            "local_coverage_model": mean_of(covered_model),
            "local_coverage_unconfounded": mean_of(
                [r["ci_low"] <= unconfounded[r["seq_id"]] <= r["ci_high"] for r in rows]
            ),
            "global_covered_unconfounded": bool(forward["ci_low"] <= true_unconfounded <= forward["ci_high"]),
            "local_ci_width": float(np.median([r["ci_high"] - r["ci_low"] for r in rows])) if rows else None,
            "power": mean_of([r["ci_low"] > 0 or r["ci_high"] < 0 for r in nonzero]),
        }
    model = {
        "local_ratio_median": _median_ratio(learned, truth),
        "local_ratio_median_unconfounded": _median_ratio(learned, unconfounded),
        "reverse_effect_mean": model_reverse,
    }
    return {
        "methods": methods,
        "model": model,
        "direction_call": direction_call(global_table, local_table, scales),
        "baseline": naive_ratio_baseline(effects, true_global),
        "local": estimates,
    }


def _dominance_record(compared: Dominance | None) -> dict[str, float] | None:
    """The planted direction's standardized effect against the reverse's and the one-sided
    p-values of each dominating (:class:`~dmr_ray.stats.dominance.Dominance`), or None."""
    if compared is None:
        return None
    return {k: getattr(compared, k) for k in ("forward", "reverse", "p_forward", "p_reverse")}


def _median_ratio(learned: Mapping[str, tuple[float, float]], truth: Mapping[str, float]) -> float | None:
    """Median over sequences of the model's own forward local effect over the true one."""
    return median_of(
        [f / truth[k] for k, (f, _) in learned.items() if k in truth and truth[k] != 0 and math.isfinite(f)]
    )


def direction_call(global_table: pa.Table, local_table: pa.Table, effect_sd: Mapping[str, float] | None = None) -> str:
    """The report's direction call on the planted pair (:func:`dmr_ray.report.direction.direction_calls`
    of an audit's ``global_effects`` and ``local_effects``, with the tasks' mutational SDs):
    ``"forward"`` (EXPOSURE → OUTCOME is a finding), ``"reverse"`` (the unplanted direction is),
    or the verdict when no direction is called (``"both"``, ``"unresolved"``, ``"none"``,
    ``"sign_conflict"``, ``"untested"``)."""
    from dmr_ray.report.direction import direction_calls

    calls = direction_calls(global_table, local_table, effect_sd=effect_sd)
    call = next(c for c in calls if set(c.pair) == {EXPOSURE, OUTCOME})
    if call.verdict != "supported":
        return call.verdict
    return "forward" if call.direction == (EXPOSURE, OUTCOME) else "reverse"


def _scored_local(local: list[dict[str, Any]], truth: dict[str, float], method: str) -> list[dict[str, Any]]:
    """``method``'s forward local rows with a finite CI and a truth: the rows local scores pool."""
    return [
        r
        for r in local
        if (r["exposure"], r["outcome"], r["method"]) == (EXPOSURE, OUTCOME, method)
        and r["seq_id"] in truth
        and finite(r["ci_low"], r["ci_high"], truth[r["seq_id"]])
    ]


def naive_ratio_baseline(effects: Mapping[str, np.ndarray], true_global: float) -> dict[str, Any]:
    """The naive baseline: per sequence the mean ratio ``by / bx`` over strong mutations.

    ``effects`` is an effects store's content (``EffectsStore.read()``). Strong mutations have
    ``|bx / se_x| ≥ 1.96`` (exposure task 0, outcome task 1 of the ``beta [n, L, 3, T]``
    effects); the global estimate is the mean over sequences and its interval ± 1.96 standard
    errors of that mean.
    """
    bx, by, se_x = effects["beta"][..., 0], effects["beta"][..., 1], effects["se"][..., 0]
    strong = np.abs(bx) >= BASELINE_Z * se_x
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(strong, by / np.where(strong, bx, 1.0), np.nan)
    usable = strong.reshape(len(bx), -1).any(axis=1)
    per_sequence = np.nanmean(ratio.reshape(len(bx), -1)[usable], axis=1)
    estimate = float(per_sequence.mean())
    se = float(per_sequence.std(ddof=1) / math.sqrt(per_sequence.size)) if per_sequence.size > 1 else math.nan
    low, high = estimate - BASELINE_Z * se, estimate + BASELINE_Z * se
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "global_covered": bool(low <= true_global <= high)}


def model_aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The model's own effects over rounds (the median of the rounds' median local model / truth
    ratios, the mean of their mean reverse local effects, planted 0) and how often the report
    called each direction (``direction_calls``: fraction of rounds per call)."""
    models = [r["model"] for r in rows if "model" in r]
    calls = [r["direction_call"] for r in rows if "direction_call" in r]
    return {
        "local_ratio_median": median_of([m["local_ratio_median"] for m in models]),
        "local_ratio_median_unconfounded": median_of([m.get("local_ratio_median_unconfounded") for m in models]),
        "reverse_effect_mean": mean_of([m["reverse_effect_mean"] for m in models]),
        "direction_calls": {c: calls.count(c) / len(calls) for c in sorted(set(calls))},
    }


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Scores over rounds, per method and for the baseline.

    ``global_accuracy`` is the correlation of estimated and true global effects across rounds
    (None with fewer than 3 rounds); ``global_coverage`` the fraction of rounds whose global
    95 % CI holds the true global effect, ``global_coverage_2tau`` the original's check
    (truth within estimate ± 2τ); the local scores pool every round's local estimates.
    ``false_direction_rate`` counts rounds where TAL1 → GATA is the method's finding;
    ``unplanted_finding_rate`` also counts GATA → TAL1 as a finding in a round whose drawn
    effect is 0 (nothing planted either way).
    """
    truth = [r["true_global"] for r in rows]
    out: dict[str, Any] = {}
    for method in METHODS:
        scores = [r["methods"][method] for r in rows]
        weights = [s["n_local"] for s in scores]
        out[method] = {
            "global_accuracy": _correlation([s["estimate"] for s in scores], truth),
            "global_coverage": mean_of([s["global_covered"] for s in scores]),
            "global_coverage_2tau": mean_of([s.get("global_covered_2tau") for s in scores]),
            "global_coverage_unconfounded": mean_of([s.get("global_covered_unconfounded") for s in scores]),
            "local_coverage": weighted_mean([s["local_coverage"] for s in scores], weights),
            "local_coverage_model": weighted_mean([s.get("local_coverage_model") for s in scores], weights),
            "local_coverage_unconfounded": weighted_mean(
                [s.get("local_coverage_unconfounded") for s in scores], weights
            ),
            "local_ci_width": median_of([s["local_ci_width"] for s in scores]),
            "power": weighted_mean([s["power"] for s in scores], weights),
            "false_direction_rate": mean_of([s["false_direction"] for s in scores]),
            "unplanted_finding_rate": mean_of(
                [
                    bool(s["false_direction"]) or (r["effect"] == 0 and bool(s.get("found")))
                    for s, r in zip(scores, rows, strict=True)
                ]
            ),
            "reverse_significant_rate": mean_of([s.get("reverse_significant") for s in scores]),
            "found_rate": mean_of([s.get("found") for s, r in zip(scores, rows, strict=True) if r["effect"] != 0]),
            "reverse_coverage_model": mean_of([s.get("reverse_covers_model") for s in scores]),
        }
    baseline = [r["baseline"] for r in rows]
    out["naive_ratio"] = {
        "global_accuracy": _correlation([b["estimate"] for b in baseline], truth),
        "global_coverage": mean_of([b["global_covered"] for b in baseline]),
    }
    return out


def summary_table(summary: dict[str, Any]) -> str:
    """The markdown summary: the original's table (scenario; global CE true; global CE estimated;
    calibration), the scores per method, the figures and the per-round rows."""
    from dmr_ray.experiments.tables import seed_table_markdown

    agg = summary["aggregate"]
    lines = [
        f"# Simulation experiment: scenario {summary['scenario']}, {summary['rounds']} rounds, "
        f"size {summary['size']}, seed {summary['seed']}",
        "",
        "In the original's layout (deep_mr.md §9; global CE as mean ± SD over rounds, r = their correlation):",
        "",
        seed_table_markdown(summary["seed_table"]),
        "All scores:",
        "",
        "| scenario | method | global CE true (mean) | global CE estimated (mean) | global accuracy | "
        "global coverage (95 % CI) | global coverage (± 2τ) | global coverage of the original's truth | "
        "local coverage | local coverage of the original's truth | local coverage of the model's own "
        "effect | median local CI width | power | false-direction rate (unplanted direction a finding) | "
        "any unplanted finding (also GATA → TAL1 where nothing is planted) | unplanted direction significant | "
        "planted direction found | reverse CI covers the model's own reverse effect |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    true_mean = fmt(float(np.mean([r["true_global"] for r in summary["per_round"]])))
    for method in (*METHODS, "naive_ratio"):
        a = agg[method]
        source = [r["baseline"] if method == "naive_ratio" else r["methods"][method] for r in summary["per_round"]]
        cells = [
            summary["scenario"],
            method,
            true_mean,
            fmt(float(np.mean([s["estimate"] for s in source]))),
            fmt(a["global_accuracy"]),
            fmt(a["global_coverage"]),
            fmt(a.get("global_coverage_2tau")),
            *(
                fmt(a.get(k))
                for k in (
                    "global_coverage_unconfounded",
                    "local_coverage",
                    "local_coverage_unconfounded",
                    "local_coverage_model",
                    "local_ci_width",
                    "power",
                    "false_direction_rate",
                    "unplanted_finding_rate",
                    "reverse_significant_rate",
                    "found_rate",
                    "reverse_coverage_model",
                )
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    model = summary.get("model", {})
    lines += [
        "",
        "The truth is the local effect in each sequence's own context (its confounder motif kept, the "
        "sequence-independent confounder averaged out); the original's truth removes both confounders "
        "(dmr_ray.sim.tf_coop.local_true_effects). Without confounders they agree.",
        "",
        f"The model's own effects (the truth's substitutions through the audited ensemble): median local "
        f"model / truth ratio {fmt(model.get('local_ratio_median'))} (to the original's truth "
        f"{fmt(model.get('local_ratio_median_unconfounded'))}), mean reverse local effect "
        f"{fmt(model.get('reverse_effect_mean'))} (planted 0). The report's direction call, fraction of rounds: "
        + (", ".join(f"{call} {share:.2f}" for call, share in model.get("direction_calls", {}).items()) or "–")
        + ".",
    ]
    from dmr_ray.deepmr.config import DEFAULT_ESTIMATOR

    lines += [
        "",
        f"Per round ({DEFAULT_ESTIMATOR}, the default estimator):",
        "",
        "| round | α | effect | true global | estimate | 95 % CI | reverse p |",
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for r in summary["per_round"]:
        m = r["methods"][DEFAULT_ESTIMATOR]
        lines.append(
            f"| {r['round']} | {r['alpha']:.1f} | {r['effect']:.2f} | {fmt(r['true_global'])} | {fmt(m['estimate'])} "
            f"| {fmt(m['ci_low'])} – {fmt(m['ci_high'])} | {fmt(m['reverse_p_value'])} |"
        )
    lines += ["", "Figures:", ""] + [f"![{name}]({name})" for name in summary.get("figures", [])]
    return "\n".join(lines) + "\n"


def _round_line(row: dict[str, Any]) -> str:
    parts = [f"true {row['true_global']:.3f}"]
    for method, m in row["methods"].items():
        parts.append(f"{method} {m['estimate']:.3f} (local coverage {fmt(m['local_coverage'])})")
    return "; ".join(parts)


def _correlation(estimates: Sequence[float], truth: Sequence[float]) -> float | None:
    if len(estimates) < 3 or np.std(estimates) == 0 or np.std(truth) == 0:
        return None
    return float(np.corrcoef(estimates, truth)[0, 1])

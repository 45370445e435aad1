"""The Deep MR simulation study (deep_mr.md §8–9): planted GATA → TAL1 effects, scored per round.

Each round ``i`` draws α ~ N(100, 3) and an effect (N(10, .5) with p = .5, else N(1, .5),
clipped at 0) from ``seed`` and ``i``, simulates the scenario's data, trains an ensemble, runs
the whole Deep MR audit (:func:`dmr_ray.deepmr.pipeline.run_audit`) and scores its local and
global estimates against the planted truth joined on ``seq_id``. A finished round is kept as
``rounds/<i>/round.json``; a rerun computes only the missing rounds.

Directory layout::

    .dmr_ray/experiment.json   marks the directory and records scenario, size and seed
    rounds/<i>/                data, model and audit of round i (resumable)
    rounds/<i>/round.json      the round's scores
    summary.json               aggregate per method and the per-round rows
    summary.md                 the table in the original's layout
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmr_ray._atomic import write_text_atomic
from dmr_ray.demo import DemoSettings
from dmr_ray.errors import InputError
from dmr_ray.experiments.model_truth import MotifSpans, model_local_effects

SCENARIOS: dict[str, dict[str, Any]] = {
    "none": {},
    "sequence": {"confounder_motif": True},
    "random": {"confounder_prob": 0.5},
    "both": {"confounder_motif": True, "confounder_prob": 0.5},
}
"""The four scenarios of the original (REPRODUCIBILITY.md) as :func:`simulate_tf_coop` flags."""

METHODS = ("deepmr", "ivw", "weighted_median")
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
        ``engine.actors`` of the round's audit: ``None`` keeps the demo's Ray actors, 0 runs
        ISM and local MR in this process.
    """

    settings: DemoSettings
    engine_actors: int | None = None


SIZES: dict[str, ExperimentSize] = {
    "quick": ExperimentSize(DemoSettings(n_train=4000, n_calibration=500, n_audit=32, members=5, epochs=25)),
    "full": ExperimentSize(DemoSettings(n_train=10_000, n_calibration=1000, n_audit=100, members=5, epochs=50)),
    "tiny": ExperimentSize(
        DemoSettings(n_train=300, n_calibration=100, n_audit=6, members=2, epochs=1), engine_actors=0
    ),
}
"""Round sizes: ``quick`` (about a minute on 2 cores), ``full`` (the README command's
training set, 10,000 sequences), ``tiny`` (tests only: in-process engine)."""

MARKER = Path(".dmr_ray") / "experiment.json"


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
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) ``rounds`` rounds of ``scenario`` into ``out``; returns the summary.

    Raises
    ------
    InputError
        For an unknown scenario or size, a non-positive round count, or an ``out`` that is
        not this experiment's directory (without ``overwrite``) — before anything is written.
    """
    if scenario not in SCENARIOS:
        raise InputError(f"scenario: {scenario!r} is not one of {', '.join(SCENARIOS)}")
    if size not in SIZES:
        raise InputError(f"size: {size!r} is not one of {', '.join(SIZES)}")
    if not isinstance(rounds, int) or rounds < 1:
        raise InputError(f"rounds: must be a positive integer, got {rounds!r}")
    identity = {"experiment": "simulation", "scenario": scenario, "size": size, "seed": seed}
    _claim(out, identity, overwrite)
    rows = []
    for index in range(rounds):
        path = out / "rounds" / str(index) / "round.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
            continue
        echo(f"[round {index}] simulating, training and auditing")
        row = run_round(scenario, index, path.parent, size=SIZES[size], seed=seed)
        write_text_atomic(path, json.dumps(row, indent=1))
        echo(f"[round {index}] " + _round_line(row))
        rows.append(row)
    summary = {**identity, "rounds": rounds, "aggregate": aggregate(rows), "per_round": rows}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    write_text_atomic(out / "summary.md", summary_table(summary))
    return summary


def _claim(out: Path, identity: dict[str, Any], overwrite: bool) -> None:
    marker = out / MARKER
    if out.exists() and any(out.iterdir()):
        if not marker.exists():
            raise InputError(f"{out} exists and is not a dmr_ray simulation experiment directory; choose another --out")
        recorded = json.loads(marker.read_text())
        if overwrite:
            for name in ("rounds", "summary.json", "summary.md"):
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        elif recorded != identity:
            raise InputError(f"{out} holds the experiment {recorded}, not {identity}; use --overwrite or another --out")
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(marker, json.dumps(identity))


def run_round(scenario: str, index: int, work: Path, *, size: ExperimentSize, seed: int) -> dict[str, Any]:
    """Simulate, train, audit and score round ``index``; ``work`` keeps its data and audit."""
    import yaml

    from dmr_ray.deepmr.config import DeepMRConfig
    from dmr_ray.deepmr.pipeline import run_audit
    from dmr_ray.demo import prepare_simulated_audit, simulated_sequences, subset_simulation
    from dmr_ray.sim import local_true_effects, simulate_tf_coop
    from dmr_ray.sim.tf_coop import EXPOSURE_MOTIF, OUTCOME_MOTIF

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
    config_path, audit = prepare_simulated_audit(sim, settings, work, round_seed)
    if size.engine_actors is not None:
        raw = yaml.safe_load(config_path.read_text())
        raw["engine"] = {"actors": size.engine_actors}
        write_text_atomic(config_path, yaml.safe_dump(raw, sort_keys=False))
    config = DeepMRConfig.load(config_path)
    audited = subset_simulation(sim, audit)
    truth = local_true_effects(audited)
    ids = [f"sim{i:05d}" for i in audit]
    spans = {
        seq_id: MotifSpans(int(e), EXPOSURE_MOTIF.length, int(o), OUTCOME_MOTIF.length)
        for seq_id, e, o in zip(ids, audited.exposure_start, audited.outcome_start, strict=True)
    }
    run_audit(config, echo=lambda _: None, run_info={"simulation": {"scenario": scenario, "round": index}})
    scores = score_round(Path(config.out), dict(zip(ids, truth.tolist(), strict=True)), spans)
    return {"round": index, **asdict(draw), "true_global": float(np.nanmean(truth)), **scores}


def score_round(audit: Path, truth: dict[str, float], spans: Mapping[str, MotifSpans]) -> dict[str, Any]:
    """Score one audit directory against the local truths (``seq_id`` → true local effect).

    ``spans`` (the planted motifs of each audited sequence) give the model's own local effects
    (:mod:`dmr_ray.experiments.model_truth`), against which the local intervals are scored too.

    Returns
    -------
    dict
        ``methods``: per method the forward global estimate, its CI and p, the reverse p,
        whether the CI (and the original's estimate ± 2τ) holds the true global effect, local
        coverage (of the truth, and of the model's own local effect), median local CI width,
        power and the number of local estimates; ``model``: the median ratio of the model's
        local effect to the truth and the mean of its reverse local effects (planted 0);
        ``baseline``: the naive ratio-mean estimate and its 95 % interval.
    """
    import pyarrow.parquet as pq

    from dmr_ray.deepmr.stages import read_local_effects
    from dmr_ray.store import EffectsStore

    effects = EffectsStore.open(str(audit / "effects.zarr")).read()
    learned = model_local_effects(effects["beta"], effects["seq_id"], spans)

    global_rows = {
        (r["exposure"], r["outcome"], r["method"]): r
        for r in pq.read_table(audit / "global_effects.parquet").to_pylist()
    }
    local = read_local_effects(audit / "local_effects.parquet").to_pylist()
    true_global = float(np.nanmean(list(truth.values())))
    methods = {}
    for method in METHODS:
        forward = global_rows[(EXPOSURE, OUTCOME, method)]
        reverse = global_rows[(OUTCOME, EXPOSURE, method)]
        rows = [
            r
            for r in local
            if (r["exposure"], r["outcome"], r["method"]) == (EXPOSURE, OUTCOME, method)
            and r["seq_id"] in truth
            and _finite(r["ci_low"], r["ci_high"], truth[r["seq_id"]])
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
            "false_direction": bool(reverse["p_value"] < ALPHA),
            "n_local": len(rows),
            "local_coverage": _mean(covered),
            "local_coverage_model": _mean(covered_model),
            "local_ci_width": float(np.median([r["ci_high"] - r["ci_low"] for r in rows])) if rows else None,
            "power": _mean([r["ci_low"] > 0 or r["ci_high"] < 0 for r in nonzero]),
        }
    ratios = [f / truth[k] for k, (f, _) in learned.items() if k in truth and truth[k] != 0 and math.isfinite(f)]
    model = {
        "local_ratio_median": _median(ratios),
        "reverse_effect_mean": _mean([r for _, r in learned.values() if math.isfinite(r)]),
    }
    return {
        "methods": methods,
        "model": model,
        "baseline": naive_ratio_baseline(audit / "effects.zarr", true_global),
    }


def naive_ratio_baseline(effects: Path, true_global: float) -> dict[str, Any]:
    """The naive baseline: per sequence the mean ratio ``by / bx`` over strong mutations.

    Strong mutations have ``|bx / se_x| ≥ 1.96`` (exposure task 0, outcome task 1 of the
    ``beta [n, L, 3, T]`` effects); the global estimate is the mean over sequences and its
    interval ± 1.96 standard errors of that mean.
    """
    from dmr_ray.store import EffectsStore

    data = EffectsStore.open(str(effects)).read()
    bx, by, se_x = data["beta"][..., 0], data["beta"][..., 1], data["se"][..., 0]
    strong = np.abs(bx) >= BASELINE_Z * se_x
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(strong, by / np.where(strong, bx, 1.0), np.nan)
    usable = strong.reshape(len(bx), -1).any(axis=1)
    per_sequence = np.nanmean(ratio.reshape(len(bx), -1)[usable], axis=1)
    estimate = float(per_sequence.mean())
    se = float(per_sequence.std(ddof=1) / math.sqrt(per_sequence.size)) if per_sequence.size > 1 else math.nan
    low, high = estimate - BASELINE_Z * se, estimate + BASELINE_Z * se
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "global_covered": bool(low <= true_global <= high)}


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Scores over rounds, per method and for the baseline.

    ``global_accuracy`` is the correlation of estimated and true global effects across rounds
    (None with fewer than 3 rounds); ``global_coverage`` the fraction of rounds whose global
    95 % CI holds the true global effect, ``global_coverage_2tau`` the original's check
    (truth within estimate ± 2τ); the local scores pool every round's local estimates.
    """
    truth = [r["true_global"] for r in rows]
    out: dict[str, Any] = {}
    for method in METHODS:
        scores = [r["methods"][method] for r in rows]
        weights = [s["n_local"] for s in scores]
        out[method] = {
            "global_accuracy": _correlation([s["estimate"] for s in scores], truth),
            "global_coverage": _mean([s["global_covered"] for s in scores]),
            "global_coverage_2tau": _mean([s.get("global_covered_2tau") for s in scores]),
            "local_coverage": _weighted([s["local_coverage"] for s in scores], weights),
            "local_coverage_model": _weighted([s.get("local_coverage_model") for s in scores], weights),
            "local_ci_width": _median([s["local_ci_width"] for s in scores]),
            "power": _weighted([s["power"] for s in scores], weights),
            "false_direction_rate": _mean([s["false_direction"] for s in scores]),
        }
    models = [r["model"] for r in rows if "model" in r]
    out["model"] = {
        "local_ratio_median": _median([m["local_ratio_median"] for m in models]),
        "reverse_effect_mean": _mean([m["reverse_effect_mean"] for m in models]),
    }
    baseline = [r["baseline"] for r in rows]
    out["naive_ratio"] = {
        "global_accuracy": _correlation([b["estimate"] for b in baseline], truth),
        "global_coverage": _mean([b["global_covered"] for b in baseline]),
    }
    return out


def summary_table(summary: dict[str, Any]) -> str:
    """The original's layout: scenario; global CE true; global CE estimated; calibration."""
    agg = summary["aggregate"]
    lines = [
        f"# Simulation experiment: scenario {summary['scenario']}, {summary['rounds']} rounds, "
        f"size {summary['size']}, seed {summary['seed']}",
        "",
        "| scenario | method | global CE true (mean) | global CE estimated (mean) | global accuracy | "
        "global coverage (95 % CI) | global coverage (± 2τ) | local coverage | local coverage of the model's own "
        "effect | median local CI width | power | false-direction rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    true_mean = _fmt(float(np.mean([r["true_global"] for r in summary["per_round"]])))
    for method in (*METHODS, "naive_ratio"):
        a = agg[method]
        source = [r["baseline"] if method == "naive_ratio" else r["methods"][method] for r in summary["per_round"]]
        cells = [
            summary["scenario"],
            method,
            true_mean,
            _fmt(float(np.mean([s["estimate"] for s in source]))),
            _fmt(a["global_accuracy"]),
            _fmt(a["global_coverage"]),
            _fmt(a.get("global_coverage_2tau")),
            *(
                _fmt(a.get(k))
                for k in ("local_coverage", "local_coverage_model", "local_ci_width", "power", "false_direction_rate")
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    model = agg.get("model", {})
    lines += [
        "",
        f"The model's own effects (the truth's substitutions through the audited ensemble): median local "
        f"model / truth ratio {_fmt(model.get('local_ratio_median'))}, mean reverse local effect "
        f"{_fmt(model.get('reverse_effect_mean'))} (planted 0).",
    ]
    lines += ["", "Per round (deepmr):", "", "| round | α | effect | true global | estimate | 95 % CI | reverse p |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in summary["per_round"]:
        m = r["methods"]["deepmr"]
        lines.append(
            f"| {r['round']} | {r['alpha']:.1f} | {r['effect']:.2f} | {_fmt(r['true_global'])} | {_fmt(m['estimate'])} "
            f"| {_fmt(m['ci_low'])} – {_fmt(m['ci_high'])} | {_fmt(m['reverse_p_value'])} |"
        )
    return "\n".join(lines) + "\n"


def _round_line(row: dict[str, Any]) -> str:
    parts = [f"true {row['true_global']:.3f}"]
    for method, m in row["methods"].items():
        parts.append(f"{method} {m['estimate']:.3f} (local coverage {_fmt(m['local_coverage'])})")
    return "; ".join(parts)


def _finite(*values: Any) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _mean(values: Sequence[Any]) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _weighted(values: Sequence[float | None], weights: Sequence[int]) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None and w > 0]
    if not pairs:
        return None
    return float(sum(v * w for v, w in pairs) / sum(w for _, w in pairs))


def _median(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.median(kept)) if kept else None


def _correlation(estimates: Sequence[float], truth: Sequence[float]) -> float | None:
    if len(estimates) < 3 or np.std(estimates) == 0 or np.std(truth) == 0:
        return None
    return float(np.corrcoef(estimates, truth)[0, 1])


def _fmt(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3g}"

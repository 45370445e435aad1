"""The DeepSEA-style experiment: TF binding opens accessibility; the audit must find that, not the reverse.

A multi-task DeepSEA-style ensemble (:class:`~dmr_ray.models.architectures.DeepSEA`, scaled
down; sigmoid outputs) is trained on the simulation of :mod:`dmr_ray.sim.accessibility`: peak
calls of four TFs (JASPAR2024 CTCF MA0139.2, FOXA1 MA0148.5, HNF4A MA0114.5, CEBPA MA0102.5)
and of a DNase-like accessibility task that the TFs' occupancy opens (CEBPA with strength 0).
The whole Deep MR audit (:func:`dmr_ray.deepmr.pipeline.run_audit`, ISM and local MR on Ray)
then runs on the pairs TF → DNase, DNase → TF and, as negative controls, TF → TF, and every
estimate is scored against the planted truth joined on ``seq_id``.

Each step is a :class:`~dmr_ray.stage.Stage` of an :class:`~dmr_ray.stage.AuditDirectory`
(kind ``experiment_deepsea``): a rerun reuses finished steps (training per ensemble member,
the audit per chunk and stage) and ``--overwrite`` removes only the outputs these stages
recorded. Directory layout::

    .dmr_ray/                  marker and one record per stage
    data/simulation.npz        every simulated row: tokens, labels, oracle probabilities, motif starts
    data/sequences.zarr        the audited sequences (ids ``seqNNNNN``: the row in the simulation)
    data/truth.parquet         planted local truth per (seq_id, exposure, outcome)
    data/simulation.json       parameters (JASPAR IDs), split sizes, motif and label frequencies
    model/                     ensemble members (safetensors), model.yaml, fit.json (held-out fit)
    audit.yaml, audit/         the Deep MR audit's configuration and directory
    summary.json, summary.md   estimates against planted truth per pair and method, direction calls
    figures/                   estimates_vs_truth.png; heatmap_truth.png, heatmap_<method>.png
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dmr_ray._atomic import write_atomic, write_parquet_atomic, write_text_atomic
from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.experiments.tables import finite, fmt, mean_of, median_of
from dmr_ray.sim.accessibility import ACCESSIBILITY, AccessibilityParams
from dmr_ray.stage import AuditDirectory, Stage

KIND = "experiment_deepsea"
DEEPSEA = "dmr_ray.models.architectures:deepsea"
METHODS = ("deepmr", "ivw", "weighted_median")
ALPHA = 0.05
SCORING = 2
"""Version of the summary's scoring, part of the summary stage's identity (a rerun scores an
older summary again from the stored audit). 2: a significant direction that does not dominate
its reverse pair is no finding (:func:`dmr_ray.report.direction.direction_status`)."""
FIGURE_DPI = 110


@dataclass(frozen=True)
class DeepSEASize:
    """Data, model, training and audit sizes of one run.

    Attributes
    ----------
    n_train, n_test
        Simulated training sequences and held-out sequences for the model's fit.
    per_tf
        Audited sequences per TF: held-out sequences that carry that TF's motif.
    members
        Ensemble size (replicate inference needs at least 2).
    epochs, batch_size, learning_rate
        Training recipe (:func:`dmr_ray.models.training.train_ensemble`, Brier loss on 0/1 labels).
    channels, hidden, kernel, pool, dropout
        The DeepSEA architecture's sizes.
    iterations
        Bootstrap iterations of the MR estimators.
    controls
        Also audit every TF → TF pair (planted effect 0).
    engine_actors
        ``engine.actors`` of the audit (0: in this process).
    report
        Write the audit's HTML report.
    """

    n_train: int
    n_test: int
    per_tf: int
    members: int
    epochs: int
    channels: tuple[int, ...]
    hidden: int
    batch_size: int = 100
    learning_rate: float = 1e-2
    kernel: int = 8
    pool: int = 3
    dropout: float = 0.1
    iterations: int = 1000
    controls: bool = True
    engine_actors: int = 2
    report: bool = True


SIZES: dict[str, DeepSEASize] = {
    "quick": DeepSEASize(n_train=8000, n_test=1000, per_tf=16, members=5, epochs=30, channels=(64, 32, 32), hidden=32),
    "full": DeepSEASize(
        n_train=30_000, n_test=2000, per_tf=40, members=5, epochs=40, channels=(128, 64, 64), hidden=64
    ),
    "tiny": DeepSEASize(
        n_train=200,
        n_test=50,
        per_tf=2,
        members=2,
        epochs=1,
        channels=(4, 4, 4),
        hidden=4,
        iterations=50,
        controls=False,
        engine_actors=0,
        report=False,
    ),
}
"""``quick`` (a few minutes on 2 cores), ``full`` (more data, a wider model), ``tiny`` (tests)."""


def run_deepsea_experiment(
    out: Path,
    *,
    size: str = "quick",
    seed: int = 0,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the DeepSEA-style experiment into ``out``; returns the summary.

    Raises
    ------
    InputError
        For an unknown size or a negative seed, before anything is written.
    ResumeConflictError
        When ``out`` holds files dmr_ray did not write (with ``overwrite``) or another kind of run.
    """
    if size not in SIZES:
        raise InputError(f"size: {size!r} is not one of {', '.join(SIZES)}")
    if not is_int(seed) or seed < 0:
        raise InputError(f"seed: must be a non-negative integer, got {seed!r}")
    plan = SIZES[size]
    params = AccessibilityParams()
    directory = AuditDirectory.claim(out, KIND, overwrite=overwrite)

    def run(stage: Stage, func: Callable[[], str]) -> str:
        result = directory.run(stage, func)
        echo(f"{stage.title:>10}: {result.summary} ({result.seconds:.1f} s)")
        return stage.digest

    data_identity = {"params": params.describe(), "seed": seed, "sizes": [plan.n_train, plan.n_test, plan.per_tf]}
    simulated = run(
        Stage("simulation", data_identity, ("data",)), lambda: simulate_data(out / "data", params, plan, seed)
    )
    training = {"simulation": simulated, **_architecture(plan, params), "recipe": _recipe(plan), "seed": seed}
    trained = run(
        Stage("training", training, ("model",), resumable=True),
        lambda: train_deepsea_ensemble(out / "data", out / "model", params, plan, seed),
    )
    config = audit_config(plan, params)
    audited = run(
        Stage("audit", {"training": trained, "config": config}, ("audit.yaml", "audit"), resumable=True),
        lambda: run_deepsea_audit(out, config),
    )
    identity = {"audit": audited, "alpha": ALPHA, "scoring": SCORING, "size": size, "seed": seed}
    run(Stage("summary", identity, ("summary.json", "summary.md", "figures")), lambda: summarise(out, size, seed))
    return json.loads((out / "summary.json").read_text())


def simulate_data(data: Path, params: AccessibilityParams, plan: DeepSEASize, seed: int) -> str:
    """Simulate, choose the audited sequences and compute their planted truth into ``data``."""
    import pyarrow as pa

    from dmr_ray.sim.accessibility import local_true_effects, simulate_accessibility
    from dmr_ray.store import write_sequence_store

    data.mkdir(parents=True, exist_ok=True)
    pool = 8 * plan.per_tf * len(params.tfs)
    sim = simulate_accessibility(plan.n_train + plan.n_test + pool, params, seed=seed)
    audited = audited_rows(sim.has_motif, plan.n_train + plan.n_test, plan.per_tf)
    ids = np.array([f"seq{i:05d}" for i in audited])
    write_atomic(data / "simulation.npz", partial(_save_simulation, sim=sim, audited=audited))
    write_sequence_store(
        data / "sequences.zarr",
        sim.tokens[audited],
        ids,
        source="dmr_ray DeepSEA-style accessibility simulation",
        chunk_size=16,
        overwrite=True,
    )
    columns: dict[str, list] = {"seq_id": [], "exposure": [], "outcome": [], "truth": []}
    for exposure, outcome in pairs(params, controls=True):
        truth = local_true_effects(sim.tokens[audited], params, exposure, outcome)
        columns["seq_id"] += ids.tolist()
        columns["exposure"] += [exposure] * ids.size
        columns["outcome"] += [outcome] * ids.size
        columns["truth"] += truth.tolist()
    write_parquet_atomic(data / "truth.parquet", pa.table(columns))
    train = slice(0, plan.n_train)
    tf_names = [tf.name for tf in params.tfs]
    facts = {
        **params.describe(),
        "seed": seed,
        "n_train": plan.n_train,
        "n_test": plan.n_test,
        "n_audited": int(audited.size),
        "motif_frequency": dict(zip(tf_names, sim.has_motif[train].mean(axis=0).tolist(), strict=True)),
        "label_rate": dict(zip(params.task_names, sim.labels[train].mean(axis=0).tolist(), strict=True)),
    }
    write_text_atomic(data / "simulation.json", json.dumps(facts, indent=1))
    return f"{len(sim.tokens)} sequences, {audited.size} audited"


def _save_simulation(path: Path, *, sim: Any, audited: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.savez(
            handle,
            tokens=sim.tokens,
            labels=sim.labels,
            probabilities=sim.probabilities,
            motif_start=sim.motif_start,
            audited=audited,
        )


def audited_rows(has_motif: np.ndarray, first: int, per_tf: int) -> np.ndarray:
    """Rows from ``first`` on: for each TF the first ``per_tf`` carriers of its motif not yet taken.

    Parameters
    ----------
    has_motif
        ``bool [n, K]``.
    first
        The first row that may be audited (rows before it train and test the model).
    per_tf
        Carriers per TF.

    Returns
    -------
    numpy.ndarray
        ``int64 [m]`` sorted rows, ``m ≤ K · per_tf``.
    """
    taken: list[int] = []
    for k in range(has_motif.shape[1]):
        carriers = [int(i) for i in np.flatnonzero(has_motif[first:, k]) + first if i not in taken]
        taken += carriers[:per_tf]
    return np.array(sorted(taken), dtype=np.int64)


def pairs(params: AccessibilityParams, *, controls: bool) -> list[tuple[str, str]]:
    """TF → accessibility, accessibility → TF, then (``controls``) every TF → TF."""
    tfs = [tf.name for tf in params.tfs]
    out = [(tf, ACCESSIBILITY) for tf in tfs] + [(ACCESSIBILITY, tf) for tf in tfs]
    if controls:
        out += [(a, b) for a in tfs for b in tfs if a != b]
    return out


def _architecture(plan: DeepSEASize, params: AccessibilityParams) -> dict[str, Any]:
    return {
        "length": params.length,
        "channels": list(plan.channels),
        "kernel": plan.kernel,
        "pool": plan.pool,
        "dropout": plan.dropout,
        "hidden": plan.hidden,
        "n_tasks": len(params.task_names),
    }


def _recipe(plan: DeepSEASize) -> dict[str, Any]:
    return {
        "members": plan.members,
        "epochs": plan.epochs,
        "batch_size": plan.batch_size,
        "learning_rate": plan.learning_rate,
    }


def train_deepsea_ensemble(
    data: Path, model_dir: Path, params: AccessibilityParams, plan: DeepSEASize, seed: int
) -> str:
    """Train the missing ensemble members on the training rows, write ``model.yaml`` and the fit.

    Member i is trained from seed ``seed + i`` (:func:`~dmr_ray.demo.train_missing_members`), so
    a member trained after an interruption equals the one an uninterrupted run would have
    trained. ``fit.json`` compares the ensemble-mean prediction on the held-out rows with the
    oracle probabilities (Pearson r, RMSE) and the 0/1 labels.
    """
    import yaml

    from dmr_ray.demo import train_missing_members
    from dmr_ray.models.architectures import deepsea

    sim = np.load(data / "simulation.npz")
    kwargs = _architecture(plan, params)
    model_dir.mkdir(parents=True, exist_ok=True)
    weights = [model_dir / f"member{i}.safetensors" for i in range(plan.members)]
    trained = train_missing_members(
        lambda _: deepsea(**kwargs),
        sim["tokens"][: plan.n_train],
        sim["labels"][: plan.n_train],
        weights,
        seed=seed,
        threads=1,
        epochs=plan.epochs,
        batch_size=plan.batch_size,
        lr=plan.learning_rate,
    )
    spec = {
        "entrypoint": DEEPSEA,
        "kwargs": kwargs,
        "weights": [w.name for w in weights],
        "input_length": params.length,
        "outputs": [{"name": name, "index": i} for i, name in enumerate(params.task_names)],
        "replicates": {"kind": "ensemble"},
    }
    write_text_atomic(model_dir / "model.yaml", yaml.safe_dump(spec, sort_keys=False))
    fit = held_out_fit(model_dir / "model.yaml", sim, plan, params.task_names)
    write_text_atomic(model_dir / "fit.json", json.dumps(fit, indent=1))
    mean_r = float(np.mean([f["r_oracle"] for f in fit.values()]))
    return f"{trained} of {plan.members} members trained; held-out r with the oracle {mean_r:.3f} (mean over tasks)"


def held_out_fit(spec_path: Path, sim: Any, plan: DeepSEASize, tasks: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per task: Pearson r and RMSE of the ensemble mean against the oracle probabilities, and
    the Brier score against the labels, on the held-out rows."""
    import torch

    from dmr_ray.alphabet import tokens_to_onehot
    from dmr_ray.models import load_model_spec
    from dmr_ray.uncertainty import build_predictor

    rows = slice(plan.n_train, plan.n_train + plan.n_test)
    predictor = build_predictor(load_model_spec(spec_path), device="cpu")
    with torch.inference_mode():
        onehot = torch.from_numpy(np.ascontiguousarray(tokens_to_onehot(sim["tokens"][rows])))
        mean = predictor.predict_all(onehot).mean(dim=0).double().numpy()
    oracle, labels = sim["probabilities"][rows], sim["labels"][rows]
    return {
        task: {
            "r_oracle": float(np.corrcoef(mean[:, t], oracle[:, t])[0, 1]),
            "rmse_oracle": float(np.sqrt(np.mean((mean[:, t] - oracle[:, t]) ** 2))),
            "brier": float(np.mean((mean[:, t] - labels[:, t]) ** 2)),
            "brier_oracle": float(np.mean((oracle[:, t] - labels[:, t]) ** 2)),
        }
        for t, task in enumerate(tasks)
    }


def audit_config(plan: DeepSEASize, params: AccessibilityParams) -> dict[str, Any]:
    """The Deep MR configuration (paths relative to the experiment directory).

    As the demo's, except: no recalibration (it fits a Gaussian forecast to continuous labels;
    these labels are 0/1 peak calls) and the pairs of :func:`pairs`.
    """
    return {
        "store": "data/sequences.zarr",
        "model": "model/model.yaml",
        "out": "audit",
        "pairs": [list(p) for p in pairs(params, controls=plan.controls)],
        "instruments": {"filter": "zscore", "threshold": 1.0, "direction_filter": True},
        "methods": {"estimators": list(METHODS), "iterations": plan.iterations},
        "meta": {"method": "DL"},
        "report": {"enabled": plan.report},
        "engine": {"actors": plan.engine_actors},
        "ray": {"num_cpus": 2},
    }


def run_deepsea_audit(out: Path, config: dict[str, Any]) -> str:
    """Write ``audit.yaml`` and run (or resume) the Deep MR audit it describes."""
    import yaml

    from dmr_ray.deepmr.config import DeepMRConfig
    from dmr_ray.deepmr.pipeline import run_audit

    path = out / "audit.yaml"
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))
    info = {"simulation": "DeepSEA-style accessibility (dmr_ray.sim.accessibility); planted TF → DNase only"}
    loaded = DeepMRConfig.load(path)
    summary = run_audit(loaded, echo=lambda _: None, run_info=info)
    return f"{len(config['pairs'])} pairs audited in {summary.out.relative_to(out)}/" + (
        f", report {summary.report.relative_to(out)}" if loaded.report.enabled else ""
    )


def summarise(out: Path, size: str, seed: int) -> str:
    """Score the audit against the planted truth; write ``summary.json``, ``summary.md`` and the figures."""
    import pyarrow.parquet as pq

    from dmr_ray.deepmr.pipeline import effect_sd
    from dmr_ray.deepmr.stages import read_local_effects
    from dmr_ray.report.direction import direction_calls, direction_status

    audit = out / "audit"
    global_table = pq.read_table(audit / "global_effects.parquet")
    local_table = read_local_effects(audit / "local_effects.parquet")
    scales = effect_sd(audit)
    status = {key: s.status for key, s in direction_status(global_table, scales, alpha=ALPHA).items()}
    truth = {
        (r["seq_id"], r["exposure"], r["outcome"]): r["truth"]
        for r in pq.read_table(out / "data" / "truth.parquet").to_pylist()
    }
    rows = score_pairs(global_table.to_pylist(), local_table.to_pylist(), truth, status)
    calls = [
        {"pair": list(c.pair), "verdict": c.verdict, "direction": c.direction and list(c.direction), "text": c.text}
        for c in direction_calls(global_table, local_table, alpha=ALPHA, effect_sd=scales)
    ]
    summary = {
        "experiment": "deepsea",
        "size": size,
        "seed": seed,
        "sizes": asdict(SIZES[size]),
        "simulation": json.loads((out / "data" / "simulation.json").read_text()),
        "model_fit": json.loads((out / "model" / "fit.json").read_text()),
        "alpha": ALPHA,
        "pairs": rows,
        "direction_calls": [{**c, **_planted_direction(c, rows)} for c in calls],
        "headline": headline(rows),
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    write_text_atomic(out / "summary.md", summary_markdown(summary))
    figures = write_figures(out / "figures", global_table, rows)
    return f"{len(rows)} pair × method rows scored; figures: {', '.join(figures)}"


def score_pairs(
    global_rows: Sequence[dict[str, Any]],
    local_rows: Sequence[dict[str, Any]],
    truth: dict[tuple[str, str, str], float],
    status: Mapping[tuple[str, str, str], str],
) -> list[dict[str, Any]]:
    """One row per (exposure, outcome, method) of the global table, scored against the truth.

    ``status`` is each row's :func:`~dmr_ray.report.direction.direction_status` (``finding``,
    ``not_dominant``, ...): a significant row that does not dominate its reverse pair is no finding.

    The planted global effect is the mean of the local truths over the regions the method's
    pooled estimate rests on (the local rows with a finite estimate); over every audited
    sequence when there is none. ``local_coverage`` is the fraction of finite local 95 % CIs
    that hold their sequence's truth.
    """
    by_pair: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in local_rows:
        key = (r["exposure"], r["outcome"], r["method"])
        if finite(r["estimate"], r["ci_low"], r["ci_high"]) and (r["seq_id"], *key[:2]) in truth:
            by_pair.setdefault(key, []).append(r)
    scored = []
    for g in sorted(global_rows, key=_pair_order):
        exposure, outcome, method = g["exposure"], g["outcome"], g["method"]
        local = by_pair.get((exposure, outcome, method), [])
        local_truth = [truth[(r["seq_id"], exposure, outcome)] for r in local]
        everywhere = [v for (_, e, o), v in truth.items() if (e, o) == (exposure, outcome)]
        kept = [v for v in (local_truth or everywhere) if math.isfinite(v)]
        planted = float(np.mean(kept)) if kept else math.nan
        significant = finite(g["p_value"]) and g["p_value"] < ALPHA
        covered = [
            r["ci_low"] <= v <= r["ci_high"] for r, v in zip(local, local_truth, strict=True) if math.isfinite(v)
        ]
        scored.append(
            {
                "exposure": exposure,
                "outcome": outcome,
                "method": method,
                "role": _role(exposure, outcome),
                "planted": planted,
                "estimate": g["estimate"],
                "ci_low": g["ci_low"],
                "ci_high": g["ci_high"],
                "p_value": g["p_value"],
                "significant": bool(significant),
                "covers_planted": bool(finite(g["ci_low"], g["ci_high"]) and g["ci_low"] <= planted <= g["ci_high"]),
                "direction": status[(exposure, outcome, method)],
                "outcome_of_test": _verdict(planted, g["estimate"], significant, status[(exposure, outcome, method)]),
                "n_local": len(local),
                "local_coverage": mean_of(covered),
                "local_ci_width": median_of([r["ci_high"] - r["ci_low"] for r in local]),
            }
        )
    return scored


def _pair_order(row: dict[str, Any]) -> tuple:
    role = (row["outcome"] != ACCESSIBILITY) + (row["exposure"] != ACCESSIBILITY and row["outcome"] != ACCESSIBILITY)
    method = METHODS.index(row["method"]) if row["method"] in METHODS else len(METHODS)
    return (role, row["exposure"], row["outcome"], method)


def _role(exposure: str, outcome: str) -> str:
    if outcome == ACCESSIBILITY:
        return "TF → DNase (planted)"
    if exposure == ACCESSIBILITY:
        return "DNase → TF (reverse)"
    return "TF → TF (control)"


def _verdict(planted: float, estimate: Any, significant: bool, direction: str) -> str:
    """``recovered`` / ``missed`` for a planted non-zero effect (a finding with its sign or not
    significant); ``false positive`` / ``true negative`` for a planted zero (a finding or not
    significant); ``not dominant`` where significant but not significantly larger than the
    reverse pair once standardized (no finding); ``wrong sign`` otherwise."""
    if significant and direction == "not_dominant":
        return "not dominant"
    if not math.isfinite(planted) or planted == 0.0:
        return "false positive" if significant else "true negative"
    if not significant:
        return "missed"
    return "recovered" if (estimate > 0) == (planted > 0) else "wrong sign"


def _planted_direction(call: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The planted direction of an unordered pair and whether the call matches it: the planted
    direction supported, or, where none is planted, no direction called (``none``, or
    ``unresolved``: significant without a dominant direction)."""
    a, b = call["pair"]
    nonzero = {(r["exposure"], r["outcome"]) for r in rows if math.isfinite(r["planted"]) and r["planted"] != 0}
    planted = [list(d) for d in ((a, b), (b, a)) if d in nonzero]
    expected = planted[0] if planted else None
    if expected is None:
        correct = call["verdict"] != "supported"  # no direction called where none is planted
    else:
        correct = call["verdict"] == "supported" and call["direction"] == expected
    return {"planted_direction": expected, "call_correct": correct}


def headline(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per role and method: how many pairs, how many significant, and how many as planted."""
    out: dict[str, Any] = {}
    for r in rows:
        cell = out.setdefault(r["role"], {}).setdefault(
            r["method"], {"pairs": 0, "significant": 0, "recovered": 0, "false_positive": 0, "covers_planted": 0}
        )
        cell["pairs"] += 1
        cell["significant"] += r["significant"]
        cell["recovered"] += r["outcome_of_test"] == "recovered"
        cell["false_positive"] += r["outcome_of_test"] == "false positive"
        cell["covers_planted"] += r["covers_planted"]
    return out


def summary_markdown(summary: dict[str, Any]) -> str:
    """The tables of ``summary.md``."""
    sim = summary["simulation"]
    tfs = ", ".join(f"{t['name']} {t['jaspar']} (opening {t['opening']:g})" for t in sim["tfs"])
    lines = [
        f"# DeepSEA-style experiment: size {summary['size']}, seed {summary['seed']}",
        "",
        f"TFs ({sim['tfs'][0]['release']}): {tfs}; accessibility task {ACCESSIBILITY}. "
        f"{sim['n_train']} training sequences of {sim['length']} bp, {sim['n_audited']} audited.",
        "",
        "## Estimates against planted truth (global, 95 % CI, α = 0.05)",
        "",
        "| pair | role | method | planted | estimate | 95 % CI | p | CI covers planted | result | "
        "local coverage | regions |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["pairs"]:
        lines.append(
            f"| {r['exposure']} → {r['outcome']} | {r['role']} | {r['method']} | {fmt(r['planted'])} | "
            f"{fmt(r['estimate'])} | {fmt(r['ci_low'])} – {fmt(r['ci_high'])} | {fmt(r['p_value'], 2)} | "
            f"{'yes' if r['covers_planted'] else 'no'} | {r['outcome_of_test']} | {fmt(r['local_coverage'])} | "
            f"{r['n_local']} |"
        )
    lines += ["", "## Direction calls (report's rule, replicate test)", "", "| pair | planted | call | correct |"]
    lines.append("|---|---|---|---|")
    for c in summary["direction_calls"]:
        planted = " → ".join(c["planted_direction"]) if c["planted_direction"] else "none"
        call = " → ".join(c["direction"]) if c["direction"] else c["verdict"]
        lines.append(
            f"| {c['pair'][0]} – {c['pair'][1]} | {planted} | {call} | {'yes' if c['call_correct'] else 'no'} |"
        )
    lines += ["", "## Held-out fit of the ensemble mean", "", "| task | r with oracle | RMSE | Brier | oracle Brier |"]
    lines.append("|---|---|---|---|---|")
    for task, f in summary["model_fit"].items():
        lines.append(
            f"| {task} | {fmt(f['r_oracle'])} | {fmt(f['rmse_oracle'])} | {fmt(f['brier'])} | "
            f"{fmt(f['brier_oracle'])} |"
        )
    lines += ["", "Direction-call evidence:", ""] + [f"* {c['text']}" for c in summary["direction_calls"]]
    return "\n".join(lines) + "\n"


def write_figures(directory: Path, global_table: Any, rows: Sequence[dict[str, Any]]) -> list[str]:
    """``estimates_vs_truth.png`` and one heatmap per method plus the planted truth's."""
    import pyarrow as pa

    from dmr_ray.report.figures import heatmap_figure

    directory.mkdir(parents=True, exist_ok=True)
    truth_rows = {(r["exposure"], r["outcome"]): r["planted"] for r in rows if r["method"] == METHODS[0]}
    truth_table = pa.table(
        {
            "exposure": [e for e, _ in truth_rows],
            "outcome": [o for _, o in truth_rows],
            "method": ["planted truth"] * len(truth_rows),
            "estimate": list(truth_rows.values()),
            "p_value": [None] * len(truth_rows),
        },
        schema=pa.schema(
            [("exposure", pa.string()), ("outcome", pa.string()), ("method", pa.string()), ("estimate", pa.float64()),
             ("p_value", pa.float64())]
        ),
    )  # fmt: skip
    figures = {"estimates_vs_truth.png": forest_against_truth(rows)}
    figures["heatmap_truth.png"] = heatmap_figure(truth_table, "planted truth")
    for method in METHODS:
        figures[f"heatmap_{method}.png"] = heatmap_figure(global_table, method)
    for name, fig in figures.items():
        write_atomic(directory / name, partial(fig.savefig, format="png", dpi=FIGURE_DPI, bbox_inches="tight"))
    return [f"figures/{name}" for name in figures]


def forest_against_truth(rows: Sequence[dict[str, Any]]):
    """Global estimate and 95 % CI per pair (one row) and method (one colour), planted truth as a cross."""
    from matplotlib.figure import Figure

    order = list(dict.fromkeys((r["exposure"], r["outcome"]) for r in rows))
    fig = Figure(figsize=(7.5, 1.5 + 0.32 * len(order)), layout="constrained")
    ax = fig.add_subplot()
    offsets = np.linspace(-0.25, 0.25, len(METHODS))
    for offset, method, colour in zip(offsets, METHODS, ("tab:blue", "tab:orange", "tab:green"), strict=True):
        for r in (r for r in rows if r["method"] == method):
            y = order.index((r["exposure"], r["outcome"])) + offset
            if finite(r["estimate"], r["ci_low"], r["ci_high"]):
                ax.errorbar(
                    r["estimate"], y, xerr=[[r["estimate"] - r["ci_low"]], [r["ci_high"] - r["estimate"]]],
                    fmt="o", ms=3, color=colour, label=method,
                )  # fmt: skip
    planted = {(r["exposure"], r["outcome"]): r["planted"] for r in rows}
    ax.scatter([planted[p] for p in order], range(len(order)), marker="x", color="black", zorder=3, label="planted")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize="small", loc="lower right")
    ax.axvline(0.0, color="0.6", lw=0.8)
    ax.set_yticks(range(len(order)), labels=[f"{e} → {o}" for e, o in order])
    ax.invert_yaxis()
    ax.set_xlabel("global causal effect (Δ outcome probability per Δ exposure probability)")
    ax.set_title("DeepSEA-style experiment: estimates (95 % CI) against planted truth")
    return fig

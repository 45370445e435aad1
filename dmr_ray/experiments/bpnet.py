"""The BPNet-style experiment (deep_mr.md §10, on simulated data with a planted grammar).

The original audited a ``bpnet9`` ensemble trained on mESC ChIP-nexus (Oct4, Sox2, Nanog,
Klf4) on all 12 ordered pairs of the count heads averaged over strands. Here the data come
from :mod:`dmr_ray.sim.bpnet_grammar` (JASPAR motifs; Oct4 anchors the Oct4-Sox2 composite with
Sox2 as its partner, the composite and Sox2's own motif recruit Nanog and Klf4, nothing raises
Oct4, nor Sox2 through its partner), so every pair's causal effect is known:

1. simulate training, calibration and audit sequences (the audited ones hold all four
   motifs, so every pair has instruments and a local truth);
2. train an ensemble of the built-in ``bpnet`` (4 tasks × 2 strands, profile and count
   heads) with the existing trainer (:func:`dmr_ray.models.training.train_ensemble`, MSE):
   the count heads regress ``log(1 + strand total)`` as in BPNet; the profile head's softmax
   regresses the observed profile shape (BPNet uses a multinomial likelihood there; the
   count heads, which are audited, are trained as in BPNet). Members train in parallel, one
   Ray task each, and are saved one by one;
3. run the whole Deep MR audit (:func:`dmr_ray.deepmr.pipeline.run_audit`, engine on Ray)
   with the demo's configuration (:func:`dmr_ray.demo.audit_config`) and :data:`INSTRUMENTS`
   on all 12 pairs of the count heads (``select: counts``, each task's two strands averaged);
4. score each pair's global and local estimates against the oracle truth
   (:func:`dmr_ray.sim.bpnet_grammar.local_true_effects`, joined on ``seq_id``).

Directory layout::

    .dmr_ray/experiment.json   marks the directory, records size and seed
    work/model/                member<i>.safetensors (kept: a rerun trains only missing members), model.yaml
    work/sequences.zarr, calibration.zarr, calibration_labels.npy, audit.yaml
    work/audit/                the Deep MR audit (resumes by itself)
    figures/heatmap_<truth|method>.png
    summary.json, summary.md   estimates against the planted truth, per pair and method
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dmr_ray._atomic import write_text_atomic
from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.experiments.directory import claim_experiment_directory
from dmr_ray.experiments.simulation import ALPHA, METHODS
from dmr_ray.experiments.tables import finite, fmt, mean_of, weighted_mean
from dmr_ray.sim.bpnet_grammar import GrammarParams

BPNET = "dmr_ray.models.architectures:bpnet"
OUTPUTS = ("work", "figures", "summary.json", "summary.md")
"""What the experiment writes under its directory (``--overwrite`` removes these only)."""

GRAMMAR = GrammarParams(length=100, affinity_margin=1.0, sharpness=3.0)
"""The simulation of every size: 100 bp, consensus-like sites binding with probability 0.73."""

INSTRUMENTS = {"direction_against": "all"}
"""The audit's instrument settings that differ from the demo's: a substitution is an instrument
of the exposure only if it moves the exposure more than every other task (each standardized by
its reference SD). The composite moves Oct4, Sox2, Nanog and Klf4 together, Oct4 the most; the
default, which compares only with the outcome, lets it instrument Klf4 → Nanog (a common cause,
not an effect; docs/experiments.md)."""


@dataclass(frozen=True)
class BPNetSize:
    """Data, model and training sizes of one run.

    Attributes
    ----------
    n_train, n_calibration, n_audit
        Training and calibration sequences; audited sequences (each with all four motifs).
    members, epochs, batch_size, learning_rate
        Ensemble size and training recipe (Adam, amsgrad, 15 % validation, patience 10).
    filters, n_layers, profile_kernel
        ``bpnet`` body width, dilated layers and profile convolution width.
    profile_weight
        Weight of the profile-shape MSE relative to the count heads' MSE.
    grammar
        The simulation's parameters.
    audit_overrides
        Top-level sections of the demo's audit configuration replaced for this size (the
        smoke test's: engine in process, no HTML report).
    """

    n_train: int
    n_calibration: int
    n_audit: int
    members: int
    epochs: int
    filters: int
    n_layers: int
    profile_kernel: int = 25
    batch_size: int = 64
    learning_rate: float = 4e-3
    profile_weight: float = 0.01
    grammar: GrammarParams = field(default=GRAMMAR)
    audit_overrides: Mapping[str, Any] = field(default_factory=dict)


SIZES: dict[str, BPNetSize] = {
    "quick": BPNetSize(n_train=3000, n_calibration=500, n_audit=24, members=5, epochs=60, filters=32, n_layers=4),
    "full": BPNetSize(n_train=20_000, n_calibration=2000, n_audit=100, members=5, epochs=40, filters=64, n_layers=5),
    "tiny": BPNetSize(
        n_train=200, n_calibration=60, n_audit=3, members=2, epochs=1, filters=4, n_layers=1, profile_kernel=5,
        audit_overrides={"engine": {"actors": 0}, "report": {"enabled": False}},
    ),
}  # fmt: skip
"""``quick`` (minutes on 2 cores), ``full`` (not run here), ``tiny`` (the smoke test only)."""


def run_bpnet_experiment(
    out: Path,
    *,
    size: str = "quick",
    seed: int = 0,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the experiment into ``out``; returns the summary.

    Raises
    ------
    InputError
        For an unknown size, or an ``out`` that is not this experiment's directory (without
        ``overwrite``) — before anything is written.
    """
    from dmr_ray.deepmr.config import DeepMRConfig
    from dmr_ray.deepmr.pipeline import run_audit
    from dmr_ray.demo import simulated_seq_id, subset_simulation, write_demo_stores
    from dmr_ray.engine import connect
    from dmr_ray.sim.bpnet_grammar import local_true_effects, simulate_bpnet_grammar

    if size not in SIZES:
        raise InputError(f"size: {size!r} is not one of {', '.join(SIZES)}")
    if not is_int(seed) or seed < 0:
        raise InputError(f"seed: must be an integer >= 0, got {seed!r}")
    settings = SIZES[size]
    identity = {"experiment": "bpnet", "size": size, "seed": seed, "settings": _settings_record(settings)}
    claim_experiment_directory(out, identity, OUTPUTS, overwrite=overwrite)
    work = out / "work"
    work.mkdir(exist_ok=True)

    sim = simulate_bpnet_grammar(_n_simulated(settings), settings.grammar, seed=seed)
    train = np.arange(settings.n_train)
    calibration = np.arange(settings.n_train, settings.n_train + settings.n_calibration)
    rest = np.arange(settings.n_train + settings.n_calibration, len(sim.tokens))
    audit = rest[sim.has_all_sites[rest]][: settings.n_audit]
    if audit.size < settings.n_audit:
        raise InputError(f"the simulation holds {audit.size} sequences with all four motifs, not {settings.n_audit}")
    spec = write_bpnet_spec(work / "model", settings, sim.tokens.shape[1])
    write_demo_stores(sim, audit, calibration, work)
    config = DeepMRConfig.load(_write_audit_config(work, spec, settings))
    connect(config.engine.address, num_cpus=config.ray.num_cpus)  # as run_audit does; RAY_ADDRESS is joined
    trained = train_members(sim.tokens[train], sim.profiles[train], work / "model", settings=settings, seed=seed)
    echo(f"[bpnet] {trained} of {settings.members} members trained as Ray tasks, the others kept")
    echo("[bpnet] Deep MR audit of all 12 ordered pairs of the count heads")
    truth = local_true_effects(subset_simulation(sim, audit))
    run_audit(
        config,
        echo=lambda line: echo(f"[bpnet] {line}"),
        run_info={"simulation": {"experiment": "bpnet", "grammar": asdict(settings.grammar)}},
    )
    ids = [simulated_seq_id(i) for i in audit]
    pairs = score_pairs(work / "audit", truth, ids, settings.grammar)
    summary = {
        **identity,
        "aggregate": aggregate(pairs),
        "pairs": pairs,
        "figures": write_heatmaps(pairs, out / "figures"),
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    write_text_atomic(out / "summary.md", summary_table(summary))
    return summary


def _n_simulated(settings: BPNetSize) -> int:
    """Training, calibration and a pool holding ``n_audit`` all-motif sequences with room to
    spare (each motif is embedded with ``site_prob``)."""
    share = settings.grammar.site_prob**4
    pool = math.ceil(3 * settings.n_audit / share) + 50 if share > 0 else 0
    return settings.n_train + settings.n_calibration + pool


def _settings_record(settings: BPNetSize) -> dict[str, Any]:
    """What of ``settings`` determines the results (the grammar, the data and training sizes),
    with the audit's instrument settings (:data:`INSTRUMENTS`)."""
    record = {k: v for k, v in asdict(settings).items() if k != "audit_overrides"}
    return {**record, "instruments": INSTRUMENTS}


# --- training -----------------------------------------------------------------------------------


def training_targets(profiles: np.ndarray, profile_weight: float) -> np.ndarray:
    """The regression targets matching :class:`ProfileCountView`'s output.

    Parameters
    ----------
    profiles
        ``[n, tasks, strands, L]`` observed reads.
    profile_weight
        Weight of the profile-shape term.

    Returns
    -------
    numpy.ndarray
        ``float32 [n, tasks*strands*(1 + L)]``: ``log(1 + strand total)`` scaled by
        ``√(1 + L)`` (so the count heads weigh as much as all profile positions together),
        then the observed profile shape (reads / total; uniform for an empty strand) scaled by
        ``L √profile_weight``.
    """
    n, _, _, length = profiles.shape
    totals = profiles.sum(axis=-1, keepdims=True, dtype=np.float64)
    shape = np.where(totals > 0, profiles / np.maximum(totals, 1.0), 1.0 / length)
    counts = np.log1p(totals[..., 0]).reshape(n, -1) * math.sqrt(1 + length)
    profile = shape.reshape(n, -1) * length * math.sqrt(profile_weight)
    return np.concatenate([counts, profile], axis=1).astype(np.float32)


def bpnet_kwargs(settings: BPNetSize) -> dict[str, int]:
    """The built-in ``bpnet``'s arguments for ``settings`` (4 tasks × 2 strands, no trimming)."""
    from dmr_ray.sim.bpnet_grammar import TASKS

    return {
        "filters": settings.filters,
        "n_layers": settings.n_layers,
        "n_tasks": len(TASKS),
        "strands": 2,
        "profile_kernel": settings.profile_kernel,
        "trim": 0,
    }


def write_bpnet_spec(model_dir: Path, settings: BPNetSize, length: int) -> Path:
    """Write ``model.yaml``: members ``member<i>.safetensors``, one output per TF reading its
    count head with the two strands averaged (``select: counts``, ``reduce: mean``)."""
    import yaml

    from dmr_ray.sim.bpnet_grammar import TASKS

    spec = {
        "entrypoint": BPNET,
        "kwargs": bpnet_kwargs(settings),
        "weights": [f"member{i}.safetensors" for i in range(settings.members)],
        "input_length": length,
        "outputs": [{"name": name, "select": "counts", "index": i, "reduce": "mean"} for i, name in enumerate(TASKS)],
        "replicates": {"kind": "ensemble"},
    }
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "model.yaml"
    write_text_atomic(path, yaml.safe_dump(spec, sort_keys=False))
    return path


def train_members(tokens: np.ndarray, profiles: np.ndarray, model_dir: Path, *, settings: BPNetSize, seed: int) -> int:
    """Train the members missing from ``model_dir`` in parallel, one Ray task (1 CPU) each.

    Member ``i`` is trained from seed ``seed + i`` (as :func:`train_ensemble` would) and saved
    as ``member<i>.safetensors`` by its task as soon as it is done, so an interrupted run keeps
    it. Ray must be connected. Returns the number of members trained.
    """
    import ray

    missing = [i for i in range(settings.members) if not (model_dir / f"member{i}.safetensors").exists()]
    if missing:
        data = ray.put((tokens, training_targets(profiles, settings.profile_weight)))
        task = ray.remote(num_cpus=1)(_train_member)
        ray.get([task.remote(data, settings, seed + i, str(model_dir / f"member{i}.safetensors")) for i in missing])
    return len(missing)


def _train_member(data: tuple[np.ndarray, np.ndarray], settings: BPNetSize, seed: int, path: str) -> None:
    """Train one member (one torch thread) and save its BPNet atomically."""
    from dmr_ray.models.architectures import bpnet
    from dmr_ray.models.training import train_ensemble
    from dmr_ray.models.weights import save_weights

    tokens, targets = data
    length = tokens.shape[1]
    torch.set_num_threads(1)
    (member,) = train_ensemble(
        lambda _: ProfileCountView(bpnet(**bpnet_kwargs(settings)), length, settings.profile_weight),
        tokens,
        targets,
        1,
        seed=seed,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.learning_rate,
    )
    if not isinstance(member, ProfileCountView):
        raise TypeError(f"expected a ProfileCountView, got {type(member).__name__}")
    save_weights(member.model, path)  # atomic


class ProfileCountView(nn.Module):
    """A ``bpnet``'s count heads and profile shapes as one ``[batch, T]`` tensor, so that the MSE
    trainer fits both (the layout of :func:`training_targets`); ``model`` is what is saved.

    Parameters
    ----------
    model
        The BPNet (outputs ``{"profile": [batch, tasks, strands, L], "counts": [batch, tasks, strands]}``).
    length
        Input (and profile) length L.
    profile_weight
        As in :func:`training_targets`.
    """

    def __init__(self, model: nn.Module, length: int, profile_weight: float):
        super().__init__()
        self.model = model
        self.count_scale = math.sqrt(1 + length)
        self.profile_scale = length * math.sqrt(profile_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, 4, L]`` one-hot -> ``[batch, tasks*strands*(1 + L)]``."""
        out = self.model(x)
        shape = torch.softmax(out["profile"], dim=-1).flatten(1)
        return torch.cat([out["counts"].flatten(1) * self.count_scale, shape * self.profile_scale], dim=1)


def _write_audit_config(work: Path, spec: Path, settings: BPNetSize) -> Path:
    """The demo's audit configuration with :data:`INSTRUMENTS` and this size's overrides."""
    import yaml

    from dmr_ray.demo import audit_config

    path = audit_config(work, spec)
    raw = yaml.safe_load(path.read_text())
    raw = {**raw, "instruments": {**raw["instruments"], **INSTRUMENTS}, **settings.audit_overrides}
    write_text_atomic(path, yaml.safe_dump(raw, sort_keys=False))
    return path


# --- scoring ------------------------------------------------------------------------------------


def score_pairs(audit: Path, truth: np.ndarray, ids: list[str], grammar: GrammarParams) -> list[dict[str, Any]]:
    """Every ordered pair and method of an audit against the truth.

    Parameters
    ----------
    audit
        The Deep MR audit directory.
    truth
        ``[n_audit, tasks, tasks]`` local truths (:func:`local_true_effects`), rows as ``ids``.
    ids
        ``seq_id`` of each audited sequence.
    grammar
        Supplies which pairs are planted (:func:`planted_pairs`).

    Returns
    -------
    list of dict
        One row per (exposure, outcome): ``planted``, ``true_global`` (mean local truth) and per
        method the global estimate, CI, p, ``significant``, ``direction`` (the report's
        :func:`~dmr_ray.report.direction.direction_status`), ``call`` (``+`` or ``−`` for a
        finding: significant and dominating the reverse pair; ``(+)`` or ``(−)`` significant
        but not dominating it; ``0`` not significant), ``correct`` (planted: a positive finding;
        unplanted: no finding),
        ``covered`` (the CI holds the true global effect), ``local_coverage``, the median
        local CI width and the number of local estimates.
    """
    import pyarrow.parquet as pq

    from dmr_ray.deepmr.pipeline import effect_sd
    from dmr_ray.deepmr.stages import read_local_effects
    from dmr_ray.report.direction import direction_status, row_key
    from dmr_ray.sim.bpnet_grammar import TASKS, planted_pairs

    planted = planted_pairs(grammar)
    global_table = pq.read_table(audit / "global_effects.parquet")
    global_rows = {row_key(r): r for r in global_table.to_pylist()}
    status = direction_status(global_table, effect_sd(audit), alpha=ALPHA)
    local = read_local_effects(audit / "local_effects.parquet").to_pylist()
    row_of = {seq_id: i for i, seq_id in enumerate(ids)}
    rows = []
    for x, exposure in enumerate(TASKS):
        for y, outcome in enumerate(TASKS):
            if x == y:
                continue
            local_truth = {seq_id: float(truth[i, x, y]) for seq_id, i in row_of.items()}
            true_global = float(np.nanmean(truth[:, x, y]))
            methods = {}
            for method in METHODS:
                g = global_rows[(exposure, outcome, method)]
                fits = [
                    r
                    for r in local
                    if (r["exposure"], r["outcome"], r["method"]) == (exposure, outcome, method)
                    and r["seq_id"] in local_truth
                    and finite(r["ci_low"], r["ci_high"], local_truth[r["seq_id"]])
                ]
                significant = finite(g["p_value"]) and g["p_value"] < ALPHA
                direction = status[(exposure, outcome, method)].status
                sign = "+" if g["estimate"] > 0 else "−"
                call = "0" if not significant else sign if direction != "not_dominant" else f"({sign})"
                methods[method] = {
                    "estimate": g["estimate"],
                    "ci_low": g["ci_low"],
                    "ci_high": g["ci_high"],
                    "p_value": g["p_value"],
                    "significant": bool(significant),
                    "direction": direction,
                    "call": call,
                    "correct": call == "+" if planted[(exposure, outcome)] else call not in ("+", "−"),
                    "covered": bool(finite(g["ci_low"], g["ci_high"]) and g["ci_low"] <= true_global <= g["ci_high"]),
                    "n_local": len(fits),
                    "local_coverage": mean_of([r["ci_low"] <= local_truth[r["seq_id"]] <= r["ci_high"] for r in fits]),
                    "local_ci_width": float(np.median([r["ci_high"] - r["ci_low"] for r in fits])) if fits else None,
                }
            rows.append(
                {
                    "exposure": exposure,
                    "outcome": outcome,
                    "planted": planted[(exposure, outcome)],
                    "true_global": true_global,
                    "methods": methods,
                }
            )
    return rows


def aggregate(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: planted pairs found, unplanted pairs called (a finding) or significant, coverage.

    ``asymmetry_recovered``: every pair from Oct4 or Sox2 to Nanog or Klf4 is a positive finding
    and none of the reverse pairs is a finding (the grammar's asymmetry).
    """
    out = {}
    for method in METHODS:
        scores = [p["methods"][method] for p in pairs]
        planted = [p for p in pairs if p["planted"]]
        unplanted = [p for p in pairs if not p["planted"]]
        forward = [p for p in pairs if p["exposure"] in _DRIVERS and p["outcome"] in _DRIVEN]
        reverse = [p for p in pairs if p["exposure"] in _DRIVEN and p["outcome"] in _DRIVERS]
        out[method] = {
            "planted_found": sum(p["methods"][method]["call"] == "+" for p in planted),
            "n_planted": len(planted),
            "unplanted_called": [
                f"{p['exposure']}→{p['outcome']}" for p in unplanted if p["methods"][method]["call"] in ("+", "−")
            ],
            "unplanted_significant": [
                f"{p['exposure']}→{p['outcome']}" for p in unplanted if p["methods"][method]["significant"]
            ],
            "n_unplanted": len(unplanted),
            "asymmetry_recovered": all(p["methods"][method]["call"] == "+" for p in forward)
            and not any(p["methods"][method]["call"] in ("+", "−") for p in reverse),
            "global_coverage": mean_of([s["covered"] for s in scores]),
            "local_coverage": weighted_mean([s["local_coverage"] for s in scores], [s["n_local"] for s in scores]),
        }
    return out


_DRIVERS = ("Oct4", "Sox2")
_DRIVEN = ("Nanog", "Klf4")


# --- figures and tables -------------------------------------------------------------------------


def write_heatmaps(pairs: list[dict[str, Any]], directory: Path) -> dict[str, str]:
    """The 12-pair heatmap of the true global effects and of each method's estimates (the
    report's :func:`dmr_ray.report.figures.heatmap_figure`); returns name → path relative to
    the experiment directory."""
    import pyarrow as pa

    from dmr_ray.report.attribution import save_figure
    from dmr_ray.report.figures import heatmap_figure

    directory.mkdir(parents=True, exist_ok=True)
    rows = [
        {"exposure": p["exposure"], "outcome": p["outcome"], "method": "planted truth", "estimate": p["true_global"],
         "p_value": None}
        for p in pairs
    ]  # fmt: skip
    for method in METHODS:
        rows += [
            {"exposure": p["exposure"], "outcome": p["outcome"], "method": method, **_estimate(p["methods"][method])}
            for p in pairs
        ]
    table = pa.Table.from_pylist(rows)
    written = {}
    for name in ("planted truth", *METHODS):
        stem = "truth" if name == "planted truth" else name
        save_figure(heatmap_figure(table, name), directory / f"heatmap_{stem}.png")
        written[stem] = f"{directory.name}/heatmap_{stem}.png"
    return written


def _estimate(scores: dict[str, Any]) -> dict[str, Any]:
    return {"estimate": scores["estimate"], "p_value": scores["p_value"]}


def summary_table(summary: dict[str, Any]) -> str:
    """Markdown: per pair the planted truth and each method's estimate, CI, p and call."""
    from dmr_ray.report.figures import format_p

    lines = [
        f"# BPNet-style experiment: size {summary['size']}, seed {summary['seed']}",
        "",
        "Calls: `+`/`−` a finding (significant at 0.05 with that sign, and dominating the reverse pair: "
        "standardized effects paired over members), `(+)`/`(−)` significant but not dominating the "
        "reverse pair, `0` not significant; ✓ = the call matches the planted truth (planted: `+`; unplanted: no "
        "finding).",
        "",
        "| exposure → outcome | planted | true global | "
        + " | ".join(f"{m} estimate [95 % CI] | {m} p | {m} call" for m in METHODS)
        + " |",
        "|---|---|---|" + "---|---|---|" * len(METHODS),
    ]
    for p in summary["pairs"]:
        cells = [f"{p['exposure']} → {p['outcome']}", "yes" if p["planted"] else "no", fmt(p["true_global"])]
        for method in METHODS:
            m = p["methods"][method]
            cells += [
                f"{fmt(m['estimate'])} [{fmt(m['ci_low'])}, {fmt(m['ci_high'])}]",
                format_p(m["p_value"]),
                m["call"] + (" ✓" if m["correct"] else " ✗"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| method | planted pairs found | unplanted pairs called | unplanted pairs significant | "
        "asymmetry recovered | global coverage | local coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, a in summary["aggregate"].items():
        called = ", ".join(a["unplanted_called"]) or "none"
        wrong = ", ".join(a["unplanted_significant"]) or "none"
        lines.append(
            f"| {method} | {a['planted_found']} / {a['n_planted']} | {len(a['unplanted_called'])} / "
            f"{a['n_unplanted']} ({called}) | {len(a['unplanted_significant'])} / "
            f"{a['n_unplanted']} ({wrong}) | {'yes' if a['asymmetry_recovered'] else 'no'} | "
            f"{fmt(a['global_coverage'])} | {fmt(a['local_coverage'])} |"
        )
    lines += ["", "Figures: " + ", ".join(f"`{path}`" for path in summary["figures"].values())]
    return "\n".join(lines) + "\n"

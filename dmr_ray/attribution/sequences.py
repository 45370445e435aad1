"""Attributions of sequence models scored against planted motif positions (attribution.md §9).

A sequence model maps one-hot ``float32 [batch, 4, L]`` to ``[batch, T]``. For each method,
each output ``t`` and each replicate ``r`` of a :class:`~dmr_ray.uncertainty.ReplicatePredictor`
(ensemble member or MC-dropout pass), every position gets one **score** (higher = more
important); :mod:`dmr_ray.attribution.sequence_metrics` then scores each sequence's ranking
against the positions covered by a planted motif.

Methods and their per-position reduction (``a`` is the raw ``[4, L]`` attribution, ``x`` the
one-hot input, ``Δ`` the three substitution effects at a position):

* ``ism``: :func:`dmr_ray.ism.saturation_mutagenesis`, score = ``mean over the 3 alternative
  bases of |Δ|`` (how much changing the base moves the output, in either direction);
* ``ig``: Captum's Integrated Gradients (Gauss–Legendre, ``ig_steps`` steps) from a baseline
  (``uniform``: 0.25 in every channel; ``zeros``: an all-``N`` sequence), score = ``|Σ_c a_c|``,
  the position's share of ``f(x) − f(baseline)`` (completeness), in magnitude;
* ``saliency``: the input gradient ``g = ∂f/∂x`` (Captum ``Saliency``, signed), score = its L2
  norm over the four channels (gradients of bases not present included);
* ``grad_x_input``: gradient × input (Captum ``InputXGradient``; DeepLIFT's rescale rule reduces
  to it for a linear model), score = ``|Σ_c g_c x_c|``, the gradient at the observed base.

Scores are magnitudes because a planted motif can push an output either way. The
**ensemble** attribution is that of the replicate-mean model: raw attributions (or ISM
differences) are averaged over replicates before the reduction, which is exact for all four
methods since each is linear in the model's output. Positions holding ``N`` get NaN and are
left out of the metrics.

The simulated benchmark (:func:`run_simulated_benchmark`) trains the Deep MR demo's small CNN
ensemble (:func:`dmr_ray.models.training.train_ensemble`) on GATA → TAL1 cooperativity
sequences (:func:`dmr_ray.sim.simulate_tf_coop`) and evaluates on held-out sequences holding
both motifs. Truth per output (:func:`simulation_truth`) follows the generative model: the
exposure output (GATA) depends on the GATA instance only; the outcome (TAL1,
``1 + β q_exp q_out``) on both instances.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmr_ray._atomic import write_text_atomic
from dmr_ray._checks import is_int
from dmr_ray.alphabet import N_TOKEN, check_tokens, decode, tokens_to_onehot
from dmr_ray.attribution.sequence_metrics import Spread, per_sequence, spread
from dmr_ray.demo import OUTPUTS, simulated_seq_id
from dmr_ray.errors import InputError
from dmr_ray.ism import saturation_mutagenesis
from dmr_ray.models import OutputSelector
from dmr_ray.sim.tf_coop import CONFOUNDER_MOTIF, EXPOSURE_MOTIF, OUTCOME_MOTIF, TFCoopData
from dmr_ray.uncertainty import ReplicatePredictor, ReplicateSubset, plain_output

METHODS = ("ism", "ig", "saliency", "grad_x_input")
"""Attribution methods, in the order they are reported."""

BASELINES = ("uniform", "zeros")
"""Integrated-gradients baselines: 0.25 per channel, or all zeros (an all-N sequence)."""

MARKER = "dmr_ray attribution sequences"
"""The ``written_by`` value of ``sequences.json``; ``--overwrite`` replaces only such files."""


# --- attributions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionScores:
    """Per-position scores of one method.

    Attributes
    ----------
    method
        One of :data:`METHODS`.
    replicates
        ``float32 [R, n, T, L]``: replicate ``r``'s score of each position for each output
        (NaN at ``N`` positions).
    ensemble
        ``float32 [n, T, L]``: the score of the replicate-mean model.
    completeness_gap
        ``ig``: the largest ``|Σ attr − (f(x) − f(baseline))|`` over replicates, sequences and
        outputs, relative to the largest ``|f(x) − f(baseline)|``; NaN for the other methods.
    """

    method: str
    replicates: np.ndarray
    ensemble: np.ndarray
    completeness_gap: float = float("nan")


def position_scores(
    predictor: ReplicatePredictor,
    tokens: np.ndarray,
    method: str,
    *,
    ig_steps: int = 50,
    baseline: str = "uniform",
    batch_size: int = 64,
) -> PositionScores:
    """Score every position of every sequence with ``method`` (module docs).

    Parameters
    ----------
    predictor
        The model; replicate ``r`` is attributed on its own, on the predictor's device.
    tokens
        ``uint8 [n, L]`` sequences (A=0 C=1 G=2 T=3 N=4).
    method
        One of :data:`METHODS`.
    ig_steps
        Gauss–Legendre steps of integrated gradients.
    baseline
        Integrated-gradients baseline (:data:`BASELINES`).
    batch_size
        Sequences per gradient call (ISM sizes its own batches).

    Returns
    -------
    PositionScores
    """
    tokens = check_sequence_tokens(tokens)
    check_method_options((method,), ig_steps=ig_steps, baseline=baseline)
    if not is_int(batch_size) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if method == "ism":
        deltas = [
            saturation_mutagenesis(ReplicateSubset(predictor, (r,)), tokens).beta for r in range(predictor.n_replicates)
        ]
        raw = np.moveaxis(np.stack(deltas), -1, 2)  # [R, n, L, 3, T] -> [R, n, T, L, 3]
        gap = float("nan")
    else:
        raw, gap = _gradient_attributions(predictor, tokens, method, ig_steps, baseline, batch_size)  # [R, n, T, 4, L]
    reduce = _REDUCTIONS[method]
    scores = reduce(raw)
    ensemble = reduce(raw.mean(axis=0))
    missing = np.broadcast_to((tokens == N_TOKEN)[:, None, :], ensemble.shape)
    scores[:, missing] = np.nan
    ensemble[missing] = np.nan
    return PositionScores(method, scores.astype(np.float32), ensemble.astype(np.float32), gap)


def _ism_reduction(delta: np.ndarray) -> np.ndarray:
    """``[..., L, 3]`` substitution effects → ``[..., L]`` mean absolute effect."""
    return np.abs(delta).mean(axis=-1)


def _channel_norm(gradient: np.ndarray) -> np.ndarray:
    """``[..., 4, L]`` gradients → ``[..., L]`` L2 norm over the channels."""
    return np.sqrt((gradient.astype(np.float64) ** 2).sum(axis=-2))


def _channel_sum(attribution: np.ndarray) -> np.ndarray:
    """``[..., 4, L]`` attributions → ``[..., L]`` ``|Σ_c a_c|``."""
    return np.abs(attribution.astype(np.float64).sum(axis=-2))


_REDUCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ism": _ism_reduction,
    "ig": _channel_sum,
    "saliency": _channel_norm,
    "grad_x_input": _channel_sum,
}


def _gradient_attributions(
    predictor: ReplicatePredictor, tokens: np.ndarray, method: str, steps: int, baseline: str, batch_size: int
) -> tuple[np.ndarray, float]:
    """Raw attributions ``float32 [R, n, T, 4, L]`` and, for ``ig``, the relative completeness gap."""
    from captum.attr import InputXGradient, IntegratedGradients, Saliency  # not loaded by configs

    x_all = torch.from_numpy(np.ascontiguousarray(tokens_to_onehot(tokens))).to(predictor.device)
    n_tasks = len(output_names(predictor, x_all[:1]))
    # A selector of its own: the predictor's caches index tensors made in inference mode,
    # which autograd refuses to save.
    selector = OutputSelector(predictor.selector.outputs) if predictor.selector is not None else None
    out: list[np.ndarray] = []
    gap, scale = 0.0, 0.0
    for r in range(predictor.n_replicates):
        with predictor.replicate_network(r) as net, torch.enable_grad():

            def forward(x: torch.Tensor, net: torch.nn.Module = net) -> torch.Tensor:
                raw = net(x)
                return selector(raw) if selector is not None else plain_output(raw)

            per_task = []
            for t in range(n_tasks):
                parts = []
                for x in x_all.split(batch_size):
                    x = x.clone().requires_grad_()
                    if method == "saliency":
                        a = Saliency(forward).attribute(x, target=t, abs=False)
                    elif method == "grad_x_input":
                        a = InputXGradient(forward).attribute(x, target=t)
                    else:
                        base = torch.full_like(x, 0.25) if baseline == "uniform" else torch.zeros_like(x)
                        a, delta = IntegratedGradients(forward).attribute(
                            x, baselines=base, target=t, n_steps=steps, method="gausslegendre",
                            return_convergence_delta=True,
                        )  # fmt: skip
                        with torch.no_grad():
                            change = forward(x)[:, t] - forward(base)[:, t]
                        gap = max(gap, float(delta.abs().max()))
                        scale = max(scale, float(change.abs().max()))
                    parts.append(a.detach().cpu().numpy().astype(np.float32))
                per_task.append(np.concatenate(parts))
            out.append(np.stack(per_task, axis=1))
    relative = gap / scale if method == "ig" and scale > 0 else float("nan")
    return np.stack(out), relative


def output_names(predictor: ReplicatePredictor, probe: torch.Tensor | None = None) -> tuple[str, ...]:
    """The predictor's task names, or ``task0``, ``task1``, … when it has none (needs ``probe``)."""
    if predictor.task_names is not None:
        return tuple(predictor.task_names)
    if probe is None:
        raise InputError("the predictor has no task names; pass a probe input to count its outputs")
    return tuple(f"task{i}" for i in range(predictor.predict(probe, 0).shape[1]))


def check_sequence_tokens(tokens: np.ndarray) -> np.ndarray:
    """``tokens`` as a ``uint8 [n, L]`` array with values 0..4, or an :class:`InputError`."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[0] < 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise InputError(f"tokens must be a non-empty integer array [n, L], got {tokens.dtype} {tokens.shape}")
    check_tokens(tokens)
    return tokens.astype(np.uint8)


def check_method_options(methods: Sequence[str], *, ig_steps: int, baseline: str) -> tuple[str, ...]:
    """The distinct ``methods`` in :data:`METHODS` order, after checking them and the IG options."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"methods: unknown or none {unknown or list(methods)}; choose from {', '.join(METHODS)}")
    if not is_int(ig_steps) or ig_steps < 1:
        raise InputError(f"ig_steps must be a positive integer, got {ig_steps!r}")
    if baseline not in BASELINES:
        raise InputError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    return tuple(m for m in METHODS if m in methods)


# --- evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodResult:
    """How one method's attributions of one output find the planted motifs.

    Attributes
    ----------
    method, output
        Method name and output (task) name.
    auroc, auprc
        Per replicate the mean over sequences, then the mean and SD over replicates.
    ensemble_auroc, ensemble_auprc
        The same means for the replicate-mean model's attribution.
    random_auprc
        The mean fraction of positive positions: the average precision of a random ranking
        (in expectation; a random AUROC is 0.5).
    completeness_gap
        Integrated gradients' relative completeness gap (:class:`PositionScores`); else NaN.
    """

    method: str
    output: str
    auroc: Spread
    auprc: Spread
    ensemble_auroc: float
    ensemble_auprc: float
    random_auprc: float
    completeness_gap: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN becomes None)."""
        return {
            "auroc": _num(self.auroc.mean),
            "auroc_sd": _num(self.auroc.sd),
            "auprc": _num(self.auprc.mean),
            "auprc_sd": _num(self.auprc.sd),
            "ensemble_auroc": _num(self.ensemble_auroc),
            "ensemble_auprc": _num(self.ensemble_auprc),
            "member_auroc": [_num(v) for v in self.auroc.per_replicate],
            "member_auprc": [_num(v) for v in self.auprc.per_replicate],
            "random_auprc": _num(self.random_auprc),
            "n_sequences": self.auroc.n_sequences,
            "completeness_gap": _num(self.completeness_gap),
        }


@dataclass(frozen=True)
class SequenceEvaluation:
    """Every method's attributions and their scores against the truth.

    Attributes
    ----------
    outputs
        ``T`` output names.
    results
        One :class:`MethodResult` per method and output (methods in :data:`METHODS` order).
    scores
        Method → :class:`PositionScores`.
    truth
        ``bool [n, T, L]`` planted motif positions per sequence and output.
    tokens
        ``uint8 [n, L]`` the sequences.
    seq_ids
        ``n`` sequence identifiers.
    n_replicates
        Replicates (ensemble members) attributed.
    """

    outputs: tuple[str, ...]
    results: tuple[MethodResult, ...]
    scores: Mapping[str, PositionScores]
    truth: np.ndarray
    tokens: np.ndarray
    seq_ids: tuple[str, ...]
    n_replicates: int

    def result(self, method: str, output: str) -> MethodResult:
        """The result of ``method`` on ``output``."""
        for r in self.results:
            if r.method == method and r.output == output:
                return r
        raise InputError(f"no result for method {method!r} and output {output!r}")

    def to_dict(self) -> dict[str, Any]:
        """``{"methods": {method: {output: {...}}}, "outputs": [...], ...}`` (JSON-ready)."""
        methods: dict[str, dict[str, Any]] = {}
        for r in self.results:
            methods.setdefault(r.method, {})[r.output] = r.to_dict()
        return {
            "methods": methods,
            "outputs": list(self.outputs),
            "n_sequences": len(self.seq_ids),
            "n_replicates": self.n_replicates,
            "length": int(self.tokens.shape[1]),
            "example": self.example(),
        }

    def example(self) -> dict[str, Any]:
        """One sequence's tracks for a figure: the first sequence with a planted motif for the
        last output, its motif positions and each method's ensemble scores (NaN becomes None)."""
        t = len(self.outputs) - 1
        with_motif = np.flatnonzero(self.truth[:, t].any(axis=1))
        i = int(with_motif[0]) if with_motif.size else 0
        return {
            "seq_id": self.seq_ids[i],
            "output": self.outputs[t],
            "sequence": decode(self.tokens[i]),
            "motif": self.truth[i, t].tolist(),
            "scores": {m: [_num(float(v)) for v in s.ensemble[i, t]] for m, s in self.scores.items()},
        }


def evaluate_attributions(
    predictor: ReplicatePredictor,
    tokens: np.ndarray,
    truth: np.ndarray,
    *,
    methods: Sequence[str] = METHODS,
    seq_ids: Sequence[str] | None = None,
    ig_steps: int = 50,
    baseline: str = "uniform",
    batch_size: int = 64,
) -> SequenceEvaluation:
    """Attribute ``tokens`` with each method and score the rankings against ``truth``.

    Parameters
    ----------
    predictor
        The model (a user's through :func:`dmr_ray.uncertainty.build_predictor`, or the
        simulated benchmark's ensemble).
    tokens
        ``uint8 [n, L]`` sequences.
    truth
        ``bool [n, T, L]``: positions covered by a planted motif that drives output ``t``
        (:func:`simulation_truth`, :func:`motif_bed_truth`).
    methods
        Any of :data:`METHODS`.
    seq_ids
        Sequence identifiers (default ``"0"``, ``"1"``, …).
    ig_steps, baseline, batch_size
        As :func:`position_scores`.

    Returns
    -------
    SequenceEvaluation

    Raises
    ------
    InputError
        For bad tokens, options, or a truth whose shape is not ``[n, T, L]``; all before any
        attribution runs.
    """
    tokens = check_sequence_tokens(tokens)
    methods = check_method_options(methods, ig_steps=ig_steps, baseline=baseline)
    probe = torch.from_numpy(tokens_to_onehot(tokens[:1])).to(predictor.device)
    outputs = output_names(predictor, probe)
    truth = np.asarray(truth)
    expected = (tokens.shape[0], len(outputs), tokens.shape[1])
    if truth.dtype != np.bool_ or truth.shape != expected:
        raise InputError(f"truth must be bool [n, outputs, L] = {list(expected)}, got {truth.dtype} {truth.shape}")
    ids = tuple(str(i) for i in range(tokens.shape[0])) if seq_ids is None else tuple(str(s) for s in seq_ids)
    if len(ids) != tokens.shape[0]:
        raise InputError(f"seq_ids has {len(ids)} entries for {tokens.shape[0]} sequences")
    scores = {
        m: position_scores(predictor, tokens, m, ig_steps=ig_steps, baseline=baseline, batch_size=batch_size)
        for m in methods
    }
    results = []
    for m in methods:
        for t, name in enumerate(outputs):
            truth_t = truth[:, t]
            per_rep = [per_sequence(s[:, t], truth_t) for s in scores[m].replicates]
            ens_roc, ens_prc = per_sequence(scores[m].ensemble[:, t], truth_t)
            roc, prc = spread(np.stack([p[0] for p in per_rep])), spread(np.stack([p[1] for p in per_rep]))
            defined = np.isfinite(ens_roc)
            valid = tokens != N_TOKEN
            fraction = (truth_t & valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
            results.append(
                MethodResult(
                    method=m,
                    output=name,
                    auroc=roc,
                    auprc=prc,
                    ensemble_auroc=_mean(ens_roc[defined]),
                    ensemble_auprc=_mean(ens_prc[defined]),
                    random_auprc=_mean(fraction[defined]),
                    completeness_gap=scores[m].completeness_gap,
                )
            )
    return SequenceEvaluation(outputs, tuple(results), scores, truth, tokens, ids, predictor.n_replicates)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _num(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


# --- truth ---------------------------------------------------------------------------------------


def span_mask(starts: np.ndarray, width: int, length: int) -> np.ndarray:
    """``bool [n, length]``: positions ``start .. start + width − 1`` of each row (start −1: none)."""
    starts = np.asarray(starts)
    pos = np.arange(length)
    return (starts[:, None] >= 0) & (pos >= starts[:, None]) & (pos < starts[:, None] + width)


def simulation_truth(data: TFCoopData, rows: np.ndarray | None = None) -> np.ndarray:
    """Planted motif positions of a TF-cooperativity simulation per output.

    Parameters
    ----------
    data
        The simulation.
    rows
        Sequences to take (default all).

    Returns
    -------
    numpy.ndarray
        ``bool [n, 2, L]``: output 0 (the GATA exposure) is driven by the GATA instance,
        output 1 (the TAL1 outcome, ``1 + β q_exp q_out``) by the GATA and TAL1 instances;
        an embedded confounder motif drives both.
    """
    take = slice(None) if rows is None else rows
    length = data.tokens.shape[1]
    exposure = span_mask(data.exposure_start[take], EXPOSURE_MOTIF.length, length)
    outcome = span_mask(data.outcome_start[take], OUTCOME_MOTIF.length, length)
    confounder = span_mask(data.confounder_start[take], CONFOUNDER_MOTIF.length, length)
    return np.stack([exposure | confounder, exposure | outcome | confounder], axis=1)


def simulation_motif_lines(data: TFCoopData, rows: np.ndarray, seq_ids: Sequence[str]) -> str:
    """The planted motifs of ``rows`` as a motif file for :func:`motif_bed_truth` (and a Deep MR
    audit's ``attribution.motifs``), consistent with :func:`simulation_truth`.

    Parameters
    ----------
    data
        The simulation.
    rows
        ``[m]`` sequence indices of ``data``.
    seq_ids
        ``m`` identifiers under which these sequences are stored.
    """
    lines = []
    spans = (
        (data.exposure_start, EXPOSURE_MOTIF.length, ""),
        (data.confounder_start, CONFOUNDER_MOTIF.length, ""),
        (data.outcome_start, OUTCOME_MOTIF.length, f"\t{OUTPUTS[1]}"),
    )
    for row, name in zip(np.asarray(rows), seq_ids, strict=True):
        lines += [f"{name}\t{s[row]}\t{s[row] + k}{output}" for s, k, output in spans if s[row] >= 0]
    return "".join(line + "\n" for line in lines)


def motif_bed_truth(
    path: str | Path, seq_ids: Sequence[str], length: int, outputs: Sequence[str], *, skip_other_sequences: bool = False
) -> np.ndarray:
    """Planted motif positions from a BED-like file.

    Each line is ``seq_id  start  end  [output]`` (tab or space separated, 0-based half-open
    coordinates within the sequence); without the fourth column the motif counts for every
    output. Blank lines and lines starting with ``#``, ``track`` or ``browser`` are skipped, and
    so, with ``skip_other_sequences``, are lines of sequences not in ``seq_ids`` (a file that
    covers a whole store when only some of its sequences are evaluated).

    Returns
    -------
    numpy.ndarray
        ``bool [len(seq_ids), len(outputs), length]``.

    Raises
    ------
    InputError
        Naming the file and line, for an unknown sequence or output, or bad coordinates.
    """
    index = {str(s): i for i, s in enumerate(seq_ids)}
    columns = {str(o): i for i, o in enumerate(outputs)}
    truth = np.zeros((len(index), len(columns), length), dtype=bool)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the motif positions: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        fields_ = line.split()
        if not fields_ or fields_[0].startswith("#") or fields_[0] in ("track", "browser"):
            continue
        where = f"{path}:{number}"
        if len(fields_) not in (3, 4) or not (fields_[1].isdigit() and fields_[2].isdigit()):
            raise InputError(f"{where}: expected 'seq_id start end [output]' with integer coordinates, got {line!r}")
        name, start, end = fields_[0], int(fields_[1]), int(fields_[2])
        if name not in index and skip_other_sequences:
            continue
        if name not in index:
            raise InputError(f"{where}: sequence {name!r} is not among the evaluated sequences")
        if not 0 <= start < end <= length:
            raise InputError(f"{where}: need 0 <= start < end <= {length}, got {start} {end}")
        if len(fields_) == 4 and fields_[3] not in columns:
            raise InputError(f"{where}: output {fields_[3]!r} is not an output of the model ({', '.join(columns)})")
        rows = [columns[fields_[3]]] if len(fields_) == 4 else list(range(len(columns)))
        truth[index[name], rows, start:end] = True
    return truth


# --- the simulated benchmark ---------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationSettings:
    """Sizes of the simulated benchmark (defaults: the Deep MR demo's training recipe).

    Attributes
    ----------
    n_train
        Simulated training sequences (15 % of them are the early-stopping split).
    n_eval
        Held-out evaluation sequences, all holding both motifs.
    members
        Ensemble members (≥ 2: their spread is reported).
    epochs
        Maximum training epochs (early stopping as :func:`dmr_ray.models.training.train_regressor`).
    batch_size
        Training mini-batch size.
    learning_rate
        Adam learning rate.
    effect
        Causal effect of the simulation (β = α · effect).
    length
        Sequence length.
    seed
        Seeds the simulation and member ``i``'s training (``seed + i``).
    """

    n_train: int = 4000
    n_eval: int = 200
    members: int = 5
    epochs: int = 25
    batch_size: int = 100
    learning_rate: float = 3e-3
    effect: float = 0.5
    length: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not is_int(value) or value < (0 if f.name == "seed" else 1)):
                raise InputError(f"{f.name} must be a {'non-negative' if f.name == 'seed' else 'positive'} integer")
        if self.members < 2:
            raise InputError(f"members must be at least 2 (the spread across members is reported), got {self.members}")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be > 0, got {self.learning_rate!r}")


def simulate_benchmark_data(settings: SimulationSettings) -> tuple[TFCoopData, np.ndarray]:
    """The simulation and the rows of its held-out pair sequences (training uses the first
    ``n_train`` rows; the evaluation rows come after them)."""
    from dmr_ray.sim import simulate_tf_coop

    total = settings.n_train + 5 * settings.n_eval + 64  # ≈ 25 % of sequences are pairs
    sim = simulate_tf_coop(total, length=settings.length, effect=settings.effect, seed=settings.seed)
    rest = np.arange(settings.n_train, total)
    held_out = rest[sim.is_pair[rest]][: settings.n_eval]
    if held_out.size < settings.n_eval:
        raise InputError(
            f"the simulation yielded {held_out.size} pair sequences, fewer than n_eval = {settings.n_eval}"
        )
    return sim, held_out


def train_benchmark_model(sim: TFCoopData, settings: SimulationSettings, model_dir: Path) -> Path:
    """Train the demo's small CNN ensemble on the first ``n_train`` sequences of ``sim``, save it in
    ``model_dir``; returns its spec path."""
    from dmr_ray.demo import train_simulation_ensemble

    return train_simulation_ensemble(
        sim.tokens[: settings.n_train],
        sim.labels[: settings.n_train],
        model_dir,
        members=settings.members,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        length=settings.length,
        seed=settings.seed,
    )


def run_simulated_benchmark(
    settings: SimulationSettings,
    model_dir: Path,
    *,
    methods: Sequence[str] = METHODS,
    ig_steps: int = 50,
    baseline: str = "uniform",
) -> SequenceEvaluation:
    """Simulate, train the ensemble (saved in ``model_dir``) and evaluate its attributions."""
    from dmr_ray.models import load_model_spec
    from dmr_ray.uncertainty import build_predictor

    methods = check_method_options(methods, ig_steps=ig_steps, baseline=baseline)
    sim, held_out = simulate_benchmark_data(settings)
    spec_path = train_benchmark_model(sim, settings, model_dir)
    predictor = build_predictor(load_model_spec(spec_path), device="cpu")
    return evaluate_attributions(
        predictor,
        sim.tokens[held_out],
        simulation_truth(sim, held_out),
        methods=methods,
        seq_ids=[simulated_seq_id(i) for i in held_out],
        ig_steps=ig_steps,
        baseline=baseline,
    )


# --- outputs -------------------------------------------------------------------------------------


def write_evaluation(evaluation: SequenceEvaluation, out: Path, info: Mapping[str, Any]) -> tuple[Path, ...]:
    """Write ``sequences.json``, ``sequences.md`` and the figures under ``out``; returns their paths.

    ``info`` (settings, timings, the model) is stored in the JSON under ``"run"``.
    """
    from dmr_ray.report.attribution import (
        example_tracks_figure,
        markdown_table,
        metrics_figure,
        save_figure,
    )

    out.mkdir(parents=True, exist_ok=True)
    summary = {"written_by": MARKER, **evaluation.to_dict(), "run": dict(info)}
    json_path = out / "sequences.json"
    write_text_atomic(json_path, json.dumps(summary, indent=2) + "\n")
    md_path = out / "sequences.md"
    write_text_atomic(md_path, markdown_table(summary) + "\n")
    metrics_png = save_figure(metrics_figure(summary), out / "sequences_metrics.png")
    tracks_png = save_figure(example_tracks_figure(summary), out / "sequences_example.png")
    return json_path, md_path, metrics_png, tracks_png


OUTPUT_FILES = ("sequences.json", "sequences.md", "sequences_metrics.png", "sequences_example.png", "model")
"""What ``dmr-ray attribution sequences`` writes in its output directory."""


def check_output_directory(out: Path, *, overwrite: bool) -> None:
    """Refuse to write over outputs that exist, unless ``overwrite`` and they are dmr_ray's.

    Raises
    ------
    InputError
        When an output exists without ``overwrite``, or ``sequences.json`` exists but was not
        written by this command (then nothing is replaced, even with ``overwrite``).
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    present = [name for name in OUTPUT_FILES if (out / name).exists()]
    if not present:
        return
    if not overwrite:
        raise InputError(f"{out}: already holds {', '.join(present)}; pass --overwrite to replace them")
    try:
        marker = json.loads((out / "sequences.json").read_text()).get("written_by")
    except (OSError, ValueError, AttributeError):
        marker = None
    if marker != MARKER:
        raise InputError(f"{out}: holds {', '.join(present)} not written by this command; choose another directory")

"""Fast saturation mutagenesis: recompute only what each substitution can change.

For every replicate (ensemble member or MC-dropout pass) and group of references:

1. **Reference pass.** The network runs once on the references, node by node
   (:mod:`dmr_ray.ism.graph`), and the reference activations the rules read are kept
   (:attr:`~dmr_ray.ism.eligibility.NetworkPlan.caches`). With MC dropout the pass's masks
   apply here as in any forward pass.
2. **Mutant passes.** Runs of consecutive sites of one reference (a site: one position and
   its three substitutions) go through the plan's steps: local layers compute their
   difference windows from their inputs' (:mod:`dmr_ray.ism.rules`), boundaries add the
   windows' contribution to the cached reference value, and the rest runs in full on whole
   activations (a local activation read there is spliced back into its reference). The
   selector (or the bare output) turns the raw outputs into tasks, whose paired differences
   from the same replicate's reference tasks are folded into a running mean and SD over
   replicates. When the tasks are linear in a local frontier, the network's tail is folded
   into weights instead (:mod:`dmr_ray.ism.tail`) and never runs for mutants.

Precision
---------
``precision="bfloat16"``/``"float16"`` runs the linear layers on *differences*
(convolutions, the flatten + linear boundary, the folded tail) under autocast and casts their outputs back to
float32 before they meet the float32 reference activations, so rounding is relative to the
change, not to the activation. References, nonlinear layers and the layers run in full stay
float32. It is meant for CUDA; CPU autocast runs it too (slower than float32 on most CPUs).

Choosing the path
-----------------
``fast=True`` runs any eligible model (:mod:`dmr_ray.ism.eligibility`); ``"auto"`` runs it
when its estimated work per mutant (:attr:`FastISM.work_ratio`: the rules' ``flops()``, the
layers run in full, splicing and the folded tail, for the costliest network) is below
:data:`AUTO_MAX_WORK_RATIO` of a full forward's. Models that do not declare a layout are
first checked against full forward passes on the substitutions of the first and last
mutated positions of the first reference.

Reusing plans
-------------
:func:`plan_fast_path` builds the plan (tracing, probes, the folded tail) for one predictor,
length, device, ``fast`` mode and precision. A :class:`FastPlanCache` keeps it across calls
(an engine actor's chunks), so it is built once per key; the check of undeclared models
still runs on every call's references (:func:`fast_path`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import fx

from dmr_ray.alphabet import N_TOKEN
from dmr_ray.errors import InputError
from dmr_ray.ism.channels import read_channels
from dmr_ray.ism.effects import EffectTable, ReplicateMoments, check_references
from dmr_ray.ism.eligibility import BOUNDARY, FOLDED, LOCAL, SHAPE, NetworkPlan, NotEligible, Step, plan_network
from dmr_ray.ism.graph import run_node
from dmr_ray.ism.mutants import N_ALT, MutantSites, build_mutants, reference_onehot
from dmr_ray.ism.result import ISMResult
from dmr_ray.ism.rules import CacheKey, LocalRule, splice
from dmr_ray.ism.tail import FoldedTail, tasks_are_linear
from dmr_ray.ism.windows import Batch
from dmr_ray.models.heads import OutputSelector
from dmr_ray.uncertainty.predictors import ReplicatePredictor, plain_output

log = logging.getLogger(__name__)

Precision = Literal["float32", "bfloat16", "float16"]
"""A ``precision`` name."""

PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Accepted ``precision`` names and the autocast dtype of each (``None``: plain float32)."""

AUTO_MAX_WORK_RATIO = 0.5
"""``fast="auto"`` takes the fast path when its work per mutant is below this fraction of a
full forward's (the fast path's kernels on short windows and its elementwise passes cost more
per operation than a full forward's)."""

VERIFY_TOLERANCE = {None: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
"""Largest fast-vs-exact difference the check of undeclared models accepts, relative to the
largest output, by precision (tangermeme's tolerances)."""


class NetworkRunner:
    """Runs one :class:`~dmr_ray.ism.eligibility.NetworkPlan` and turns its outputs into tasks.

    Parameters
    ----------
    plan
        The network's plan.
    selector
        The predictor's output selector (``None``: the network returns ``[batch, tasks]``).

    Attributes
    ----------
    tail : FoldedTail or None
        The network's linear tail folded into weights, when the tasks are linear and that is
        cheaper than running the tail for mutants.
    work : float
        Estimated floating-point operations per mutant of :meth:`effects` (the plan's
        :attr:`~dmr_ray.ism.eligibility.NetworkPlan.fast_flops`, with the folded tail's
        contractions in place of the tail, and convolutions restricted to the channels the
        tasks read: :func:`~dmr_ray.ism.channels.read_channels`).
    site_bytes : int
        The plan's :attr:`~dmr_ray.ism.eligibility.NetworkPlan.site_bytes` plus the rules'
        scratch (:meth:`~dmr_ray.ism.rules.LocalRule.scratch`).
    """

    def __init__(self, plan: NetworkPlan, selector: OutputSelector | None):
        self.plan = plan
        self.to_tasks = selector if selector is not None else plain_output
        self.keys: dict[str, list[CacheKey]] = {}
        for key in plan.caches:
            self.keys.setdefault(key.node, []).append(key)
        self.output = plan.steps[-1].node
        self.tail: FoldedTail | None = None
        self.work = plan.fast_flops
        skipped: frozenset[fx.Node] = frozenset()
        if plan.tail is not None and tasks_are_linear(selector) and (selector or plan.output_width):
            tail = FoldedTail(plan, plan.tail, selector)
            if tail.flops() < plan.tail.work:
                self.tail, skipped = tail, plan.tail.nodes | {self.output}
                self.work += tail.flops() - plan.tail.work
        if self.tail is None:
            for conv, channels in read_channels(plan, selector).items():
                self.work -= conv.flops()
                conv.keep_channels(channels)
                self.work += conv.flops()
        for step in plan.steps:
            if step.rule is not None:
                step.rule.prepare()
        self.mutant_steps = [s for s in plan.steps if s.node not in skipped]
        scratch = sum(s.rule.scratch() for s in self.mutant_steps if isinstance(s.rule, LocalRule))
        self.site_bytes = plan.site_bytes + 4 * N_ALT * scratch
        ends = self.tail.frontier if self.tail is not None else ()
        self._ref_frees = _frees(plan.steps, lambda s: s.node.all_input_nodes)
        self._mut_frees = _frees(self.mutant_steps, _mutant_reads, ends)

    def reference(self, onehot: torch.Tensor) -> tuple[torch.Tensor, dict[CacheKey, torch.Tensor]]:
        """Run the network on ``onehot`` ``[n, 4, L]``; returns its tasks ``[n, T]`` and the cache."""
        env: dict[fx.Node, Any] = {}
        cache: dict[CacheKey, torch.Tensor] = {}
        for i, step in enumerate(self.plan.steps):
            node = step.node
            env[node] = onehot if node.op == "placeholder" else run_node(node, env.__getitem__, self.plan.network)
            for key in self.keys.get(node.name, ()):
                cache[key] = key.take(env[node])
            _free(env, self._ref_frees[i])
        return self.to_tasks(env[self.output]), cache

    def effects(self, batch: Batch, cache: dict[CacheKey, torch.Tensor], reference: torch.Tensor) -> torch.Tensor:
        """``[B, T]``: the task changes of every mutant of ``batch`` (``reference``: its reference's tasks)."""
        env: dict[fx.Node, Any] = {}
        whole: dict[fx.Node, torch.Tensor] = {}
        windows = self.plan.windows

        def value(n: fx.Node) -> Any:
            if n not in windows:
                return env[n]
            if n not in whole:
                whole[n] = splice(env[n], windows[n], cache[CacheKey.padded(n.name, windows[n])][batch.row], batch)
            return whole[n]

        def shape_only(n: fx.Node) -> Any:
            if n not in windows:
                return env[n]
            return torch.empty((batch.mutants, *windows[n].lead, windows[n].length), device="meta")

        for i, step in enumerate(self.mutant_steps):
            node = step.node
            if step.kind in (LOCAL, BOUNDARY):
                env[node] = step.required_rule([env[n] for n in step.inputs], batch, cache)
            elif step.kind == SHAPE:
                env[node] = run_node(node, shape_only, self.plan.network)
            elif step.kind != FOLDED:
                env[node] = run_node(node, value, self.plan.network)
            _free(env, self._mut_frees[i])
            _free(whole, self._mut_frees[i])
        if self.tail is not None:
            return self.tail(env, batch)
        return self.to_tasks(env[self.output]) - reference


class FastISM:
    """The fast path for one predictor and input length.

    Parameters
    ----------
    predictor
        The replicate predictor.
    runners
        ``id(network) -> NetworkRunner`` for every network of the predictor.
    precision
        Autocast dtype of the linear layers on differences, ``None`` for float32.
    """

    def __init__(self, predictor: ReplicatePredictor, runners: dict[int, NetworkRunner], precision: torch.dtype | None):
        self.predictor = predictor
        self.runners = runners
        self.precision = precision

    @property
    def work_ratio(self) -> float:
        """The largest, over the networks, of the fast path's estimated work per mutant
        divided by a full forward's (:attr:`NetworkRunner.work`)."""
        return max(runner.work / runner.plan.exact_flops for runner in self.runners.values())

    @property
    def declared(self) -> bool:
        """Whether every network declares its layout (else :meth:`matches_exact` checks the path)."""
        return all(runner.plan.declared for runner in self.runners.values())

    def run(
        self, tokens: torch.Tensor, batch_size: int | None, ddof: int, memory_budget: int, keep_replicates: bool = False
    ) -> ISMResult:
        """Saturation mutagenesis of ``tokens`` ``uint8 [n, L]`` (on the predictor's device).

        References are processed in groups of whole sequences (as many as ``memory_budget``
        holds) and each group's mutants in runs of consecutive mutated positions of one
        sequence, at most ``batch_size`` mutants each (default: as many as the budget holds).
        With ``keep_replicates`` each replicate's effects are kept as they are computed (the
        moments are folded from the same values), ``float32 [R, n, L, 3, T]`` in all.
        """
        predictor = self.predictor
        n, length = tokens.shape
        reference = reference_onehot(tokens)
        valid = tokens != N_TOKEN
        valid_host = valid.cpu().numpy()
        plans = [r.plan for r in self.runners.values()]
        sites_per_batch = self.sites_per_batch(batch_size, memory_budget)
        group = max(1, memory_budget // max(p.sequence_bytes for p in plans))
        ref_pred: torch.Tensor | None = None
        table: EffectTable | None = None
        for start in range(0, n, group):
            stop = min(n, start + group)
            runs = [
                (row, first, last)
                for row in range(stop - start)
                for first, last in _runs(valid_host[start + row], sites_per_batch)
            ]
            moments = ReplicateMoments()
            for r in range(predictor.n_replicates):
                with predictor.replicate_network(r) as network:
                    runner = self.runners[id(network)]
                    ref_tasks, cache = runner.reference(reference[start:stop])
                    check_references(ref_tasks[None], predictor.task_names, start)
                    diffs = torch.zeros(stop - start, length, N_ALT, ref_tasks.shape[1], device=tokens.device)
                    for row, first, last in runs:
                        batch = Batch(row, first, last, tokens[start + row], self.precision, runner.plan.group)
                        effects = runner.effects(batch, cache, ref_tasks[row])[batch.real]
                        diffs[row, first:last] = effects.view(last - first, N_ALT, -1)
                if ref_pred is None:
                    ref_pred = torch.empty(predictor.n_replicates, n, ref_tasks.shape[1], device=tokens.device)
                    kept = predictor.n_replicates if keep_replicates else 0
                    table = EffectTable(n, length, ref_tasks.shape[1], tokens.device, kept)
                assert table is not None  # mypy: made just above for the first replicate
                ref_pred[r, start:stop] = ref_tasks
                table.put_replicate(r, start, diffs, valid[start:stop])
                moments.add(diffs)
            assert table is not None  # made by the first replicate (every predictor has one)
            sd, mean = moments.std_mean(ddof)
            table.put_rows(start, mean, sd, valid[start:stop])
        assert table is not None and ref_pred is not None  # n >= 1 references
        return table.result(ref_pred, valid, predictor, ddof)

    def matches_exact(self, tokens: torch.Tensor) -> str | None:
        """Compare with full forward passes (replicate 0) on the substitutions of the first and
        last mutated positions of the first reference; returns why they differ, or ``None``."""
        mutated = torch.nonzero(tokens[0] != N_TOKEN).flatten().tolist()
        if not mutated:
            return None
        reference = reference_onehot(tokens[:1])
        with self.predictor.replicate_network(0) as network:
            runner = self.runners[id(network)]
            group = runner.plan.group
            batches = [Batch(0, p, p + 1, tokens[0], self.precision, group) for p in {mutated[0], mutated[-1]}]
            ref_tasks, cache = runner.reference(reference)
            fast = torch.cat([runner.effects(b, cache, ref_tasks[0])[b.real] for b in batches])
        sites = [MutantSites(torch.zeros_like(b.alt), b.mutant_pos, b.slot, b.alt) for b in batches]
        mutants = torch.cat([self.predictor.predict(build_mutants(reference, s), 0) for s in sites])
        error = (fast - (mutants - self.predictor.predict(reference, 0))).abs().max().item()
        scale = max(1.0, mutants.abs().max().item())
        if error <= VERIFY_TOLERANCE[self.precision] * scale:
            return None
        return f"it differs from full forward passes by up to {error:.3g} at the sequence ends"

    def sites_per_batch(self, batch_size: int | None, memory_budget: int) -> int:
        """Sites per mutant pass: ``batch_size`` mutants, or as many as the budget holds,
        rounded up to whole blocks of every network's plan."""
        plans = [r.plan for r in self.runners.values()]
        if batch_size is not None:
            sites = -(-batch_size // N_ALT)
        else:
            sites = memory_budget // max(r.site_bytes for r in self.runners.values())
        block = math.lcm(*(p.group for p in plans))
        return max(1, -(-sites // block)) * block


def check_precision(precision: str, fast: bool | str, *, calibrated: bool = False) -> None:
    """Check a ``precision`` name and that it goes with ``fast`` and calibration.

    This is the one place the rule lives: ISM, engine jobs and every configuration call it.

    Parameters
    ----------
    precision
        One of :data:`PRECISIONS`.
    fast
        The ``fast`` setting it runs with; a precision other than ``"float32"`` needs the
        fast path (``True`` or ``"auto"``).
    calibrated
        Whether a recalibration is applied; calibrated ISM runs the exact path in float32,
        so only ``"float32"`` goes with it.

    Raises
    ------
    InputError
        Naming the ``precision`` field and the value at fault.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision: must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if fast is False and precision != "float32":
        raise InputError(f"precision: {precision!r} needs the fast path (fast=True or 'auto')")
    if calibrated and precision != "float32":
        raise InputError(
            f"precision: {precision!r} cannot be combined with calibration "
            "(calibrated ISM runs the exact path in float32)"
        )


def plan_fast_path(
    predictor: ReplicatePredictor, length: int, fast: bool | Literal["auto"], precision: torch.dtype | None
) -> FastISM | None:
    """The fast path for ``predictor`` on sequences of ``length``, or ``None`` to use the exact path.

    The plan is not yet checked against full forward passes (see :func:`fast_path`).
    ``fast=True`` logs one warning saying why it falls back; ``"auto"`` logs at debug level.
    """
    report = _reporter(fast)
    if not predictor.layerwise:
        report("fast ISM: a %s transforms all replicates together; using the exact path", type(predictor).__name__)
        return None
    networks = {id(net): net for net in predictor.networks}
    try:
        plans = {key: plan_network(net, length, predictor.device) for key, net in networks.items()}
    except NotEligible as err:
        report("fast ISM: the model is not eligible (%s); using the exact path", err)
        return None
    runners = {key: NetworkRunner(p, predictor.selector) for key, p in plans.items()}
    path = FastISM(predictor, runners, precision)
    if fast == "auto" and path.work_ratio >= AUTO_MAX_WORK_RATIO:
        report("fast ISM: ~%.3g of a full forward's work per mutant; using the exact path", path.work_ratio)
        return None
    return path


class FastPlanCache:
    """Fast-path plans kept across ISM calls (e.g. the chunks of one engine actor).

    A plan depends on the predictor object (its networks and their weights, which must not
    change while it is cached), the sequence length, the device, the ``fast`` mode and the
    precision. Each key's plan, or its decision to take the exact path, is made once.
    """

    def __init__(self) -> None:
        self._paths: dict[tuple[Any, ...], FastISM | None] = {}

    def get(
        self, predictor: ReplicatePredictor, length: int, fast: bool | Literal["auto"], precision: torch.dtype | None
    ) -> FastISM | None:
        """:func:`plan_fast_path` of these arguments, built on their first use."""
        key = (predictor, length, predictor.device, fast, precision)
        if key not in self._paths:
            self._paths[key] = plan_fast_path(predictor, length, fast, precision)
        return self._paths[key]


def fast_path(
    predictor: ReplicatePredictor,
    tokens: torch.Tensor,
    fast: bool | Literal["auto"],
    precision: torch.dtype | None,
    plans: FastPlanCache | None = None,
) -> FastISM | None:
    """The fast path for ``predictor`` on ``tokens``, or ``None`` to use the exact path.

    The plan comes from ``plans`` when given (else it is built for this call). A model that
    does not declare its layout is checked against full forward passes on ``tokens`` at
    every call, cached plan or not. ``fast=True`` logs one warning saying why it falls back;
    ``"auto"`` logs at debug level.
    """
    plans = plans if plans is not None else FastPlanCache()
    path = plans.get(predictor, tokens.shape[1], fast, precision)
    if path is None or path.declared:
        return path
    reason = path.matches_exact(tokens)
    if reason is not None:
        _reporter(fast)("fast ISM: the traced model failed its check (%s); using the exact path", reason)
        return None
    return path


def _reporter(fast: bool | Literal["auto"]) -> Callable[..., None]:
    """Where fallbacks are logged: a warning when the fast path was asked for, else debug."""
    return log.warning if fast is True else log.debug


def _runs(valid: np.ndarray, per_batch: int) -> list[tuple[int, int]]:
    """``(first, stop)`` of the runs of consecutive ``valid`` positions, split at the multiples
    of ``per_batch`` (so that a run padded to whole blocks dividing ``per_batch`` stays within
    ``per_batch`` positions)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(np.int8), [0]])))
    return [
        (max(begin, cut), min(stop, cut + per_batch))
        for begin, stop in zip(edges[::2], edges[1::2], strict=True)
        for cut in range(begin - begin % per_batch, stop, per_batch)
    ]


def _frees(steps: list[Step], reads: Callable, ends: Sequence[fx.Node] = ()) -> list[list[fx.Node]]:
    """For each step, the values no later step reads (the output and ``ends`` are kept)."""
    last: dict[fx.Node, int] = {}
    for i, step in enumerate(steps):
        for n in reads(step):
            last[n] = i
    for n in ends:
        last.pop(n, None)
    frees: list[list[fx.Node]] = [[] for _ in steps]
    for n, i in last.items():
        frees[i].append(n)
    return frees


def _mutant_reads(step: Step) -> Sequence[fx.Node]:
    """The nodes a step reads in a mutant pass (a rule reads its local inputs' windows)."""
    return step.inputs if step.rule is not None else step.node.all_input_nodes


def _free(env: dict, nodes: Sequence[fx.Node]) -> None:
    for n in nodes:
        env.pop(n, None)

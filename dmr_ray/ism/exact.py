"""Saturation mutagenesis entry point, and the exact path: every substitution is a full
forward pass of every replicate.

:func:`saturation_mutagenesis` validates its arguments and runs the fast path
(:mod:`dmr_ray.ism.fast`) when asked and possible, else the exact path below.

For each sub-batch of mutants (built on the device from the reference one-hots) every
replicate ``r`` predicts the mutants and the paired difference ``f_r(mut) - f_r(ref)`` is
taken against the reference prediction of the same replicate, computed once up front. The
mean and the standard deviation over replicates are reduced on the device in float64.

Sub-batch size
--------------
``batch_size=None`` derives the number of mutants per forward pass from a byte budget
(:data:`DEFAULT_MEMORY_BUDGET`, 256 MiB). One probe pass of a single sequence measures the
largest activation of any leaf module, ``A`` elements; a mutant is then charged
``4 * (4*L + 3*A) + 12 * R * T`` bytes: its float32 one-hot, three live activations of the
largest layer (input, output and a residual or pooled copy) and its ``[R, T]`` differences in
float32 plus float64. The batch is ``budget // bytes_per_mutant`` (at least 1, at most all
mutants). Models whose memory goes elsewhere (functional ops, attention) may need an explicit
``batch_size`` or ``memory_budget``.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from torch import nn

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.ism.effects import EffectTable, check_references
from dmr_ray.ism.fast import PRECISIONS, FastPlanCache, Precision, check_precision, fast_path
from dmr_ray.ism.mutants import MutantPlan, as_token_tensor, build_mutants, reference_onehot
from dmr_ray.ism.result import ISMResult
from dmr_ray.uncertainty.predictors import ReplicatePredictor, as_predictor

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET = 256 * 2**20
"""Bytes of one-hot input, activations and differences one sub-batch may use."""

_FLOAT32 = 4
_DIFF_BYTES = 4 + 8


def saturation_mutagenesis(
    predictor: ReplicatePredictor | nn.Module,
    tokens: np.ndarray | torch.Tensor,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    fast: bool | Literal["auto"] = False,
    ddof: int = 0,
    memory_budget: int | None = None,
    precision: Precision = "float32",
    plans: FastPlanCache | None = None,
    keep_replicates: bool = False,
) -> ISMResult:
    """Effects of all ``3 L`` single-base substitutions of each reference, over replicates.

    Parameters
    ----------
    predictor
        A :class:`~dmr_ray.uncertainty.ReplicatePredictor`, or a plain ``nn.Module``
        returning ``[batch, tasks]`` (one replicate; put in eval mode).
    tokens
        ``uint8 [n, L]`` references (numpy or torch), A=0 C=1 G=2 T=3 N=4. Positions holding
        N are not mutated (their effects are NaN); the other positions of such a reference are.
    batch_size
        Mutants per forward pass; ``None`` derives it from ``memory_budget`` (module docs).
    device
        Where to compute; the predictor is moved there (in place). ``None`` keeps its device.
    fast
        ``False``: exact path. ``True``: the receptive-field fast path
        (:mod:`dmr_ray.ism.fast`) when the model is eligible, else the exact path with one
        logged warning saying why. ``"auto"``: the fast path when it is eligible and its
        estimated work per mutant is well below a full forward's, silently otherwise.
    ddof
        Delta degrees of freedom of the replicate standard deviations (0 as the original
        Deep MR: ``se`` is the SD of the paired differences, no ``1/sqrt(R)``).
    memory_budget
        Bytes per sub-batch for the automatic ``batch_size``; default
        :data:`DEFAULT_MEMORY_BUDGET`.
    precision
        ``"bfloat16"``/``"float16"``: the fast path runs its linear layers on differences
        under autocast, accumulating in float32 (meant for CUDA); needs ``fast`` set.
    plans
        Keeps fast-path plans across calls with the same predictor object (e.g. the chunks
        of an engine actor), so each is built once (:class:`~dmr_ray.ism.fast.FastPlanCache`);
        ``None`` plans for this call only.
    keep_replicates
        Also return every replicate's paired differences (:attr:`ISMResult.replicate_beta`,
        ``float32 [R, n, L, 3, T]``); both paths keep them, and ``beta``/``se`` are their moments.

    Returns
    -------
    ISMResult
        ``beta``, ``se`` ``float32 [n, L, 3, T]``; ``ref_mean``, ``ref_se`` ``float32 [n, T]``;
        ``replicate_beta`` with ``keep_replicates``.

    Raises
    ------
    InputError
        Bad tokens (type, dtype, shape, values, length), options out of range.
    NonFinitePredictionError
        A prediction is NaN or infinite; names the sequence index.
    """
    predictor = as_predictor(predictor)
    if device is not None:
        predictor.to(device)
    if fast not in (True, False, "auto"):
        raise InputError(f"fast: must be True, False or 'auto', got {fast!r}")
    check_precision(precision, fast)
    n_rep = predictor.n_replicates
    if not is_int(ddof) or not 0 <= ddof < n_rep:
        raise InputError(f"ddof: must be an integer in [0, {n_rep}) for {n_rep} replicates, got {ddof!r}")
    for name, value in (("batch_size", batch_size), ("memory_budget", memory_budget)):
        if value is not None and (not is_int(value) or value < 1):
            raise InputError(f"{name}: must be a positive integer or None, got {value!r}")
    ddof = int(ddof)  # a numpy integer is accepted and recorded as a Python int
    tokens = as_token_tensor(tokens, predictor.input_length).to(predictor.device)
    memory_budget = memory_budget or DEFAULT_MEMORY_BUDGET
    with torch.inference_mode():
        path = fast_path(predictor, tokens, fast, PRECISIONS[precision], plans) if fast is not False else None
        if path is not None:
            return path.run(tokens, batch_size, ddof, memory_budget, keep_replicates)
        return _exact(predictor, tokens, batch_size, ddof, memory_budget, keep_replicates)


def auto_batch_size(predictor: ReplicatePredictor, length: int, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Mutants per forward pass under ``memory_budget`` bytes (rule in the module docs)."""
    peak = 0

    def record(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal peak
        if isinstance(output, dict):
            output = list(output.values())
        tensors = output if isinstance(output, tuple | list) else [output]
        peak = max(peak, sum(t.numel() for t in tensors if isinstance(t, torch.Tensor)))

    leaves = [m for net in predictor.networks[:1] for m in net.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        n_tasks = predictor.predict(torch.zeros(1, 4, length, device=predictor.device), 0).shape[1]
    finally:
        for handle in handles:
            handle.remove()
    per_mutant = _FLOAT32 * (4 * length + 3 * peak) + _DIFF_BYTES * predictor.n_replicates * n_tasks
    return max(1, memory_budget // per_mutant)


def _exact(
    predictor: ReplicatePredictor,
    tokens: torch.Tensor,
    batch_size: int | None,
    ddof: int,
    memory_budget: int,
    keep_replicates: bool,
) -> ISMResult:
    n, length = tokens.shape
    reference = reference_onehot(tokens)
    plan = MutantPlan(tokens)
    if batch_size is None:
        batch_size = auto_batch_size(predictor, length, memory_budget)
        log.debug("ISM sub-batch of %d mutants (budget %d bytes)", batch_size, memory_budget)
    ref_pred = torch.stack(
        [
            torch.cat([predictor.predict(reference[i : i + batch_size], r) for i in range(0, n, batch_size)])
            for r in range(predictor.n_replicates)
        ]
    )
    check_references(ref_pred, predictor.task_names)
    kept = predictor.n_replicates if keep_replicates else 0
    table = EffectTable(n, length, ref_pred.shape[2], tokens.device, kept)
    for start in range(0, plan.n_mutants, batch_size):
        sites = plan.sites(start, min(start + batch_size, plan.n_mutants))
        mutants = build_mutants(reference, sites)
        diffs = torch.stack(
            [
                predictor.predict(mutants, r) - ref_pred[r].index_select(0, sites.seq)
                for r in range(predictor.n_replicates)
            ]
        )
        sd, mean = torch.std_mean(diffs.double(), dim=0, correction=ddof)
        table.put(sites, mean, sd, diffs)
    return table.result(ref_pred, plan.valid, predictor, ddof)

"""Folding a network's linear tail into weights on its frontier's difference windows.

When everything after some local activations (the :class:`~dmr_ray.ism.eligibility.Tail`'s
frontier) is linear, and so are the predictor's tasks (an output selector whose tasks all
reduce by ``sum``, ``mean`` or ``none``, or a bare ``[batch, tasks]`` output), each task is
an affine function of the frontier: ``task_t = c_t + sum_v <G_v[t], a_v>``. ``G`` does not
depend on the input; it is computed once per network by autograd (one forward pass of one
sequence per task, one backward pass of the tail). A mutant's task changes are then
``sum_v <G_v[t], diff_v>`` over the frontier's difference windows, and the tail (for BPNet:
the profile convolution, cropping, count pooling and linear layer) never runs for mutants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import fx

from dmr_ray.ism.eligibility import NetworkPlan, Tail
from dmr_ray.ism.graph import run_node
from dmr_ray.ism.rules import WindowWeights
from dmr_ray.ism.windows import Batch
from dmr_ray.models.heads import OutputSelector
from dmr_ray.uncertainty.predictors import plain_output

LINEAR_REDUCTIONS = frozenset({"sum", "mean", "none"})


def tasks_are_linear(selector: OutputSelector | None) -> bool:
    """Whether the tasks are linear in the network's outputs."""
    return selector is None or all(out.reduce in LINEAR_REDUCTIONS for out in selector.outputs)


class FoldedTail:
    """The tail of ``plan`` as weights on its frontier (needs :func:`tasks_are_linear`).

    Parameters
    ----------
    plan
        The network's plan.
    tail
        Its :attr:`~dmr_ray.ism.eligibility.NetworkPlan.tail`.
    selector
        The predictor's output selector (``None`` for a bare output).
    """

    def __init__(self, plan: NetworkPlan, tail: Tail, selector: OutputSelector | None):
        self.frontier = tail.frontier
        gradients = _gradients(plan, tail, selector)
        self.weights = [WindowWeights(plan.windows[v], g) for v, g in zip(self.frontier, gradients, strict=True)]

    def flops(self) -> float:
        """Work per mutant."""
        return sum(2.0 * w.outputs * w.window.features * w.window.width for w in self.weights)

    def __call__(self, diffs: Mapping[fx.Node, torch.Tensor], batch: Batch) -> torch.Tensor:
        """``[B, T]`` task changes from the frontier's difference windows."""
        changes = (w(diffs[v], batch) for v, w in zip(self.frontier, self.weights, strict=True))
        return cast(torch.Tensor, sum(changes))  # the frontier is never empty


def _gradients(plan: NetworkPlan, tail: Tail, selector: OutputSelector | None) -> list[torch.Tensor]:
    """``[T, F, L]`` gradient of the tasks with respect to each frontier activation.

    The network runs on ``T`` copies of one sequence with the frontier activations made
    leaves, so that one backward pass of ``sum_t task_t(copy t)`` gives every task's
    gradient (copy ``t`` holds task ``t``'s).
    """
    frontier = set(tail.frontier)
    # A fresh selector: the predictor's caches index tensors made in inference mode, which
    # autograd cannot save.
    to_tasks = OutputSelector(selector.outputs) if selector is not None else plain_output
    n_tasks = len(selector.outputs) if selector is not None else plan.output_width
    if n_tasks is None:
        raise AssertionError("a folded tail needs a selector or a [batch, k] output")
    window = plan.windows[plan.steps[0].node]
    leaves: dict[fx.Node, torch.Tensor] = {}
    env: dict[fx.Node, Any] = {}
    with torch.inference_mode(False), torch.enable_grad():
        for step in plan.steps:
            node = step.node
            if node.op == "placeholder":
                value = torch.zeros(n_tasks, *window.lead, plan.length, device=window.device_starts.device)
            else:
                value = run_node(node, env.__getitem__, plan.network)
            if node in frontier:
                value = leaves[node] = value.detach().requires_grad_(True)
            env[node] = value
        tasks = to_tasks(env[plan.steps[-1].node])
        inputs = [leaves[v] for v in tail.frontier]
        grads = torch.autograd.grad(tasks.diagonal().sum(), inputs, allow_unused=True)
    return [
        (g if g is not None else torch.zeros_like(x)).reshape(n_tasks, -1, x.shape[-1])
        for x, g in zip(inputs, grads, strict=True)
    ]

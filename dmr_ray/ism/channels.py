"""Which output channels of a network's convolutions the tasks read.

An output selector reads entries of the task axis (axis 1) of some of the network's outputs
(``OutputSpec.index``). When such an output is a convolution's output seen only through
layers that keep every channel where it is (cropping, reshapes of the channel axes, eval-mode
dropout, scaling), the convolution need only compute the channels behind those entries: the
others never reach a task. For BPNet with a task on one profile (``select="profile",
index=0``) that is 2 of the profile convolution's 8 channels.

The walk is structural (no probing): every node from the convolution to the output has that
chain as its only reader, so the dropped channels' differences (left at zero, spliced back as
the reference's) are read by nothing but the unselected entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import fx

from dmr_ray.ism import rules
from dmr_ray.ism.eligibility import LOCAL, NetworkPlan
from dmr_ray.models.heads import OutputSelector

_CHANNEL_KEEPING = (rules.Relabel, rules.Crop, rules.Scale)
"""Local rules whose output feature ``f`` is their input feature ``f`` (flat over the
non-length axes)."""


def read_channels(plan: NetworkPlan, selector: OutputSelector | None) -> dict[rules.Conv, np.ndarray]:
    """The convolutions of ``plan`` whose tasks read only some output channels, and those
    channels (sorted ``int64``); convolutions not listed need all theirs."""
    if selector is None:
        return {}
    output = plan.steps[-1].node
    structure = output.args[0]
    demand: dict[fx.Node, set[int] | None] = {}
    for spec in selector.outputs:
        node = _pick(structure, spec.select)
        if node is None:
            return {}
        wanted = None if spec.index is None else set(spec.index)
        if node in demand:
            previous = demand[node]
            wanted = None if previous is None or wanted is None else previous | wanted
        demand[node] = wanted
    step_of = {s.node: s for s in plan.steps}
    found: dict[rules.Conv, np.ndarray] = {}
    for node, index in demand.items():
        if index is None or node not in plan.windows or list(node.users) != [output]:
            continue
        lead = plan.windows[node].lead
        features = np.arange(int(np.prod(lead))).reshape(lead)[sorted(index)].ravel()
        conv = _producer(node, step_of)
        if conv is not None and conv.module.groups == 1 and len(features) < conv.module.out_channels:
            found[conv] = np.sort(features)
    return found


def _pick(structure: Any, select: str | int | None) -> fx.Node | None:
    """The node ``select`` names in the output structure (``None`` if it is not one node)."""
    if select is None:
        picked = structure
    elif isinstance(structure, Mapping) and select in structure:
        picked = structure[select]
    elif isinstance(structure, Sequence) and isinstance(select, int) and select < len(structure):
        picked = structure[select]
    else:
        return None
    return picked if isinstance(picked, fx.Node) else None


def _producer(node: fx.Node, step_of: Mapping[fx.Node, Any]) -> rules.Conv | None:
    """The convolution whose output reaches ``node`` through channel-keeping local layers,
    each read only by the next, or ``None``."""
    while True:
        step = step_of[node]
        if step.kind != LOCAL:
            return None
        if isinstance(step.rule, rules.Conv):
            return step.rule
        if not isinstance(step.rule, _CHANNEL_KEEPING) or len(step.inputs) != 1:
            return None
        (source,) = step.inputs
        if list(source.users) != [node]:
            return None
        node = source

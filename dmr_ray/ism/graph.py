"""torch.fx graphs of the networks the fast ISM path runs: tracing and running one node."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from torch import fx, nn
from torch.fx.node import map_arg

from dmr_ray.uncertainty.dropout import LockedDropout


class _Tracer(fx.Tracer):
    """The default tracer, keeping MC-dropout layers whole (their mask depends on the pass)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, LockedDropout) or super().is_leaf_module(m, module_qualified_name)


def trace(network: nn.Module) -> fx.Graph:
    """The network's forward as a torch.fx graph (raises what torch.fx raises)."""
    return _Tracer().trace(network)


def run_node(node: fx.Node, value: Callable[[fx.Node], Any], root: nn.Module) -> Any:
    """Run one non-placeholder node of a graph traced from ``root``; ``value(n)`` gives the
    value of each node it reads.

    The ``output`` node returns its argument (the network's output structure).
    """
    args, kwargs = map_arg((node.args, node.kwargs), value)
    target = node.target  # a callable for call_function, else a (qualified) name
    if node.op == "call_function" and callable(target):
        return target(*args, **kwargs)
    if node.op == "call_module" and isinstance(target, str):
        return root.get_submodule(target)(*args, **kwargs)
    if node.op == "call_method" and isinstance(target, str):
        return getattr(args[0], target)(*args[1:], **kwargs)
    if node.op == "get_attr" and isinstance(target, str):
        return operator.attrgetter(target)(root)
    if node.op == "output":
        return args[0]
    raise AssertionError(f"cannot run a {node.op!r} node")  # placeholders are fed by the caller

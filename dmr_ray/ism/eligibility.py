"""Which networks the fast ISM path can run, and the plan it runs them with.

Planning
--------
A network is traced with torch.fx (``torch.nn`` layers and MC-dropout layers kept whole) and
run on two probe batches (2 and 1 sequences of the call's length) to learn every node's
shape and constant arguments. Each node is then classified:

``local``
    A rule of :mod:`dmr_ray.ism.rules` computes its difference window: the input,
    ``nn.Conv1d`` (zero padding), ``nn.BatchNorm1d`` (eval), elementwise activations
    (modules, functions, methods), ``nn.MaxPool1d``/``nn.AvgPool1d`` (no ceil mode),
    dropout (eval or MC-dropout locked), ``nn.Identity``, additions/subtractions of two
    local activations, additions of constants, products with numbers, slices of the length
    axis (cropping), reshapes of the other axes (``unflatten``), copies.
``boundary``
    Reads a local activation and returns a global value incrementally: ``flatten`` then
    ``nn.Linear`` (the flatten is ``folded`` into it), mean or sum over the length axis,
    ``nn.AdaptiveAvgPool1d(1)``.
``shape``
    The shape of a local activation.
``static``
    Depends on no input (parameters, constants, shape arithmetic).
``global``
    Everything else: run in full on whole mutant activations, local inputs spliced back.

Eligibility
-----------
A network is eligible when torch.fx can trace it, it takes one input and at least one of
its layers can be recomputed on a window (a local layer or a boundary). Built-in
architectures declare it (``fast_ism_layout``); other models are inferred by tracing and
checked against the exact path on a few mutants before use (:mod:`dmr_ray.ism.fast`).
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.node import map_arg

from dmr_ray.errors import InputError
from dmr_ray.ism import rules
from dmr_ray.ism.graph import run_node, trace
from dmr_ray.ism.mutants import N_ALT, reference_onehot
from dmr_ray.ism.rules import CacheKey, LocalRule, Rule
from dmr_ray.ism.windows import Window
from dmr_ray.models.loading import DROPOUT_TYPES
from dmr_ray.uncertainty.dropout import LockedDropout
from dmr_ray.uncertainty.predictors import ReplicatePredictor, as_predictor

STATIC, LOCAL, SHAPE, BOUNDARY, FOLDED, GLOBAL, OUTPUT = (
    "static",
    "local",
    "shape",
    "boundary",
    "folded",
    "global",
    "output",
)
_FLOAT = 4
MAX_GROUP = 64
"""Most input positions per block (:mod:`dmr_ray.ism.windows`): a batch holds whole blocks, and
wider blocks widen the windows of the layers before the last stride."""

POINTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.LogSigmoid,
    nn.Tanhshrink,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Threshold,
)
POINTWISE_FUNCTIONS = frozenset(
    {
        torch.relu,
        F.relu,
        F.relu6,
        F.leaky_relu,
        F.elu,
        F.selu,
        F.celu,
        F.gelu,
        F.silu,
        F.mish,
        F.softplus,
        F.softsign,
        F.hardtanh,
        F.hardswish,
        F.hardsigmoid,
        F.logsigmoid,
        torch.sigmoid,
        F.sigmoid,
        torch.tanh,
        F.tanh,
        torch.exp,
        torch.log1p,
        torch.abs,
        torch.square,
        torch.clamp,
    }
)
POINTWISE_METHODS = frozenset({"relu", "sigmoid", "tanh", "exp", "log1p", "abs", "square", "clamp"})
_RELU = frozenset({torch.relu, F.relu, "relu"})
_COPY_METHODS = frozenset({"contiguous", "clone", "detach", "float"})
_ADD = frozenset({operator.add, torch.add, "add"})
_SUB = frozenset({operator.sub, torch.sub, "sub"})
_MUL = frozenset({operator.mul, torch.mul, "mul"})
_DIV = frozenset({operator.truediv, torch.div, "div"})
_NEG = frozenset({operator.neg, torch.neg, "neg"})
_REDUCE = {torch.mean: True, torch.sum: False, "mean": True, "sum": False}
_FLATTEN = frozenset({torch.flatten, "flatten"})
_SHAPE_METHODS = frozenset({"size", "dim"})
_LINEAR_RULES = (
    rules.Input,
    rules.Conv,
    rules.ChannelScale,
    rules.AvgPool,
    rules.Crop,
    rules.Sum,
    rules.Scale,
    rules.Relabel,
    rules.FlattenLinear,
    rules.LengthReduce,
)
_LINEAR_MODULES = (nn.Linear, nn.Conv1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.Flatten, nn.Unflatten, nn.Identity)
_LINEAR_CALLS = frozenset(
    {
        operator.getitem,
        torch.flatten,
        torch.reshape,
        torch.squeeze,
        torch.unsqueeze,
        torch.transpose,
        torch.permute,
        torch.cat,
        torch.stack,
        torch.mean,
        torch.sum,
        "flatten",
        "unflatten",
        "view",
        "reshape",
        "squeeze",
        "unsqueeze",
        "transpose",
        "permute",
        "contiguous",
        "clone",
        "float",
        "mean",
        "sum",
    }
)


class NotEligible(Exception):
    """The fast path cannot run this network; the message says why."""


@dataclass(frozen=True)
class Eligibility:
    """Whether the fast ISM path can run a model.

    Attributes
    ----------
    eligible : bool
        ``True`` when the fast path can run it.
    reason : str
        Why not (empty when eligible).
    declared : bool
        The model declares its layout (``fast_ism_layout``, the built-in architectures);
        undeclared models are checked against the exact path before use.
    """

    eligible: bool
    reason: str
    declared: bool


@dataclass(eq=False)
class Step:
    """One graph node of a :class:`NetworkPlan`: its kind, rule and local inputs."""

    node: fx.Node
    kind: str
    rule: Rule | None = None
    inputs: tuple[fx.Node, ...] = ()

    @property
    def required_rule(self) -> Rule:
        """:attr:`rule` of a step that has one (every ``LOCAL`` and ``BOUNDARY`` step)."""
        if self.rule is None:
            raise AssertionError(f"a {self.kind} step of {self.node.name} has no rule")
        return self.rule

    @property
    def local_rule(self) -> LocalRule:
        """:attr:`rule` of a ``LOCAL`` step: one with a difference window."""
        if not isinstance(self.rule, LocalRule):
            raise AssertionError(f"the {self.kind} step of {self.node.name} has no local rule")
        return self.rule


@dataclass(eq=False)
class NetworkPlan:
    """How the fast path runs one network on sequences of one length.

    Attributes
    ----------
    network : torch.nn.Module
        The traced network (its layers are used live: weights are read at run time).
    length : int
        Input length.
    steps : list of Step
        Every graph node in execution order.
    windows : dict
        Graph node -> :class:`~dmr_ray.ism.windows.Window` of each local node.
    caches : set of CacheKey
        Reference tensors the reference pass records.
    declared : bool
        Whether the network declares its layout.
    exact_flops, fast_flops : float
        Approximate work per mutant of a full forward and of the fast path.
    site_bytes : int
        Approximate memory of one site (``N_ALT`` mutants) in a mutant pass.
    sequence_bytes : int
        Upper bound of the memory of one sequence in a reference pass.
    group : int
        Input positions per block of the windows (a batch holds whole blocks).
    tail : Tail or None
        The network's linear end, if its frontier is local.
    output_width : int or None
        Columns of the output when it is a ``[batch]`` (1) or ``[batch, k]`` tensor.
    """

    network: nn.Module
    length: int
    steps: list[Step]
    windows: dict[fx.Node, Window]
    caches: set[CacheKey]
    declared: bool
    exact_flops: float
    fast_flops: float
    site_bytes: int
    sequence_bytes: int
    group: int
    tail: Tail | None
    output_width: int | None


@dataclass(frozen=True, eq=False)
class Tail:
    """The end of a network that is linear in a few local activations (its *frontier*).

    When the selected tasks are linear in the network's outputs too, every task's change is
    a fixed linear function of the frontier's difference windows (:mod:`dmr_ray.ism.tail`),
    and the tail need not run for mutants.

    Attributes
    ----------
    nodes : frozenset of torch.fx.Node
        The linear nodes between the frontier and the output.
    frontier : tuple of torch.fx.Node
        Local nodes the tail reads.
    work : float
        Approximate work per mutant of running the tail on the fast path.
    """

    nodes: frozenset[fx.Node]
    frontier: tuple[fx.Node, ...]
    work: float


def declares_layout(network: nn.Module) -> bool:
    """Whether ``network`` declares a fast-ISM layout (``fast_ism_layout``)."""
    return getattr(network, "fast_ism_layout", None) is not None


def fast_ism_eligibility(model: ReplicatePredictor | nn.Module, length: int | None = None) -> Eligibility:
    """Whether the fast ISM path can run ``model`` (every network of a predictor).

    Parameters
    ----------
    model
        A replicate predictor or a module.
    length
        Input length; default the predictor's ``input_length``.

    Raises
    ------
    InputError
        No length given and the model declares none (a ``ValueError``).
    """
    predictor = as_predictor(model)
    length = length or predictor.input_length
    if length is None:
        raise InputError("length: the model accepts any length; give the one to check")
    if not predictor.layerwise:
        return Eligibility(
            False,
            f"a {type(predictor).__name__} transforms all replicates together",
            declares_layout(predictor.networks[0]),
        )
    try:
        plans = [plan_network(net, length, predictor.device) for net in predictor.networks]
    except NotEligible as err:
        return Eligibility(False, str(err), declares_layout(predictor.networks[0]))
    return Eligibility(True, "", plans[0].declared)


def plan_network(network: nn.Module, length: int, device: torch.device) -> NetworkPlan:
    """Trace, probe and classify ``network`` for inputs of ``length`` on ``device``.

    Raises
    ------
    NotEligible
        With the reason the fast path cannot run it.
    """
    return _Planner(network, length, torch.device(device)).plan()


class _NotConstant(Exception):
    """An argument depends on the input or on the batch size."""


class _Call:
    """``fn(x, *args, **kwargs)`` or the method ``x.fn(*args, **kwargs)`` with fixed arguments."""

    def __init__(self, fn: Callable | str, args: tuple, kwargs: dict[str, Any]):
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.fn, str):
            return getattr(x, self.fn)(*self.args, **self.kwargs)
        return self.fn(x, *self.args, **self.kwargs)


class _Planner:
    """Classify the nodes of one network (module docs)."""

    def __init__(self, network: nn.Module, length: int, device: torch.device):
        self.network, self.length, self.device = network, length, device
        try:
            self.nodes = list(trace(network).nodes)
        except Exception as err:  # torch.fx raises many types for untraceable code
            raise NotEligible(f"torch.fx cannot trace it ({_first_line(err)})") from err
        inputs = [n for n in self.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise NotEligible(f"its forward takes {len(inputs)} inputs; the fast path feeds one")
        self.group = self._group()
        self.values = self._probe(2)
        self.values_b1 = self._probe(1)
        self.kind: dict[fx.Node, str] = {}
        self.steps: list[Step] = []
        self.step_of: dict[fx.Node, Step] = {}
        self.windows: dict[fx.Node, Window] = {}
        self.folded: dict[fx.Node, fx.Node] = {}

    def plan(self) -> NetworkPlan:
        for node in self.nodes:
            step = self._classify(node)
            self.kind[node] = step.kind
            if step.kind == LOCAL:
                self.windows[node] = step.local_rule.window
            self.steps.append(step)
            self.step_of[node] = step
        self._check_useful()
        spliced = {
            n for s in self.steps if s.kind in (GLOBAL, OUTPUT) for n in s.node.all_input_nodes if self.kind[n] == LOCAL
        }
        caches = {key for s in self.steps if s.rule is not None for key in s.rule.caches()}
        caches |= {CacheKey.padded(n.name, self.windows[n]) for n in spliced}
        return NetworkPlan(
            network=self.network,
            length=self.length,
            steps=self.steps,
            windows=self.windows,
            caches=caches,
            declared=declares_layout(self.network),
            exact_flops=self._exact_flops(),
            fast_flops=self._fast_flops(spliced),
            site_bytes=self._site_bytes(spliced),
            sequence_bytes=int(_FLOAT * sum(self._numel(n) for n in self.nodes)) + 1,
            group=self.group,
            tail=self._tail(spliced),
            output_width=_width(self.values[self.nodes[-1]]),
        )

    def _tail(self, spliced: set[fx.Node]) -> Tail | None:
        """The largest linear end of the network whose frontier is all local (or ``None``)."""
        dynamic = {s.node for s in self.steps if s.kind in (LOCAL, BOUNDARY, FOLDED, GLOBAL)}
        nodes: set[fx.Node] = set()
        for step in reversed(self.steps):
            users = [u for u in step.node.users if u in dynamic]
            if step.node in dynamic and self._is_linear(step) and all(u in nodes for u in users):
                nodes.add(step.node)
        frontier = tuple(
            n
            for n in self.nodes
            if n in dynamic and n not in nodes and any(u in nodes or u.op == "output" for u in n.users)
        )
        if not frontier or any(self.kind[n] != LOCAL for n in frontier):
            return None
        work = sum(self._step_work(self.step_of[n]) for n in nodes)
        return Tail(frozenset(nodes), frontier, work + sum(2.0 * self._numel(n) for n in spliced))

    def _is_linear(self, step: Step) -> bool:
        """Whether the node's value is a linear function of its input-dependent inputs."""
        if step.kind in (LOCAL, BOUNDARY):
            return isinstance(step.rule, _LINEAR_RULES)
        if step.kind == FOLDED:
            return True
        node, target = step.node, step.node.target
        if node.op == "call_module":
            module = self._module(node)
            if isinstance(module, (*DROPOUT_TYPES, nn.BatchNorm1d)):
                return not module.training
            return isinstance(module, _LINEAR_MODULES)
        if target in _ADD or target in _SUB or target in _NEG:
            return True
        if target in _LINEAR_CALLS:
            data: list[fx.Node] = []
            map_arg(node.args[0], data.append)
            return all(self.kind[n] in (STATIC, SHAPE) for n in node.all_input_nodes if n not in data)
        dynamic = [isinstance(a, fx.Node) and self.kind[a] not in (STATIC, SHAPE) for a in node.args]
        if target in _MUL:
            return sum(dynamic) == 1 and not node.kwargs
        return target in _DIV and dynamic == [True, False] and not node.kwargs

    def _group(self) -> int:
        """Input positions per block of the windows: the product of the strides of the
        network's sliding layers (so that every layer's windows are evenly spaced from block
        to block), at most :data:`MAX_GROUP`."""
        group = 1
        for node in self.nodes:
            module = self._module(node) if node.op == "call_module" else None
            if isinstance(module, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)):
                stride = module.stride
                group *= stride if isinstance(stride, int) else stride[0]
        return min(group, MAX_GROUP)

    def _probe(self, batch: int) -> dict[fx.Node, Any]:
        env: dict[fx.Node, Any] = {}
        try:
            with torch.inference_mode():
                for node in self.nodes:
                    if node.op == "placeholder":
                        env[node] = reference_onehot(
                            torch.zeros(batch, self.length, dtype=torch.uint8, device=self.device)
                        )
                    else:
                        env[node] = run_node(node, env.__getitem__, self.network)
        except Exception as err:
            raise NotEligible(f"a probe forward of {batch} sequences failed ({_first_line(err)})") from err
        return env

    def _classify(self, node: fx.Node) -> Step:
        if node.op == "placeholder":
            x = self.values[node]
            return Step(node, LOCAL, rules.Input(self.length, x.shape[1], self.group, self.device))
        if node.op == "output":
            return Step(node, OUTPUT)
        kinds = {self.kind[n] for n in node.all_input_nodes}
        if not kinds & {LOCAL, GLOBAL, BOUNDARY, FOLDED}:
            return Step(node, STATIC)
        if kinds & {GLOBAL, BOUNDARY}:
            return Step(node, GLOBAL)
        if FOLDED in kinds:  # the nn.Linear that alone reads a folded flatten (see _folded_step)
            (flat,), linear = node.args, self._module(node)
            if not isinstance(flat, fx.Node) or not isinstance(linear, nn.Linear):
                return Step(node, GLOBAL)
            source = self.folded[flat]
            return Step(node, BOUNDARY, rules.FlattenLinear(linear, node.name, self.windows[source]), (source,))
        if self._is_shape_query(node):
            return Step(node, SHAPE)
        try:
            step = self._local_step(node)
        except _NotConstant:
            step = None
        if step is None or (step.kind == LOCAL and not self._fits(step.local_rule.window, node)):
            return Step(node, GLOBAL)
        return step

    def _local_step(self, node: fx.Node) -> Step | None:
        if node.op == "call_module":
            return self._module_step(node)
        target, args = node.target, node.args
        local = [a for a in args if isinstance(a, fx.Node) and self.kind[a] == LOCAL]
        if not local or any(self.kind[n] == LOCAL for n in node.all_input_nodes if n not in local):
            return None
        if target in _ADD or target in _SUB:
            return self._sum_step(node, local)
        src = local[0]
        window = self.windows[src]
        if len(local) != 1:
            return None
        if target in _MUL or target in _DIV:
            return self._scale_step(node, src)
        if args[0] is not src:
            return None
        if target in _RELU and len(args) == 1 and set(node.kwargs) <= {"inplace"}:
            return Step(node, LOCAL, rules.Relu(src.name, window), (src,))
        if target in POINTWISE_FUNCTIONS or target in POINTWISE_METHODS:
            fn = _Call(target, self._constant(args[1:]), self._constant(dict(node.kwargs)))
            return Step(node, LOCAL, rules.Pointwise(fn, src.name, window), (src,))
        if target in _REDUCE:
            return self._reduce_step(node, src, _REDUCE[target])
        if target in _FLATTEN:
            start = self._constant(_arg(node, 1, "start_dim", 0))
            return self._folded_step(node, src, start, self._constant(_arg(node, 2, "end_dim", -1)))
        if node.kwargs:
            return None
        if target in _NEG:
            return Step(node, LOCAL, rules.Scale(-1.0, False, window), (src,))
        if target is operator.getitem:
            return self._crop_step(node, src)
        if target in _COPY_METHODS and self.values[src].dtype == torch.float32:
            return Step(node, LOCAL, rules.Relabel(window, window.lead), (src,))
        if target == "unflatten":
            dim = self._constant(args[1]) % (len(window.lead) + 2)
            if not 1 <= dim <= len(window.lead):
                return None
            return Step(node, LOCAL, rules.Relabel(window, tuple(self.values[node].shape[1:-1])), (src,))
        return None

    def _module_step(self, node: fx.Node) -> Step | None:
        module = self._module(node)
        if len(node.args) != 1 or node.kwargs:
            return None
        src = node.args[0]
        if not isinstance(src, fx.Node):  # e.g. a tuple holding the local input
            return None
        window = self.windows[src]
        out_length = self.values[node].shape[-1]
        rule: Rule | None = None
        if isinstance(module, nn.Conv1d) and module.padding_mode == "zeros":
            rule = rules.Conv(module, window, out_length, self.device)
        elif isinstance(module, nn.BatchNorm1d) and not module.training and module.running_var is not None:
            rule = self._norm_rule(module, src)
        elif isinstance(module, nn.ReLU):
            rule = rules.Relu(src.name, window)
        elif isinstance(module, POINTWISE_MODULES):
            rule = rules.Pointwise(module, src.name, window)
        elif isinstance(module, nn.MaxPool1d) and not module.ceil_mode and not module.return_indices:
            rule = rules.MaxPool(module, src.name, window, out_length, self.device)
        elif (
            isinstance(module, nn.AvgPool1d)
            and not module.ceil_mode
            and (module.count_include_pad or module.padding in (0, (0,)))
        ):
            rule = rules.AvgPool(module, window, out_length, self.device)
        elif isinstance(module, LockedDropout):
            rule = rules.Mask(module, window)
        elif isinstance(module, nn.Identity) or (
            isinstance(module, (*DROPOUT_TYPES, nn.AlphaDropout)) and not module.training
        ):
            rule = rules.Relabel(window, window.lead)
        elif isinstance(module, nn.AdaptiveAvgPool1d) and module.output_size in (1, (1,)):
            return Step(node, BOUNDARY, rules.LengthReduce(True, True, node.name, window), (src,))
        elif isinstance(module, nn.Flatten):
            return self._folded_step(node, src, module.start_dim, module.end_dim)
        return None if rule is None else Step(node, LOCAL, rule, (src,))

    def _norm_rule(self, module: nn.BatchNorm1d, src: fx.Node) -> LocalRule:
        """Fold the batch norm into the convolution that feeds only it, else scale."""
        producer = self.step_of[src].rule
        window = self.windows[src]
        if isinstance(producer, rules.Conv) and producer.norm is None and len(src.users) == 1:
            producer.fold(module)
            return rules.Relabel(window, window.lead)
        return rules.ChannelScale(module, window)

    def _sum_step(self, node: fx.Node, local: list[fx.Node]) -> Step | None:
        if node.kwargs or len(node.args) != 2:
            return None
        subtract = node.target in _SUB
        if len(local) == 2:  # both operands, in order
            a, b = local
            rule = rules.Sum(subtract, (self.windows[a], self.windows[b]), self.device)
            owned = [k for k in rule.in_place_candidates() if self._owned(local[k], node)]
            rule.base = owned[0] if owned and a is not b else None
            return Step(node, LOCAL, rule, (a, b))
        src = local[0]
        left, right = node.args
        self._constant(right if left is src else left)
        window = self.windows[src]
        single = rules.Scale(-1.0, False, window) if subtract and right is src else rules.Relabel(window, window.lead)
        return Step(node, LOCAL, single, (src,))

    def _owned(self, value: fx.Node, reader: fx.Node) -> bool:
        """``reader`` alone reads ``value``, a difference tensor no other node holds (so
        ``reader`` may overwrite it)."""
        rule = self.step_of[value].rule
        aliasing = (rules.Relabel, rules.Crop, rules.Mask)
        return list(value.users) == [reader] and self.kind[value] == LOCAL and not isinstance(rule, aliasing)

    def _scale_step(self, node: fx.Node, src: fx.Node) -> Step | None:
        if node.kwargs or len(node.args) != 2:
            return None
        a, b = node.args
        divide = node.target in _DIV
        factor = self._constant(b if a is src else a)
        if not isinstance(factor, int | float) or isinstance(factor, bool) or (divide and b is src):
            return None
        return Step(node, LOCAL, rules.Scale(float(factor), divide, self.windows[src]), (src,))

    def _crop_step(self, node: fx.Node, src: fx.Node) -> Step | None:
        window = self.windows[src]
        index = self._constant(node.args[1])
        index = index if isinstance(index, tuple) else (index,)
        ndim = len(window.lead) + 2
        if Ellipsis in index:
            i = index.index(Ellipsis)
            index = index[:i] + (slice(None),) * (ndim - len(index) + 1) + index[i + 1 :]
        full = slice(None)
        if len(index) != ndim or any(s != full for s in index[:-1]) or not isinstance(index[-1], slice):
            return None
        start, stop, step = index[-1].indices(window.length)
        if step != 1 or stop <= start:
            return None
        return Step(node, LOCAL, rules.Crop(start, window, stop - start, self.device), (src,))

    def _reduce_step(self, node: fx.Node, src: fx.Node, mean: bool) -> Step | None:
        window = self.windows[src]
        dim = self._constant(_arg(node, 1, "dim", None))
        keepdim = self._constant(_arg(node, 2, "keepdim", False))
        dims = tuple(dim) if isinstance(dim, list | tuple) else (dim,)
        if set(node.kwargs) - {"dim", "keepdim"} or len(node.args) > 3 or len(dims) != 1 or dims[0] is None:
            return None
        if dims[0] % (len(window.lead) + 2) != len(window.lead) + 1:
            return None
        return Step(node, BOUNDARY, rules.LengthReduce(mean, bool(keepdim), node.name, window), (src,))

    def _folded_step(self, node: fx.Node, src: fx.Node, start: int, end: int) -> Step | None:
        ndim = len(self.windows[src].lead) + 2
        users = list(node.users)
        if start != 1 or end % ndim != ndim - 1 or len(users) != 1:
            return None
        user = users[0]
        if (
            user.op != "call_module"
            or not isinstance(self._module(user), nn.Linear)
            or user.args != (node,)
            or user.kwargs
        ):
            return None
        self.folded[node] = src
        return Step(node, FOLDED, None, (src,))

    def _module(self, node: fx.Node) -> nn.Module:
        return self.network.get_submodule(str(node.target))  # a call_module node's target is its name

    def _is_shape_query(self, node: fx.Node) -> bool:
        if node.op == "call_method":
            return node.target in _SHAPE_METHODS
        return node.target is builtins.getattr and node.args[1] in ("shape", "ndim")

    def _constant(self, arg: Any) -> Any:
        """``arg`` with its nodes replaced by their (batch-independent) probe values."""

        def value(n: fx.Node) -> Any:
            first, second = self.values[n], self.values_b1[n]
            same = (
                (first is second or torch.equal(first, second))
                if isinstance(first, torch.Tensor)
                else (first == second)
            )
            if self.kind[n] not in (STATIC, SHAPE) or not same:
                raise _NotConstant(n.name)
            return first

        return map_arg(arg, value)

    def _fits(self, window: Window, node: fx.Node) -> bool:
        """The probe output has the window's axes (a local value is ``[batch, *lead, L]``)."""
        value = self.values[node]
        return isinstance(value, torch.Tensor) and tuple(value.shape[1:]) == (*window.lead, window.length)

    def _check_useful(self) -> None:
        useful = [
            s
            for s in self.steps
            if s.kind in (BOUNDARY, FOLDED) or (s.kind == LOCAL and not isinstance(s.rule, rules.Input | rules.Relabel))
        ]
        if not useful:
            first = next((_describe(s.node, self) for s in self.steps if s.kind == GLOBAL), "the output")
            raise NotEligible(
                f"no layer can be recomputed on a window: the input goes into {first}, which the fast path runs in full"
            )

    def _numel(self, node: fx.Node) -> float:
        value = self.values[node]
        return value.numel() / value.shape[0] if isinstance(value, torch.Tensor) and value.ndim else 0.0

    def _work(self, node: fx.Node) -> float:
        """Floating-point operations of a full forward of one sequence through ``node``: the
        multiply-adds of convolutions and linear layers, one operation per element otherwise."""
        numel = self._numel(node)
        module = self._module(node) if node.op == "call_module" else None
        if isinstance(module, nn.Conv1d):
            return numel * (1 + 2 * module.in_channels // module.groups * module.kernel_size[0])
        if isinstance(module, nn.Linear):
            return numel * (1 + 2 * module.in_features)
        return numel

    def _exact_flops(self) -> float:
        return sum(self._work(n) for n in self.nodes)

    def _step_work(self, step: Step) -> float:
        """Work per mutant of one step on the fast path (splicing its inputs not counted)."""
        if step.kind in (LOCAL, BOUNDARY):
            return step.required_rule.flops()
        return self._work(step.node) if step.kind == GLOBAL else 0.0

    def _fast_flops(self, spliced: set[fx.Node]) -> float:
        return sum(self._step_work(s) for s in self.steps) + sum(2.0 * self._numel(n) for n in spliced)

    def _site_bytes(self, spliced: set[fx.Node]) -> int:
        per_mutant = 0.0
        per_site = 0.0
        for s in self.steps:
            if s.kind == LOCAL:
                per_mutant += 2 * _read_width(s.local_rule) * s.local_rule.window.features
            elif s.kind == GLOBAL:
                per_mutant += self._numel(s.node)
            elif isinstance(s.rule, rules.FlattenLinear) and s.rule.source.step is None:
                per_site += s.rule.flops() / 2 / self.group  # each block's weight columns, gathered
        per_mutant += sum(self._numel(n) for n in spliced)
        return int(_FLOAT * (N_ALT * per_mutant + per_site)) + 1


def _read_width(rule: LocalRule) -> int:
    """Positions a local rule reads per mutant (its window, or the wider range it reads from)."""
    read = getattr(rule, "read", None)
    return max(rule.window.width, read.width if read is not None else 0)


def _width(output: Any) -> int | None:
    """Columns of a ``[batch]`` or ``[batch, k]`` tensor output (else ``None``)."""
    if isinstance(output, torch.Tensor) and output.ndim in (1, 2):
        return 1 if output.ndim == 1 else output.shape[1]
    return None


def _arg(node: fx.Node, index: int, name: str, default: Any) -> Any:
    """Positional argument ``index`` (``self`` of a method included) or keyword ``name``."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _describe(node: fx.Node, planner: _Planner) -> str:
    if node.op == "call_module":
        return f"{type(planner._module(node)).__name__} ({node.target})"
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{name} ({node.name})"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__

"""Replicate predictors: several predictions per input whose spread is the model uncertainty.

``predict(onehot, r)`` is a deterministic function of the input and the replicate index
``r``: ensemble member ``r``, or MC-dropout pass ``r`` with its fixed masks. Saturation
mutagenesis pairs ``f_r(mutant)`` with ``f_r(reference)`` on that basis.
"""

from __future__ import annotations

import abc
import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch
from torch import nn

from dmr_ray.errors import InputError, ModelSpecError
from dmr_ray.models.heads import OutputSelector
from dmr_ray.models.spec import ModelSpec
from dmr_ray.uncertainty.dropout import lock_dropout


class ReplicatePredictor(abc.ABC):
    """Base class: ``n_replicates`` deterministic predictions per input.

    Parameters
    ----------
    networks
        The modules it runs (moved to ``device`` and put in eval mode, in place).
    selector
        Turns raw outputs into ``[batch, tasks]``; ``None`` for networks that already
        return a ``[batch, tasks]`` (or ``[batch]``) tensor.
    input_length
        The accepted input length; ``None`` takes the networks' ``input_length`` attribute
        when they have one (else any length).
    device
        Where to run; ``None`` keeps the device of the networks' parameters.

    Attributes
    ----------
    kind : str
        ``"ensemble"``, ``"mc_dropout"`` or ``"single"``.
    networks : tuple of torch.nn.Module
        The modules, for inspection (e.g. by a fast ISM path).
    layerwise : bool
        Whether replicate ``r``'s prediction is its network's output alone, so a fast ISM path
        may evaluate the networks layer by layer.
    """

    kind: str
    layerwise: ClassVar[bool] = True

    def __init__(
        self,
        networks: Sequence[nn.Module],
        selector: OutputSelector | None,
        input_length: int | None,
        device: str | torch.device | None,
    ):
        self.networks = tuple(networks)
        self.selector = selector
        self.input_length = input_length if input_length is not None else getattr(networks[0], "input_length", None)
        for net in self.networks:
            net.eval().requires_grad_(False)
        self.to(device if device is not None else _module_device(self.networks[0]))

    @property
    @abc.abstractmethod
    def n_replicates(self) -> int:
        """Number of replicates ``R``."""

    @property
    def task_names(self) -> tuple[str, ...] | None:
        """Task names in column order (``None`` without a selector)."""
        return self.selector.task_names if self.selector is not None else None

    def to(self, device: str | torch.device) -> ReplicatePredictor:
        """Move the networks to ``device`` (in place, like ``nn.Module.to``); returns ``self``."""
        self.device = torch.device(device)
        for net in self.networks:
            net.to(self.device)
        return self

    @torch.inference_mode()
    def predict(self, onehot: torch.Tensor, replicate: int) -> torch.Tensor:
        """Predictions of replicate ``replicate``.

        Parameters
        ----------
        onehot
            ``float32 [batch, 4, L]`` (moved to :attr:`device` if needed).
        replicate
            ``0 <= replicate < n_replicates``.

        Returns
        -------
        torch.Tensor
            ``float32 [batch, tasks]`` on :attr:`device`.
        """
        if not 0 <= replicate < self.n_replicates:
            raise InputError(f"replicate: {replicate} is out of range for {self.n_replicates} replicates")
        with self.replicate_network(replicate) as network:
            raw = network(onehot.to(self.device, torch.float32))
        if self.selector is not None:
            return self.selector(raw)
        return plain_output(raw)

    @torch.inference_mode()
    def predict_all(self, onehot: torch.Tensor) -> torch.Tensor:
        """All replicates at once: ``float32 [R, batch, tasks]``."""
        return torch.stack([self.predict(onehot, r) for r in range(self.n_replicates)])

    @abc.abstractmethod
    def replicate_network(self, replicate: int) -> contextlib.AbstractContextManager[nn.Module]:
        """Context in which the returned module computes replicate ``replicate``'s raw output.

        ``with predictor.replicate_network(r) as net: raw = net(x)``; the selector is not
        applied. Layer-wise consumers (a fast ISM path) run ``net.body``/``net.head`` inside it.
        """


class EnsemblePredictor(ReplicatePredictor):
    """Deep ensemble: replicate ``r`` is member ``r``.

    Parameters
    ----------
    members
        At least 2 modules with the same outputs.
    selector, input_length, device
        See :class:`ReplicatePredictor`.
    """

    kind = "ensemble"

    def __init__(
        self,
        members: Sequence[nn.Module],
        selector: OutputSelector | None = None,
        *,
        input_length: int | None = None,
        device: str | torch.device | None = None,
    ):
        if len(members) < 2:
            raise ModelSpecError(f"an ensemble needs at least 2 members, got {len(members)}")
        super().__init__(members, selector, input_length, device)

    @property
    def n_replicates(self) -> int:
        """Number of members."""
        return len(self.networks)

    @contextlib.contextmanager
    def replicate_network(self, replicate: int) -> Iterator[nn.Module]:
        """Member ``replicate``."""
        yield self.networks[replicate]


class MCDropoutPredictor(ReplicatePredictor):
    """MC dropout with locked masks: replicate ``r`` is pass ``r``.

    A deep copy of ``model`` is made and its ``nn.Dropout``/``Dropout1d/2d/3d`` layers are
    replaced by :class:`~dmr_ray.uncertainty.dropout.LockedDropout` layers; the rest of the
    model (batch norm included) stays in eval mode.

    Parameters
    ----------
    model
        A module with at least one dropout layer of ``p > 0``.
    selector
        See :class:`ReplicatePredictor`.
    passes
        Number of passes ``R`` (>= 1).
    seed
        Seed of the mask streams: pass ``r`` of dropout layer ``l`` uses
        :func:`~dmr_ray.uncertainty.dropout.mask_seed` ``(seed, r, l)``.
    input_length, device
        See :class:`ReplicatePredictor`.
    """

    kind = "mc_dropout"

    def __init__(
        self,
        model: nn.Module,
        selector: OutputSelector | None = None,
        passes: int = 50,
        seed: int = 0,
        *,
        input_length: int | None = None,
        device: str | torch.device | None = None,
    ):
        if passes < 1:
            raise ModelSpecError(f"passes: must be >= 1, got {passes}")
        model = copy.deepcopy(model)
        self.dropouts = lock_dropout(model, seed)
        if not self.dropouts:
            raise ModelSpecError("MC dropout needs a model with dropout layers (p > 0); this one has none")
        self.passes = passes
        self.seed = seed
        super().__init__([model], selector, input_length, device)

    @property
    def n_replicates(self) -> int:
        """Number of passes."""
        return self.passes

    @contextlib.contextmanager
    def replicate_network(self, replicate: int) -> Iterator[nn.Module]:
        """The model with every locked dropout layer set to pass ``replicate``."""
        for layer in self.dropouts:
            layer.replicate = replicate
        try:
            yield self.networks[0]
        finally:
            for layer in self.dropouts:
                layer.replicate = None


class SinglePredictor(ReplicatePredictor):
    """One plain module, one replicate (standard errors are 0)."""

    kind = "single"

    def __init__(
        self,
        model: nn.Module,
        selector: OutputSelector | None = None,
        *,
        input_length: int | None = None,
        device: str | torch.device | None = None,
    ):
        super().__init__([model], selector, input_length, device)

    @property
    def n_replicates(self) -> int:
        """Always 1."""
        return 1

    @contextlib.contextmanager
    def replicate_network(self, replicate: int) -> Iterator[nn.Module]:
        """The model."""
        yield self.networks[0]


class ReplicateSubset(ReplicatePredictor):
    """Some replicates of another predictor: replicate ``r`` here is ``indices[r]`` there.

    Used to spread one model's replicates over workers, e.g. MC-dropout passes by index
    range: a pass's masks depend only on ``(seed, pass, layer)``, so it predicts the same
    whichever worker runs it. The subset shares the base predictor's networks.

    Parameters
    ----------
    base
        The predictor holding every replicate.
    indices
        Distinct ascending replicate indices of ``base``.
    """

    def __init__(self, base: ReplicatePredictor, indices: Sequence[int]):
        self.base = base
        self.indices = _replicate_indices(base.n_replicates, indices)
        self.kind = base.kind
        super().__init__(base.networks, base.selector, base.input_length, base.device)

    @property
    def n_replicates(self) -> int:
        """Number of selected replicates."""
        return len(self.indices)

    def to(self, device: str | torch.device) -> ReplicateSubset:
        """Move the shared networks (and the base predictor) to ``device``; returns ``self``."""
        self.base.to(device)
        self.device = self.base.device
        return self

    def replicate_network(self, replicate: int) -> contextlib.AbstractContextManager[nn.Module]:
        """Replicate ``indices[replicate]`` of the base predictor."""
        return self.base.replicate_network(self.indices[replicate])


def build_predictor(
    spec: ModelSpec, device: str | torch.device | None = None, replicates: Sequence[int] | None = None
) -> ReplicatePredictor:
    """The replicate predictor a model spec describes, or a subset of its replicates.

    Parameters
    ----------
    spec
        A validated spec.
    device
        Torch device; ``None`` picks CUDA when available, else CPU.
    replicates
        Build only these replicate indices (distinct, ascending): replicate ``r`` of the
        result is replicate ``replicates[r]`` of the spec. Ensemble members outside the subset
        are not loaded, and a subset of one member is a :class:`SinglePredictor`; MC-dropout
        passes are selected with a :class:`ReplicateSubset`. ``None`` builds all.

    Raises
    ------
    InputError
        ``replicates`` is empty, unsorted, repeats an index or is out of range.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    indices = _replicate_indices(spec.n_replicates, replicates)
    kind = spec.replicates.kind
    if kind == "ensemble" and len(indices) < spec.n_replicates:
        spec = spec.model_copy(update={"weights": tuple(spec.weights[i] for i in indices)})
    members = spec.build_members()
    selector = spec.output_selector()
    length = spec.input_length
    if kind == "ensemble" and len(members) > 1:
        return EnsemblePredictor(members, selector, input_length=length, device=device)
    if kind == "mc_dropout":
        passes = spec.replicates.passes
        if passes is None:  # the spec's validation already requires it
            raise ModelSpecError("replicates.passes: required when kind is 'mc_dropout'")
        predictor = MCDropoutPredictor(
            members[0], selector, passes, spec.replicates.seed, input_length=length, device=device
        )
        return predictor if len(indices) == spec.n_replicates else ReplicateSubset(predictor, indices)
    return SinglePredictor(members[0], selector, input_length=length, device=device)


def _replicate_indices(n_replicates: int, replicates: Sequence[int] | None) -> tuple[int, ...]:
    if replicates is None:
        return tuple(range(n_replicates))
    indices = tuple(int(r) for r in replicates)
    if not indices or list(indices) != sorted(set(indices)) or not 0 <= indices[0] <= indices[-1] < n_replicates:
        raise InputError(
            f"replicates: expected distinct ascending indices in [0, {n_replicates}), got {list(replicates)}"
        )
    return indices


def as_predictor(model: ReplicatePredictor | nn.Module) -> ReplicatePredictor:
    """``model`` itself if it is a predictor, else a :class:`SinglePredictor` around it."""
    if isinstance(model, ReplicatePredictor):
        return model
    if isinstance(model, nn.Module):
        return SinglePredictor(model)
    raise TypeError(f"expected a ReplicatePredictor or a torch.nn.Module, got {type(model).__name__}")


def _module_device(module: nn.Module) -> torch.device:
    tensor: torch.Tensor | None = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def plain_output(raw: object) -> torch.Tensor:
    """A selector-less model output as ``float32 [batch, tasks]`` (``[batch]`` gains a task axis).

    Raises
    ------
    InputError
        The output is not a 1-D or 2-D tensor.
    """
    if not isinstance(raw, torch.Tensor) or raw.ndim not in (1, 2):
        shape = list(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
        raise InputError(
            f"the model returns {shape}, not a [batch, tasks] tensor; wrap it in a predictor with an "
            f"OutputSelector (or a model spec with 'outputs')"
        )
    return (raw[:, None] if raw.ndim == 1 else raw).float()

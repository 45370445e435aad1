"""Feature attributions of expression classifiers through Captum (attribution.md §3, §7).

Every method has the same signature, ``method(model, x, target, *, output=..., batch_size=...,
...) -> Attributions``, on z-scored inputs ``x [n, n_features]`` and one target class per sample.

* :func:`integrated_gradients`: Gauss–Legendre quadrature; starting at ``start_steps`` the step
  count doubles until every sample's completeness gap ``|Σ attr − (f(x) − f(b))|`` is at most
  ``tolerance`` on the chosen output scale. The baseline defaults to the origin of the
  z-scored space, which is the training-mean profile.
* :func:`saliency`: the input gradient (its absolute value by default, as Captum's).
* :func:`smoothgrad`: the saliency averaged over inputs with Gaussian noise of standard
  deviation ``noise × scale``, ``scale`` being the features' spread (1 on z-scored genes),
  not Captum's absolute σ = 1.

``output`` chooses the explained scale: ``probability`` (softmax, the reference's choice),
``logit`` or ``log_probability`` (better conditioned).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from torch import nn

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError

_QUADRATURE_ELEMENTS = 1 << 24  # rows × features per forward pass of the quadrature (64 MiB float32)

OUTPUTS = ("probability", "logit", "log_probability")
"""Output scales an attribution can explain."""


@dataclass(frozen=True)
class Attributions:
    """Attributions of a batch of samples.

    Attributes
    ----------
    values
        ``float32 [n, n_features]`` attribution of each feature to the target's output.
    target
        ``int64 [n]`` explained class of each sample.
    method
        ``ig``, ``saliency`` or ``smoothgrad``.
    output
        The explained scale (one of :data:`OUTPUTS`).
    n_steps
        Integrated gradients: quadrature steps used (the same for every sample); else 0.
    delta
        Integrated gradients: ``float64 [n]`` signed completeness gaps
        ``Σ attr − (f(x) − f(baseline))``; else empty.
    baseline_output
        Integrated gradients: ``float64 [n]`` ``f_target(baseline)``; else empty.
    converged
        Whether every ``|delta|`` met the tolerance (always True for the gradient methods).
    """

    values: np.ndarray
    target: np.ndarray
    method: str
    output: str
    n_steps: int = 0
    delta: np.ndarray = field(default_factory=lambda: np.empty(0))
    baseline_output: np.ndarray = field(default_factory=lambda: np.empty(0))
    converged: bool = True


def scaled_output(model: nn.Module, output: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(x) -> [batch, n_classes]`` on the chosen scale of ``model``'s logits.

    Raises
    ------
    InputError
        For an unknown scale.
    """
    if output == "logit":
        return model
    if output == "probability":
        return lambda x: torch.softmax(model(x), dim=1)
    if output == "log_probability":
        return lambda x: torch.log_softmax(model(x), dim=1)
    raise InputError(f"unknown output scale {output!r}; choose one of {', '.join(OUTPUTS)}")


def integrated_gradients(
    model: nn.Module,
    x: np.ndarray,
    target: np.ndarray,
    *,
    baseline: np.ndarray | None = None,
    output: str = "probability",
    tolerance: float = 0.01,
    start_steps: int = 50,
    max_steps: int = 3200,
    batch_size: int = 64,
) -> Attributions:
    """Integrated gradients with Gauss–Legendre quadrature and adaptive step counts.

    Parameters
    ----------
    model
        Classifier in eval mode, ``[batch, n_features] -> logits [batch, n_classes]``.
    x, target
        Inputs ``[n, n_features]`` and explained classes ``[n]``.
    baseline
        ``[n_features]`` or ``[n, n_features]``; default zeros (the training mean of z-scored data).
    output
        Explained scale (:data:`OUTPUTS`).
    tolerance
        Largest accepted ``|delta|`` on that scale (0.01 = 1 point of probability).
    start_steps, max_steps
        The step count starts at ``start_steps`` and doubles while some sample misses the
        tolerance and the doubled count is at most ``max_steps``; if the tolerance is still
        missed, the result says so (``converged=False``) with its deltas.
    batch_size
        Samples per Captum call; the quadrature's forward passes hold at most 2²⁴ input values.
    """
    x_t, target_t = _inputs(x, target)
    if not is_int(start_steps) or not is_int(max_steps) or not 1 <= start_steps <= max_steps:
        raise InputError(f"need integers 1 <= start_steps <= max_steps, got {start_steps!r}, {max_steps!r}")
    if not tolerance > 0:
        raise InputError(f"tolerance must be > 0, got {tolerance!r}")
    base = torch.zeros_like(x_t) if baseline is None else _baseline(baseline, x_t)
    forward = scaled_output(model, output)
    ig = IntegratedGradients(forward)
    rows = max(1, _QUADRATURE_ELEMENTS // max(1, x_t.shape[1]))
    steps = start_steps
    while True:
        parts = [
            ig.attribute(
                xb,
                baselines=bb,
                target=tb,
                n_steps=steps,
                method="gausslegendre",
                internal_batch_size=rows,
                return_convergence_delta=True,
            )
            for xb, bb, tb in zip(
                x_t.split(batch_size), base.split(batch_size), target_t.split(batch_size), strict=True
            )
        ]
        delta = torch.cat([d for _, d in parts]).detach().double().numpy()
        converged = bool(np.abs(delta).max(initial=0.0) <= tolerance)
        if converged or 2 * steps > max_steps:
            break
        steps *= 2
    with torch.no_grad():
        baseline_output = forward(base).gather(1, target_t[:, None])[:, 0].double().numpy()
    values = torch.cat([a for a, _ in parts]).detach().numpy().astype(np.float32)
    return Attributions(
        values=values,
        target=target_t.numpy(),
        method="ig",
        output=output,
        n_steps=steps,
        delta=delta,
        baseline_output=baseline_output,
        converged=converged,
    )


def saliency(
    model: nn.Module,
    x: np.ndarray,
    target: np.ndarray,
    *,
    output: str = "probability",
    absolute: bool = True,
    batch_size: int = 64,
) -> Attributions:
    """The input gradient ``∂f_target/∂x`` (its absolute value with ``absolute``)."""
    x_t, target_t = _inputs(x, target)
    x_t.requires_grad_()
    method = Saliency(scaled_output(model, output))
    values = [
        method.attribute(xb, target=tb, abs=absolute)
        for xb, tb in zip(x_t.split(batch_size), target_t.split(batch_size), strict=True)
    ]
    return Attributions(_numpy(values), target_t.numpy(), "saliency", output)


def smoothgrad(
    model: nn.Module,
    x: np.ndarray,
    target: np.ndarray,
    *,
    output: str = "probability",
    absolute: bool = True,
    noise: float = 0.15,
    scale: float = 1.0,
    n_samples: int = 25,
    seed: int,
    batch_size: int = 64,
) -> Attributions:
    """SmoothGrad: the saliency averaged over ``n_samples`` noisy copies of each input.

    Parameters
    ----------
    noise, scale
        The noise's standard deviation is ``noise · scale`` in input units: ``scale`` is the
        features' spread (1 for z-scored genes; ``x_max − x_min`` in Smilkov et al.) and
        ``noise`` the fraction of it (0.1–0.2 recommended).
    n_samples
        Noisy copies per input.
    seed
        Seed of the noise (drawn inside :func:`torch.random.fork_rng`).
    """
    x_t, target_t = _inputs(x, target)
    if not noise >= 0 or not scale > 0:
        raise InputError(f"need noise >= 0 and scale > 0, got {noise!r}, {scale!r}")
    if not is_int(n_samples) or n_samples < 1 or not is_int(seed):
        raise InputError(f"n_samples must be an integer >= 1 and seed an integer, got {n_samples!r}, {seed!r}")
    x_t.requires_grad_()
    tunnel = NoiseTunnel(Saliency(scaled_output(model, output)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        values = [
            tunnel.attribute(
                xb,
                nt_type="smoothgrad",
                nt_samples=n_samples,
                nt_samples_batch_size=batch_size,
                stdevs=float(noise * scale),
                target=tb,
                abs=absolute,
            )
            for xb, tb in zip(x_t.split(batch_size), target_t.split(batch_size), strict=True)
        ]
    return Attributions(_numpy(values), target_t.numpy(), "smoothgrad", output)


def _inputs(x: np.ndarray, target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 inputs ``[n, n_features]`` and int64 targets ``[n]`` as tensors, shapes checked."""
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    target_t = torch.as_tensor(np.asarray(target, dtype=np.int64))
    if x_t.ndim != 2 or target_t.shape != (x_t.shape[0],):
        raise InputError(
            f"x must be [n, n_features] and target [n], got {tuple(x_t.shape)} and {tuple(target_t.shape)}"
        )
    return x_t, target_t


def _baseline(baseline: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """The baseline broadcast to ``x``'s shape."""
    b = torch.as_tensor(np.asarray(baseline, dtype=np.float32))
    if b.shape not in (x.shape, x.shape[1:]):
        raise InputError(f"baseline must be [{x.shape[1]}] or [{x.shape[0]}, {x.shape[1]}], got {tuple(b.shape)}")
    return b.expand_as(x).contiguous()


def _numpy(parts: list[torch.Tensor]) -> np.ndarray:
    """Concatenated batch results as ``float32`` numpy."""
    return torch.cat(parts).detach().numpy().astype(np.float32)

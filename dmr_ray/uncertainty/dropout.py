"""Locked dropout for MC-dropout replicates.

MC-dropout pass ``r`` uses one dropout mask per layer, drawn from a generator seeded by
``(seed, r, layer)`` and shared by every row of every batch. A reference and all of its
mutants therefore see the same mask within a pass, whatever the sub-batching, and the
replicate-wise paired difference ``f_r(mut) - f_r(ref)`` cancels the dropout noise that does
not interact with the mutation (Deep MR's ``LockedWeightDropout``).

Masks are drawn on CPU with ``torch.Generator`` (so CPU and GPU runs use the same masks) and
cached on the compute device per ``(pass, activation shape)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dmr_ray.models.loading import DROPOUT_TYPES, dropout_layers


def mask_seed(seed: int, replicate: int, layer: int) -> int:
    """The 63-bit generator seed of the mask of ``layer`` in pass ``replicate``."""
    words = np.random.SeedSequence([seed, replicate, layer]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class LockedDropout(nn.Module):
    """Dropout whose mask is fixed per MC pass and shared across the batch.

    With :attr:`replicate` ``None`` the layer is the identity (plain inference). Otherwise
    the mask has shape ``(1, *x.shape[1:])`` (element-wise, replacing ``nn.Dropout``) or
    ``(1, C, 1, ...)`` (whole channels, replacing ``nn.Dropout1d/2d/3d``), with kept units
    scaled by ``1/(1-p)``. It ignores ``train()``/``eval()``.

    Parameters
    ----------
    p
        Drop probability.
    channelwise
        Drop whole channels instead of single elements.
    seed, layer
        Mask stream: pass ``r`` uses :func:`mask_seed` ``(seed, r, layer)``.
    """

    def __init__(self, p: float, channelwise: bool, seed: int, layer: int):
        super().__init__()
        self.p = float(p)
        self.channelwise = channelwise
        self.seed = seed
        self.layer = layer
        self.replicate: int | None = None
        self._masks: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multiply ``x`` by the mask of the current pass (identity when no pass is set)."""
        if self.replicate is None:
            return x
        return x * self.mask(self.replicate, x)

    def mask(self, replicate: int, x: torch.Tensor) -> torch.Tensor:
        """The (cached) scaled mask of pass ``replicate`` for activations like ``x``."""
        shape = (1, x.shape[1], *([1] * (x.ndim - 2))) if self.channelwise else (1, *x.shape[1:])
        key = (replicate, shape, x.device, x.dtype)
        if key not in self._masks:
            generator = torch.Generator().manual_seed(mask_seed(self.seed, replicate, self.layer))
            keep = torch.rand(shape, generator=generator) >= self.p
            scale = 1.0 / (1.0 - self.p) if self.p < 1 else 0.0
            self._masks[key] = (keep.to(torch.float32) * scale).to(device=x.device, dtype=x.dtype)
        return self._masks[key]

    def extra_repr(self) -> str:
        return f"p={self.p}, channelwise={self.channelwise}, layer={self.layer}"


def lock_dropout(model: nn.Module, seed: int) -> list[LockedDropout]:
    """Replace every dropout layer (``p > 0``) of ``model`` in place with a :class:`LockedDropout`.

    Layers are numbered in ``named_modules()`` order.

    Returns
    -------
    list of LockedDropout
        The new layers, in that order (empty if ``model`` has no dropout).
    """
    locked = []
    for layer, (name, module) in enumerate(dropout_layers(model)):
        assert isinstance(module, DROPOUT_TYPES)  # what dropout_layers returns; gives module.p its type
        replacement = LockedDropout(module.p, not isinstance(module, nn.Dropout), seed, layer)
        parent_name, _, attr = name.rpartition(".")
        model.get_submodule(parent_name).register_module(attr, replacement)
        locked.append(replacement)
    return locked

"""Receptive-field windows: which positions of an activation a point mutation can change.

Plan time (numpy, once per model and length): for every input position ``p`` the
:class:`Region` of an activation, ``[lo[p], hi[p])``, holds every position the substitution
at ``p`` can change, computed as if the sequence went on forever (zeros beyond its ends).
Its :class:`Window` has one width ``W`` for all ``p`` (the widest region) and starts at
``lo[p]``; regions much wider than the activation get the whole activation instead
(:data:`WHOLE_ABOVE`). One width lets all mutants of a batch be held as one ``[B, F, W]``
tensor of differences from the reference (``F``: the activation's non-length axes, flattened).

Windows near the sequence ends reach past ``[0, L)``; the differences there are kept at zero
(:meth:`Window.clear_outside`), and reference tensors read over windows are padded by the
window's :attr:`~Window.left`/:attr:`~Window.right` margins. In exchange, consecutive
positions have windows one position apart (:attr:`~Window.slope` 1) wherever no pooling
intervenes, so a run of consecutive sites reads its reference slices as strided views
(:meth:`Window.slices`) and moves between layers by constant offsets (:class:`Shift`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dmr_ray.ism.mutants import N_ALT

WHOLE_ABOVE = 1.25
"""Regions wider than this many times their activation's length get the whole activation as
their window (all sites then share it); narrower ones keep evenly spaced windows, reaching
past the ends, which need no gathers."""


@dataclass(frozen=True, eq=False)
class Region:
    """Positions ``[lo[p], hi[p])`` of an activation of length ``length`` that the
    substitution at input position ``p`` can change (``int64 [L_input]`` each)."""

    lo: np.ndarray
    hi: np.ndarray
    length: int

    @classmethod
    def point(cls, length: int) -> Region:
        """The input itself: position ``p`` changes only position ``p``."""
        p = np.arange(length, dtype=np.int64)
        return cls(p, p + 1, length)

    def sliding(self, span: int, stride: int, pad: int, out_length: int) -> Region:
        """After a sliding-window layer: output ``j`` reads inputs ``j*stride - pad + [0, span)``."""
        lo = -((span - 1 - pad - self.lo) // stride)
        hi = (self.hi - 1 + pad) // stride + 1
        return Region(lo, hi, out_length)

    def shifted(self, offset: int, out_length: int) -> Region:
        """After cropping: output ``j`` is input ``j + offset``."""
        return Region(self.lo - offset, self.hi - offset, out_length)

    def union(self, other: Region) -> Region:
        """Positions changed in either of two activations of the same length."""
        return Region(np.minimum(self.lo, other.lo), np.maximum(self.hi, other.hi), self.length)


class Batch:
    """A run of consecutive mutated positions of one reference, :data:`N_ALT` mutants each.

    Parameters
    ----------
    row
        Row of the reference in the cached reference tensors.
    first, sites
        First position of the run and its number of positions (sites).
    tokens
        ``uint8 [L]``: the reference, on the compute device.
    precision
        ``torch.bfloat16``/``torch.float16`` to run the linear layers on differences under
        autocast, or ``None`` for float32.

    Attributes
    ----------
    pos : torch.Tensor
        ``long [S]``: the positions.
    slot, alt, base, mutant_pos : torch.Tensor
        ``long [B]`` (``B = N_ALT * S``, site-major): substitution slot, substituted base,
        reference base and position of each mutant (alternative alleles in ACGT order skipping
        the reference, as :class:`~dmr_ray.ism.mutants.MutantPlan`).
    """

    def __init__(self, row: int, first: int, sites: int, tokens: torch.Tensor, precision: torch.dtype | None):
        self.row, self.first, self.sites = row, first, sites
        self.mutants = N_ALT * sites
        self.precision = precision
        device = tokens.device
        self.pos = torch.arange(first, first + sites, device=device)
        self.mutant_pos = self.pos.repeat_interleave(N_ALT)
        self.base = tokens[first : first + sites].long().repeat_interleave(N_ALT)
        self.slot = torch.arange(N_ALT, device=device).repeat(sites)
        self.alt = self.slot + (self.slot >= self.base)

    def low_precision(self) -> contextlib.AbstractContextManager:
        """Autocast to :attr:`precision` (no-op for float32)."""
        if self.precision is None:
            return contextlib.nullcontext()
        return torch.autocast(self.pos.device.type, dtype=self.precision)

    def by_site(self, diff: torch.Tensor) -> torch.Tensor:
        """View ``[B, ...]`` as ``[S, N_ALT, ...]``."""
        return diff.view(self.sites, N_ALT, *diff.shape[1:])


@dataclass(frozen=True, eq=False)
class Window:
    """Fixed-width windows of one activation, one per input position.

    Attributes
    ----------
    lead : tuple of int
        The activation's axes between batch and length (``F`` is their product).
    length : int
        The activation's length ``L``.
    width : int
        ``W``.
    starts : numpy.ndarray
        ``int64 [L_input]``: each window's first position (may lie outside ``[0, L)``).
    device_starts : torch.Tensor
        ``starts`` on the compute device.
    slope : int or None
        1 if ``starts[p] = starts[0] + p``, 0 if all windows are the same, else ``None``.
    left, right : int
        How far windows reach before 0 and after ``L``.
    region : Region or None
        The changed positions the window holds.
    """

    lead: tuple[int, ...]
    length: int
    width: int
    starts: np.ndarray
    device_starts: torch.Tensor
    slope: int | None
    left: int
    right: int
    region: Region | None = None

    @classmethod
    def of(cls, region: Region, lead: tuple[int, ...], device: torch.device) -> Window:
        """The window of ``region`` (the whole activation when regions are much wider)."""
        width = max(1, int((region.hi - region.lo).max()))
        if width > WHOLE_ABOVE * region.length:
            return cls.span(lead, region.length, np.zeros_like(region.lo), region.length, device, region)
        return cls.span(lead, region.length, region.lo, width, device, region)

    @classmethod
    def span(
        cls,
        lead: tuple[int, ...],
        length: int,
        starts: np.ndarray,
        width: int,
        device: torch.device,
        region: Region | None = None,
    ) -> Window:
        """Windows of ``width`` positions from ``starts`` in an activation of ``length``."""
        steps = np.diff(starts)
        slope = 1 if np.all(steps == 1) else 0 if np.all(steps == 0) else None
        left = int(max(0, -starts.min()))
        right = int(max(0, (starts + width).max() - length))
        return cls(
            tuple(lead), length, width, starts, torch.as_tensor(starts, device=device), slope, left, right, region
        )

    def relead(self, lead: tuple[int, ...]) -> Window:
        """The same windows for a reshaped activation (same length and ``F``)."""
        return Window(
            tuple(lead),
            self.length,
            self.width,
            self.starts,
            self.device_starts,
            self.slope,
            self.left,
            self.right,
            self.region,
        )

    @property
    def changed(self) -> Region:
        """:attr:`region`, which every window made by :meth:`of` has (the windows rules read
        their operands from); a bare :meth:`span` has none."""
        if self.region is None:
            raise AssertionError("a window made by Window.span has no region")
        return self.region

    @property
    def features(self) -> int:
        """``F``: the product of :attr:`lead`."""
        return math.prod(self.lead)

    def pad(self, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``x`` ``[..., L]`` padded with ``fill`` by the window margins (a copy)."""
        if self.left or self.right:
            return F.pad(x, (self.left, self.right), value=fill)
        return x.clone()

    def slices(self, padded: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The windows of ``batch``'s sites over ``padded`` ``[F, left + L + right]``.

        Returns
        -------
        torch.Tensor
            ``[S, F, W]``, or ``[1, F, W]`` when all sites share one window (a view where
            the windows are evenly spaced).
        """
        first = int(self.starts[batch.first]) + self.left
        if self.slope == 1:
            return padded.unfold(1, self.width, 1)[:, first : first + batch.sites].transpose(0, 1)
        if self.slope == 0:
            return padded[None, :, first : first + self.width]
        rows = torch.zeros_like(batch.pos)
        return gather_windows(padded[None], rows, self.device_starts[batch.pos] + self.left, self.width)

    def clear_outside(self, diff: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``diff`` ``[B, F, W]`` with positions outside ``[0, L)`` set to zero."""
        if not self.left and not self.right:
            return diff
        last = batch.first + batch.sites - 1
        if self.starts[batch.first] >= 0 and self.starts[last] + self.width <= self.length:
            return diff
        positions = self.device_starts[batch.pos, None] + torch.arange(self.width, device=diff.device)
        inside = (positions >= 0) & (positions < self.length)
        return torch.where(inside[:, None, None], batch.by_site(diff), 0.0).flatten(0, 1)


def gather_windows(x: torch.Tensor, rows: torch.Tensor, starts: torch.Tensor, width: int) -> torch.Tensor:
    """``out[i] = x[rows[i], :, starts[i] : starts[i] + width]`` for ``x`` ``[N, F, L]`` (a copy)."""
    return x.unfold(2, width, 1)[rows, :, starts]


class Shift:
    """Read a difference window at another range of positions of the same activation.

    Built at plan time from the source window and, for every input position, the first
    position of the range to read; positions outside the source window read 0.

    Parameters
    ----------
    source
        The window the differences are held in.
    starts
        ``int64 [L_input]``: first position to read for each input position.
    width
        Number of positions to read.
    device
        The compute device.

    Attributes
    ----------
    identity : bool
        The range is always the source window.
    embed : int or None
        ``k`` when the range always starts ``k`` positions before the source window and
        contains it.
    padding : int or None
        ``k`` when, moreover, ``k`` positions are added on each side (a convolution can then
        pad implicitly).
    """

    def __init__(self, source: Window, starts: np.ndarray, width: int, device: torch.device):
        offsets = starts - source.starts
        self.width = width
        self.left = int(max(0, -offsets.min()))
        self.right = int(max(0, (offsets + width).max() - source.width))
        self.constant = int(offsets[0]) + self.left if np.all(offsets == offsets[0]) else None
        self.offsets = torch.as_tensor(offsets + self.left, device=device)
        self.embed = self.left if self.constant == 0 else None
        self.identity = self.embed == 0 and width == source.width
        self.padding = self.left if self.embed is not None and self.left == self.right else None

    def __call__(self, diff: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``[B, F, width]`` from ``diff`` ``[B, F, W]``."""
        if self.identity:
            return diff
        if self.left or self.right:
            diff = F.pad(diff, (self.left, self.right))
        if self.constant is not None:
            return diff.narrow(2, self.constant, self.width)
        rows = torch.arange(diff.shape[0], device=diff.device)
        return gather_windows(diff, rows, self.offsets[batch.mutant_pos], self.width)

"""Receptive-field windows: which positions of an activation a point mutation can change.

Plan time (numpy, once per model and length): for every input position ``p`` the
:class:`Region` of an activation, ``[lo[p], hi[p])``, holds every position the substitution
at ``p`` can change, computed as if the sequence went on forever (zeros beyond its ends).

Input positions come in *blocks* of ``G`` (the network's :attr:`Region.group`: the product of
its strides, 1 without pooling), aligned at 0. A :class:`Window` holds, for every block, the
union of its positions' regions: one width ``W`` for all blocks (the widest union), starting
at the block's smallest ``lo``. With strides, consecutive blocks' windows are then a constant
:attr:`~Window.step` apart at every layer (``G`` divided by the layer's cumulative stride), so
a batch of whole blocks reads its reference slices as strided views and moves between layers
by constant offsets, with no gathers. Regions much wider than the activation get the whole
activation instead (:data:`WHOLE_ABOVE`). One width lets all mutants of a batch be held as one
``[B, F, W]`` tensor of differences from the reference (``F``: the activation's non-length
axes, flattened); the ``N_ALT * G`` mutants of a block share their window (a *group*).

Windows near the sequence ends reach past ``[0, L)``; the differences there are kept at zero
(:meth:`Window.clear_outside`), and reference tensors read over windows are padded by the
window's :attr:`~Window.left`/:attr:`~Window.right` margins.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
    substitution at input position ``p`` can change (``int64 [P]`` each, ``P``: the input
    length rounded up to whole blocks of ``group`` positions)."""

    lo: np.ndarray
    hi: np.ndarray
    length: int
    group: int = 1

    @classmethod
    def point(cls, length: int, group: int = 1) -> Region:
        """The input itself: position ``p`` changes only position ``p``."""
        p = np.arange(-(-length // group) * group, dtype=np.int64)
        return cls(p, p + 1, length, group)

    def sliding(self, span: int, stride: int, pad: int, out_length: int) -> Region:
        """After a sliding-window layer: output ``j`` reads inputs ``j*stride - pad + [0, span)``."""
        lo = -((span - 1 - pad - self.lo) // stride)
        hi = (self.hi - 1 + pad) // stride + 1
        return Region(lo, hi, out_length, self.group)

    def shifted(self, offset: int, out_length: int) -> Region:
        """After cropping: output ``j`` is input ``j + offset``."""
        return Region(self.lo - offset, self.hi - offset, out_length, self.group)

    def union(self, other: Region) -> Region:
        """Positions changed in either of two activations of the same length."""
        return Region(np.minimum(self.lo, other.lo), np.maximum(self.hi, other.hi), self.length, self.group)

    def blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of the union of each block's regions, ``int64 [P / group]`` each."""
        return self.lo.reshape(-1, self.group).min(1), self.hi.reshape(-1, self.group).max(1)


class Batch:
    """The mutants of consecutive positions ``[first, stop)`` of one reference, :data:`N_ALT`
    per position (site), computed in whole blocks of ``group`` sites.

    The batch covers the blocks ``[start, end)`` that hold ``[first, stop)``; the sites of
    those blocks outside it (and beyond the sequence's end) are *padding*: their input
    differences stay zero and their effects are dropped (:attr:`real`).

    Parameters
    ----------
    row
        Row of the reference in the cached reference tensors.
    first, stop
        The positions to mutate (all valid bases).
    tokens
        ``uint8 [L]``: the reference, on the compute device.
    precision
        ``torch.bfloat16``/``torch.float16`` to run the linear layers on differences under
        autocast, or ``None`` for float32.
    group
        Sites per block (the plan's :attr:`Region.group`).

    Attributes
    ----------
    start, sites, groups, mutants : int
        First site, number of sites (``end - start``), of blocks and of mutants
        (``N_ALT * sites``, site-major).
    real : slice
        The mutants of ``[first, stop)`` among the batch's.
    slot, alt, base, mutant_pos : torch.Tensor
        ``long [M]`` for the ``M`` real mutants: substitution slot, substituted base,
        reference base and position (alternative alleles in ACGT order skipping the
        reference, as :class:`~dmr_ray.ism.mutants.MutantPlan`).
    """

    def __init__(
        self, row: int, first: int, stop: int, tokens: torch.Tensor, precision: torch.dtype | None, group: int = 1
    ):
        self.row, self.first, self.stop = row, first, stop
        self.start = first - first % group
        self.sites = -(-stop // group) * group - self.start
        self.groups = self.sites // group
        self.mutants = N_ALT * self.sites
        self.real = slice(N_ALT * (first - self.start), N_ALT * (stop - self.start))
        self.precision = precision
        device = tokens.device
        self.mutant_pos = torch.arange(first, stop, device=device).repeat_interleave(N_ALT)
        self.base = tokens[first:stop].long().repeat_interleave(N_ALT)
        self.slot = torch.arange(N_ALT, device=device).repeat(stop - first)
        self.alt = self.slot + (self.slot >= self.base)

    @property
    def device(self) -> torch.device:
        """The compute device."""
        return self.slot.device

    def low_precision(self) -> contextlib.AbstractContextManager:
        """Autocast to :attr:`precision` (no-op for float32)."""
        if self.precision is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.precision)

    def by_group(self, diff: torch.Tensor) -> torch.Tensor:
        """View ``[B, ...]`` as ``[groups, B / groups, ...]``: the mutants sharing a window."""
        return diff.view(self.groups, -1, *diff.shape[1:])


@dataclass(frozen=True, eq=False)
class Window:
    """Fixed-width windows of one activation, one per block of input positions.

    Attributes
    ----------
    lead : tuple of int
        The activation's axes between batch and length (``F`` is their product).
    length : int
        The activation's length ``L``.
    width : int
        ``W``.
    group : int
        Input positions per block.
    starts : numpy.ndarray
        ``int64 [P]``: the first position of each input position's window (the same for all
        positions of a block; may lie outside ``[0, L)``).
    device_starts : torch.Tensor
        ``int64 [P / group]``: each block's first position, on the compute device.
    step : int or None
        Positions between consecutive blocks' windows (0: all windows are the same), or
        ``None`` if they are unevenly spaced.
    left, right : int
        How far windows reach before 0 and after ``L``.
    region : Region or None
        The changed positions the window holds.
    """

    lead: tuple[int, ...]
    length: int
    width: int
    group: int
    starts: np.ndarray
    device_starts: torch.Tensor
    step: int | None
    left: int
    right: int
    region: Region | None = None

    @classmethod
    def of(cls, region: Region, lead: tuple[int, ...], device: torch.device) -> Window:
        """The window of ``region``'s blocks (the whole activation when regions are much wider)."""
        lo, hi = region.blocks()
        width = max(1, int((hi - lo).max()))
        if width > WHOLE_ABOVE * region.length:
            starts = np.zeros_like(region.lo)
            return cls.span(lead, region.length, starts, region.length, region.group, device, region)
        return cls.span(lead, region.length, np.repeat(lo, region.group), width, region.group, device, region)

    @classmethod
    def span(
        cls,
        lead: tuple[int, ...],
        length: int,
        starts: np.ndarray,
        width: int,
        group: int,
        device: torch.device,
        region: Region | None = None,
    ) -> Window:
        """Windows of ``width`` positions from ``starts`` (constant on each block of ``group``
        input positions) in an activation of ``length``."""
        block_starts = starts[::group]
        steps = np.diff(block_starts)
        step = int(steps[0]) if steps.size and np.all(steps == steps[0]) else (0 if not steps.size else None)
        left = int(max(0, -starts.min()))
        right = int(max(0, (starts + width).max() - length))
        device_starts = torch.as_tensor(block_starts, device=device)
        return cls(tuple(lead), length, width, group, starts, device_starts, step, left, right, region)

    def relead(self, lead: tuple[int, ...]) -> Window:
        """The same windows for a reshaped activation (same length and ``F``)."""
        return dataclasses.replace(self, lead=tuple(lead))

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

    def group_starts(self, batch: Batch) -> torch.Tensor:
        """``long [groups]``: the first position of each of ``batch``'s windows (a view)."""
        first = batch.start // self.group
        return self.device_starts[first : first + batch.groups]

    def pad(self, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``x`` ``[..., L]`` padded with ``fill`` by the window margins (a copy)."""
        if self.left or self.right:
            return F.pad(x, (self.left, self.right), value=fill)
        return x.clone()

    def slices(self, padded: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The windows of ``batch``'s blocks over ``padded`` ``[F, left + L + right]``.

        Returns
        -------
        torch.Tensor
            ``[groups, F, W]``, or ``[1, F, W]`` when all blocks share one window (a view
            where the windows are evenly spaced).
        """
        first = int(self.starts[batch.start]) + self.left
        if self.step == 0:
            return padded[None, :, first : first + self.width]
        if self.step is not None:
            return padded[:, first:].unfold(1, self.width, self.step)[:, : batch.groups].transpose(0, 1)
        rows = torch.zeros(batch.groups, dtype=torch.long, device=padded.device)
        return gather_windows(padded[None], rows, self.group_starts(batch) + self.left, self.width)

    def clear_outside(self, diff: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``diff`` ``[B, F, W]`` with positions outside ``[0, L)`` set to zero."""
        if not self.left and not self.right:
            return diff
        if self.starts[batch.start] >= 0 and self.starts[batch.start + batch.sites - 1] + self.width <= self.length:
            return diff
        positions = self.group_starts(batch)[:, None] + torch.arange(self.width, device=diff.device)
        inside = (positions >= 0) & (positions < self.length)
        return torch.where(inside[:, None, None], batch.by_group(diff), 0.0).flatten(0, 1)


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
        ``int64 [P]``: first position to read for each input position (constant on blocks).
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
        self.group = source.group
        offsets = (starts - source.starts)[:: self.group]
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
        first = batch.start // self.group
        offsets = self.offsets[first : first + batch.groups].repeat_interleave(diff.shape[0] // batch.groups)
        return gather_windows(diff, rows, offsets, self.width)

"""Per-layer rules of the fast ISM path: each computes a layer's change under a point mutation.

Every activation the fast path keeps *local* is held as its difference from the reference
activation, ``diff = f(mutant) - f(reference)``, over a :class:`~dmr_ray.ism.windows.Window`
(``[B, F, W]``; zero outside the window and outside ``[0, L)``). A batch is a run of
consecutive sites (one position, its :data:`N_ALT` substitutions) in whole blocks of the
plan's group size; the mutants of a block (a *group*, :meth:`Batch.by_group`) share their
window and every reference slice they read, and slices are ``[groups, F, W]``.

Local rules (difference windows in, difference window out)
    * :class:`Conv` (``nn.Conv1d``, any dilation/stride/zero padding): linear, so the
      output difference is the convolution (without bias) of the input difference over the
      range the output window reads (zeros beyond the input window are unchanged or padding
      positions). When each mutant's changed input positions are much fewer than its output
      window (after pooling), it runs input position by input position instead
      (:class:`ScatterConv`).
    * :class:`ChannelScale` (``nn.BatchNorm1d`` in eval mode): ``diff * weight / sqrt(var + eps)``.
    * :class:`Pointwise` (activations): ``f(ref + diff) - f(ref)`` on the reference slice.
    * :class:`MaxPool`: ``pool(ref + diff) - pool(ref)`` over the range the window reads
      (the reference padded with ``-inf``), with the pool's own stride alignment.
    * :class:`AvgPool`: linear, the pooled difference.
    * :class:`Mask` (MC-dropout :class:`~dmr_ray.uncertainty.dropout.LockedDropout`): the
      difference times the window's slice of the pass's mask (the reference pass used the
      whole mask, so reference and mutants share it).
    * :class:`Crop`, :class:`Sum` (residual additions), :class:`Scale`, :class:`Relabel`
      (identity, eval-mode dropout, reshapes of the non-length axes).

Boundary rules (difference window in, whole global value out)
    * :class:`FlattenLinear` (flatten then ``nn.Linear``): reference output plus the weight
      columns of the window times the difference (one ``bmm`` per batch, each group's mutants
      against their window's columns, a strided view of the weight, never copied).
    * :class:`LengthReduce` (mean or sum over the length): reference plus the window's sum.

Anything else that reads a local activation gets it whole from :func:`splice`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dmr_ray.ism.mutants import N_ALT
from dmr_ray.ism.windows import Batch, Region, Shift, Window
from dmr_ray.uncertainty.dropout import LockedDropout


@dataclass(frozen=True)
class CacheKey:
    """A reference tensor a rule reads: (a part of) the value of graph node ``node``.

    Local values are cached as ``[n, F, left + L + right]`` (padded with ``fill``); with
    ``flat=False`` the value is cached as it is (a global value). ``part`` ``"neg"`` keeps
    ``min(value, 0)`` and ``"-pos"`` keeps ``-max(value, 0)``.
    """

    node: str
    left: int = 0
    right: int = 0
    fill: float = 0.0
    flat: bool = True
    part: str = ""

    @classmethod
    def padded(cls, node: str, window: Window, fill: float = 0.0, part: str = "") -> CacheKey:
        """Node ``node`` padded by ``window``'s margins."""
        return cls(node, window.left, window.right, fill, True, part)

    def take(self, value: torch.Tensor) -> torch.Tensor:
        """What to cache of the node's reference ``value`` (always a copy: later in-place
        layers must not change it)."""
        if not self.flat:
            return value.clone()
        flat = value.reshape(value.shape[0], -1, value.shape[-1])
        if self.part == "neg":
            flat = flat.clamp(max=0.0)
        elif self.part == "-pos":
            flat = -flat.clamp(min=0.0)
        if self.left or self.right:
            return F.pad(flat, (self.left, self.right), value=self.fill)
        return flat if self.part else flat.clone()


Cache = Mapping[CacheKey, torch.Tensor]


class Rule(abc.ABC):
    """How one graph node's value is computed for a batch of mutants."""

    def caches(self) -> tuple[CacheKey, ...]:
        """Reference tensors this rule reads (recorded by the reference pass)."""
        return ()

    def prepare(self) -> None:  # noqa: B027 - an optional hook; most rules derive nothing
        """Derive constants from the current weights (once per plan; a cached plan keeps them)."""

    @abc.abstractmethod
    def flops(self) -> float:
        """Approximate floating-point operations per mutant (for the ``"auto"`` cost model)."""

    @abc.abstractmethod
    def __call__(self, diffs: Sequence[torch.Tensor], batch: Batch, cache: Cache) -> torch.Tensor:
        """The node's value for ``batch`` from the difference windows of its local inputs."""


class LocalRule(Rule):
    """A rule whose output is again a difference window (:attr:`window`)."""

    window: Window

    def flops(self) -> float:
        """Elementwise work: one operation per window element."""
        return float(self.window.features * self.window.width)

    def scratch(self) -> int:
        """Floats per mutant of temporaries beyond the input and output windows (after
        :meth:`prepare`)."""
        return 0


class Input(LocalRule):
    """The one-hot input: ``+1`` at the substituted base, ``-1`` at the reference base."""

    def __init__(self, length: int, alphabet: int, group: int, device: torch.device):
        self.window = Window.of(Region.point(length, group), (alphabet,), device)

    def __call__(self, diffs, batch, cache):
        diff = torch.zeros(batch.mutants, self.window.features, self.window.width, device=batch.device)
        rows = torch.arange(batch.real.start, batch.real.stop, device=diff.device)
        pos = np.arange(batch.first, batch.stop)
        at = torch.as_tensor(np.repeat(pos - self.window.starts[pos], N_ALT), device=diff.device)
        diff[rows, batch.alt, at] = 1.0
        diff[rows, batch.base, at] = -1.0
        return diff


class _Sliding(LocalRule):
    """A layer whose output ``j`` reads inputs ``j*stride - pad + [0, span)``."""

    def __init__(
        self,
        source: Window,
        span: int,
        stride: int,
        pad: int,
        out_length: int,
        lead: tuple[int, ...],
        device: torch.device,
    ):
        self.window = Window.of(source.changed.sliding(span, stride, pad, out_length), lead, device)
        self.read = Window.span(
            source.lead,
            source.length,
            self.window.starts * stride - pad,
            (self.window.width - 1) * stride + span,
            source.group,
            device,
        )
        self.shift = Shift(source, self.read.starts, self.read.width, device)


IM2COL_MAX_WIDTH = 64
IM2COL_MIN_INNER = 128
"""Convolutions with output windows of at most :data:`IM2COL_MAX_WIDTH` positions and at least
this many input channels times kernel positions run as one matrix product over the unfolded
input windows (oneDNN's direct convolution is slow on short windows of many channels)."""


SCATTER_MAX_RATIO = 0.6
SCATTER_MIN_CHANNELS = 32
"""Stride-1 convolutions of at least :data:`SCATTER_MIN_CHANNELS` input channels (and
:data:`IM2COL_MIN_INNER` input channels times kernel positions) whose mutants change at most
:data:`SCATTER_MAX_RATIO` of their output window's width of input positions run as a
:class:`ScatterConv` (one accumulating matrix product per kernel tap)."""

TAP_MAX_OUT_CHANNELS = 8
TAP_MIN_KERNEL = 16
"""Stride-1 convolutions computing at most :data:`TAP_MAX_OUT_CHANNELS` output channels with
kernels of at least :data:`TAP_MIN_KERNEL` positions (BPNet's profile convolution) run tap by
tap (:meth:`Conv._tapped`: one matrix product and one col2im; oneDNN's direct convolution is
slow with few output channels)."""


class Conv(_Sliding):
    """``nn.Conv1d`` (zero padding) on differences: the convolution without its bias.

    With short output windows of many channels (:data:`IM2COL_MIN_INNER`; no channel groups)
    it is one matrix product ``y[b, :, j] = W2 @ vec(x[b, :, j*stride + dilation*[0, k)])``
    with ``W2 = weight.reshape(C_out, C_in * k)``: ``[B * W_out, C_in * k] @ [C_in * k, C_out]``.
    When, moreover, the stride is 1 and each mutant's changed input positions are at most
    :data:`SCATTER_MAX_RATIO` of the output window (a convolution after a max pool), it runs
    as a :class:`ScatterConv` over those positions only. With few output channels and a long
    kernel it runs tap by tap (:data:`TAP_MAX_OUT_CHANNELS`).

    :meth:`keep_channels` restricts it to the output channels the tasks read (the others'
    differences are left at zero).
    """

    def __init__(self, module: nn.Conv1d, source: Window, out_length: int, device: torch.device):
        (kernel,), (dilation,), (stride,) = module.kernel_size, module.dilation, module.stride
        span = dilation * (kernel - 1) + 1
        if isinstance(module.padding, str):  # "same" or "valid"
            pad = (span - 1) // 2 if module.padding == "same" else 0
        else:
            pad = module.padding[0]
        super().__init__(source, span, stride, pad, out_length, (module.out_channels,), device)
        self.module = module
        self.span = span
        self.norm: nn.BatchNorm1d | None = None
        self.channels: torch.Tensor | None = None
        self.scatter: ScatterConv | None = None
        inner = module.in_channels * kernel
        wide = module.in_channels >= SCATTER_MIN_CHANNELS and inner >= IM2COL_MIN_INNER
        if stride == 1 and module.groups == 1 and wide:
            scatter = ScatterConv(source, self.window, kernel, dilation, pad, device)
            if scatter.width <= SCATTER_MAX_RATIO * self.window.width:
                self.scatter = scatter

    def fold(self, norm: nn.BatchNorm1d) -> None:
        """Also apply the eval-mode batch norm that alone reads this convolution's output."""
        self.norm = norm

    def keep_channels(self, channels: np.ndarray) -> None:
        """Compute only the output ``channels`` (sorted; call before :meth:`prepare`)."""
        self.channels = torch.as_tensor(channels, device=self.window.device_starts.device)

    @property
    def outputs(self) -> int:
        """Output channels computed."""
        return self.module.out_channels if self.channels is None else len(self.channels)

    def prepare(self) -> None:
        m = self.module
        weight = m.weight.detach()
        weight = weight if self.norm is None else weight * channel_scale(self.norm)[:, :, None]
        self.weight = weight if self.channels is None else weight[self.channels]
        inner = self.weight.shape[1] * self.weight.shape[2]
        unfold = m.groups == 1 and self.window.width <= IM2COL_MAX_WIDTH and inner >= IM2COL_MIN_INNER
        self.matrix = self.weight.reshape(self.weight.shape[0], -1).t() if unfold else None
        tap = self.scatter is None and m.stride == (1,) and m.groups == 1 and m.kernel_size[0] >= TAP_MIN_KERNEL
        # [C * k, C_in]: row c * k + s holds tap k - 1 - s of output channel c
        taps = self.weight.flip(2).permute(0, 2, 1).flatten(0, 1).contiguous()
        self.taps = taps if tap and self.outputs <= TAP_MAX_OUT_CHANNELS else None
        if self.scatter is not None:
            self.scatter.prepare(self.weight)

    def flops(self) -> float:
        m = self.module
        if self.scatter is not None:
            return self.scatter.flops(m.in_channels, self.outputs)
        return 2.0 * m.in_channels // m.groups * self.outputs * m.kernel_size[0] * self.window.width

    def scratch(self) -> int:
        """Floats per mutant of the tap-by-tap product."""
        if self.taps is None:
            return 0
        return self.taps.shape[0] * (self.window.width + self.span - 1)

    def __call__(self, diffs, batch, cache):
        m = self.module
        if self.scatter is not None:
            return self._all_channels(self.scatter(diffs[0], batch), batch)
        if self.shift.padding is None:
            x, padding = self.shift(diffs[0], batch), 0
        else:
            x, padding = diffs[0], self.shift.padding
        if self.taps is not None:
            return self._all_channels(self._tapped(x, self.taps, padding, batch), batch)
        with batch.low_precision():
            if self.matrix is None:
                y = F.conv1d(x, self.weight, None, m.stride, padding, m.dilation, m.groups)
            else:
                y = self._unfolded(F.pad(x, (padding, padding)) if padding else x, self.matrix)
        return self._all_channels(y.float(), batch)

    def _all_channels(self, y: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The output difference ``[B, C_out, W]`` from that of the computed channels
        (zero on the others), with positions outside the activation cleared."""
        if self.channels is not None:
            y = y.new_zeros(y.shape[0], self.module.out_channels, y.shape[2]).index_copy_(1, self.channels, y)
        return self.window.clear_outside(y, batch)

    def _unfolded(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """``[B, C_out, W_out]`` (a transposed view) from ``x`` ``[B, C_in, W_in]`` by one
        matrix product with ``matrix`` ``[C_in * k, C_out]``."""
        (stride,), (dilation,) = self.module.stride, self.module.dilation
        cols = x.unfold(2, self.span, stride)[..., ::dilation]  # [B, C_in, W_out, k]
        b, _, width, _ = cols.shape
        out = cols.permute(0, 2, 1, 3).reshape(b * width, -1) @ matrix
        return out.view(b, width, -1).transpose(1, 2)

    def _tapped(self, x: torch.Tensor, taps: torch.Tensor, padding: int, batch: Batch) -> torch.Tensor:
        """``[B, C, W_out]`` from ``x`` ``[B, C_in, W_in]`` (zero-padded by ``padding`` on each
        side), stride 1: ``z = taps @ x`` (``taps``: ``[C * k, C_in]``, the taps reversed) is
        every tap's product at every input position, one matrix product per mutant, and
        ``F.fold`` (col2im) adds input ``i``'s reversed tap ``s`` to output
        ``i + s * dilation - ((k - 1) * dilation - padding)``, which is the convolution's
        output ``j`` reading input ``j + t * dilation - padding`` through tap ``t = k - 1 - s``."""
        (dilation,), k = self.module.dilation, self.module.kernel_size[0]
        if padding > (k - 1) * dilation:
            x, padding = F.pad(x, (padding, padding)), 0
        with batch.low_precision():
            z = torch.matmul(taps, x)
        width = self.window.width
        fold_padding = (0, (k - 1) * dilation - padding)
        out = F.fold(z.float(), (1, width), (1, k), dilation=(1, dilation), padding=fold_padding)
        return out.view(x.shape[0], -1, width)


class ScatterConv:
    """A stride-1 convolution on differences, input position by input position.

    A mutant's input difference is nonzero only on its region (at most :attr:`width`
    positions of the source window, at a per-mutant offset), and input ``i`` reaches output
    ``i + dilation * (k - 1 - t)`` through tap ``t``. Held positions-major (``[W, B, C]``),
    tap ``t``'s contribution to all mutants is one accumulating matrix product
    ``[width * B, C_in] @ [C_in, C_out]`` into a contiguous slab of a
    ``width + dilation * (k - 1)``-position range, which is then placed at each mutant's
    offset in the output window (positions of the range outside the window are outside the
    activation or unchanged). The work is proportional to ``width`` instead of the output
    window's width: after a max pool of 4, DeepSEA's second and third convolutions read 3 and
    4 changed positions for output windows of 13 and 11.

    Parameters
    ----------
    source, window
        The input and output windows.
    kernel, dilation, pad
        The convolution's kernel size, dilation and left zero padding.
    device
        The compute device.

    Attributes
    ----------
    width : int
        Input positions read per mutant.
    """

    def __init__(self, source: Window, window: Window, kernel: int, dilation: int, pad: int, device: torch.device):
        region = source.changed
        self.width = width = min(int((region.hi - region.lo).max()), source.width)
        self.kernel, self.dilation = kernel, dilation
        lo = np.clip(region.lo, source.starts, source.starts + source.width - width)
        reach = width + dilation * (kernel - 1)  # outputs the ``width`` inputs reach
        shift = lo + pad - dilation * (kernel - 1) - window.starts  # where that range starts in the window
        self.margin = int(max(0, shift.max()))
        self.range = self.margin + reach + int(max(0, window.width - shift.min() - reach))
        self.reads = _Offsets(lo - source.starts, width, device)
        self.places = _Offsets(self.margin - shift, window.width, device)

    def prepare(self, weight: torch.Tensor) -> None:
        """Lay ``weight`` ``[C_out, C_in, k]`` out as ``k`` matrices ``[C_in, C_out]``."""
        self.taps = weight.permute(2, 1, 0).contiguous()

    def flops(self, in_channels: int, out_channels: int) -> float:
        """Multiply-adds per mutant."""
        return 2.0 * in_channels * self.kernel * out_channels * self.width

    def __call__(self, diff: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``[B, C_out, W_out]`` (a permuted view) from ``diff`` ``[B, C_in, W_in]``."""
        b, k, width = diff.shape[0], self.kernel, self.width
        cols = self.reads(diff.permute(2, 0, 1), batch).reshape(width * b, -1)  # [width * B, C_in]
        out = diff.new_zeros(self.range, b, self.taps.shape[2])
        for t in range(k):
            at = self.margin + self.dilation * (k - 1 - t)
            slab = out[at : at + width].view(width * b, -1)
            if batch.precision is None:
                slab.addmm_(cols, self.taps[t])
            else:
                with batch.low_precision():
                    part = cols @ self.taps[t]
                slab += part.float()
        return self.places(out, batch).permute(1, 2, 0)


class _Offsets:
    """``width`` positions of axis 0 (positions-major ``[W, B, ...]``) from each mutant's
    offset (one per input position, constant on blocks of sites; a view when it is the same
    for all)."""

    def __init__(self, offsets: np.ndarray, width: int, device: torch.device):
        self.width = width
        self.constant = int(offsets[0]) if np.all(offsets == offsets[0]) else None
        self.offsets = torch.as_tensor(offsets, device=device)
        self.steps = torch.arange(width, device=device)[:, None]

    def __call__(self, x: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``[width, B, ...]`` from ``x`` ``[W, B, ...]``: ``out[i, b] = x[offset_b + i, b]``."""
        if self.constant is not None:
            return x.narrow(0, self.constant, self.width)
        offsets = self.offsets[batch.start : batch.start + batch.sites].repeat_interleave(N_ALT)
        rows = torch.arange(x.shape[1], device=x.device)
        return x[offsets + self.steps, rows]


class MaxPool(_Sliding):
    """``nn.MaxPool1d``: ``pool(ref + diff) - pool(ref)`` over the range the window reads."""

    def __init__(self, module: nn.MaxPool1d, node: str, source: Window, out_length: int, device: torch.device):
        kernel, stride, pad, dilation = (
            _one(v) for v in (module.kernel_size, module.stride, module.padding, module.dilation)
        )
        super().__init__(source, dilation * (kernel - 1) + 1, stride, pad, out_length, source.lead, device)
        self.params = (kernel, stride, 0, dilation)
        self.key = CacheKey.padded(node, self.read, float("-inf"))

    def caches(self):
        return (self.key,)

    def __call__(self, diffs, batch, cache):
        ref = self.read.slices(cache[self.key][batch.row], batch)
        x = batch.by_group(self.shift(diffs[0], batch)) + ref[:, None]
        new = F.max_pool1d(x.flatten(0, 1), *self.params)
        diff = (batch.by_group(new) - F.max_pool1d(ref, *self.params)[:, None]).flatten(0, 1)
        return self.window.clear_outside(diff, batch)


class AvgPool(_Sliding):
    """``nn.AvgPool1d`` (padding counted, no ceil mode): the pooled difference."""

    def __init__(self, module: nn.AvgPool1d, source: Window, out_length: int, device: torch.device):
        kernel, stride, pad = (_one(v) for v in (module.kernel_size, module.stride, module.padding))
        super().__init__(source, kernel, stride, pad, out_length, source.lead, device)
        self.params = (kernel, stride)

    def __call__(self, diffs, batch, cache):
        return self.window.clear_outside(F.avg_pool1d(self.shift(diffs[0], batch), *self.params), batch)


class ChannelScale(LocalRule):
    """``nn.BatchNorm1d`` in eval mode: the difference times ``weight / sqrt(var + eps)``."""

    def __init__(self, module: nn.BatchNorm1d, source: Window):
        self.module = module
        self.window = source

    def prepare(self) -> None:
        self.scale = channel_scale(self.module)

    def __call__(self, diffs, batch, cache):
        return diffs[0] * self.scale


def channel_scale(norm: nn.BatchNorm1d) -> torch.Tensor:
    """``[C, 1]``: the factor an eval-mode batch norm multiplies differences by (the planner
    gives rules only batch norms with running statistics)."""
    if norm.running_var is None:
        raise AssertionError("a batch norm without running statistics has no fixed scale")
    scale = torch.rsqrt(norm.running_var + norm.eps)
    return (scale if norm.weight is None else scale * norm.weight.detach())[:, None]


class Relu(LocalRule):
    """ReLU: ``relu(ref + diff) - relu(ref) = clamp(diff + min(ref, 0), min=-max(ref, 0))``,
    two passes over the mutants with both reference parts cached."""

    def __init__(self, node: str, source: Window):
        self.window = source
        self.keys = (CacheKey.padded(node, source, part="neg"), CacheKey.padded(node, source, part="-pos"))

    def caches(self):
        return self.keys

    def __call__(self, diffs, batch, cache):
        negative, bound = (self.window.slices(cache[key][batch.row], batch)[:, None] for key in self.keys)
        return (batch.by_group(diffs[0]) + negative).clamp_(min=bound).flatten(0, 1)


class Pointwise(LocalRule):
    """An elementwise function ``f``: ``f(ref + diff) - f(ref)`` on the window's reference slice."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], node: str, source: Window):
        self.fn = fn
        self.window = source
        self.key = CacheKey.padded(node, source)

    def caches(self):
        return (self.key,)

    def __call__(self, diffs, batch, cache):
        w = self.window
        ref = w.slices(cache[self.key][batch.row], batch)
        new = self.fn((batch.by_group(diffs[0]) + ref[:, None]).view(batch.mutants, *w.lead, w.width))
        old = self.fn(ref.reshape(ref.shape[0], *w.lead, w.width))
        return (batch.by_group(new.view(batch.mutants, -1, w.width)) - old.view(ref.shape[0], 1, -1, w.width)).flatten(
            0, 1
        )


class Mask(LocalRule):
    """MC-dropout :class:`LockedDropout`: the difference times the pass's mask on the window."""

    def __init__(self, module: LockedDropout, source: Window):
        self.module = module
        self.window = source

    def __call__(self, diffs, batch, cache):
        m, w = self.module, self.window
        if m.replicate is None:
            return diffs[0]
        like = torch.empty((1, *w.lead, w.length), device=diffs[0].device)
        mask = m.mask(m.replicate, like).reshape(w.features, -1)
        if mask.shape[1] == 1:
            return diffs[0] * mask
        return (batch.by_group(diffs[0]) * w.slices(w.pad(mask), batch)[:, None]).flatten(0, 1)


class Crop(LocalRule):
    """Slicing the length axis: output ``j`` is input ``j + offset``."""

    def __init__(self, offset: int, source: Window, out_length: int, device: torch.device):
        self.window = Window.of(source.changed.shifted(offset, out_length), source.lead, device)
        self.shift = Shift(source, self.window.starts + offset, self.window.width, device)

    def __call__(self, diffs, batch, cache):
        return self.window.clear_outside(self.shift(diffs[0], batch), batch)


class Sum(LocalRule):
    """``a + b`` or ``a - b`` of two local activations of one shape (residual additions).

    With :attr:`base` set (by the planner, when that operand's window is the sum's and no
    other node reads it), the other operand is added into it in place.
    """

    def __init__(self, subtract: bool, sources: tuple[Window, Window], device: torch.device):
        a, b = sources
        self.window = Window.of(a.changed.union(b.changed), a.lead, device)
        self.subtract = subtract
        self.shifts = tuple(Shift(s, self.window.starts, self.window.width, device) for s in sources)
        self.base: int | None = None

    def in_place_candidates(self) -> list[int]:
        """Operands that could hold the sum (their window is the sum's, the other's fits in it)."""
        if self.subtract:
            return []
        return [k for k in (0, 1) if self.shifts[k].identity and self.shifts[1 - k].embed is not None]

    def __call__(self, diffs, batch, cache):
        if self.base is not None:
            base, other = diffs[self.base], diffs[1 - self.base]
            base.narrow(2, self.shifts[1 - self.base].embed, other.shape[2]).add_(other)
            return base
        a, b = (shift(d, batch) for shift, d in zip(self.shifts, diffs, strict=True))
        return a - b if self.subtract else a + b


class Scale(LocalRule):
    """Multiplication (or division) by a constant number."""

    def __init__(self, factor: float, divide: bool, source: Window):
        self.factor, self.divide = factor, divide
        self.window = source

    def __call__(self, diffs, batch, cache):
        return diffs[0] / self.factor if self.divide else diffs[0] * self.factor


class Relabel(LocalRule):
    """Identity on the differences: eval-mode dropout, ``nn.Identity``, copies, and reshapes of
    the non-length axes (``lead`` is the output's)."""

    def __init__(self, source: Window, lead: tuple[int, ...]):
        self.window = source.relead(lead)

    def flops(self) -> float:
        return 0.0

    def __call__(self, diffs, batch, cache):
        return diffs[0]


class WindowWeights:
    """Weights over every position of an activation, contracted with difference windows:
    ``out[b, h] = sum_{f, w} weights[h, f, start_b + w] * diff[b, f, w]``.

    Parameters
    ----------
    window
        The windows the differences are held in.
    weights
        ``[H, F, L]``.
    """

    def __init__(self, window: Window, weights: torch.Tensor):
        self.window = window
        h, f, length = weights.shape
        # One 2-D transpose, then copies of whole rows: a 3-D permute of a wide dense layer's
        # weight is several times slower.
        rows = weights.detach().reshape(h, -1).t().contiguous().view(f, length, h).transpose(0, 1)
        self.columns = rows.new_zeros(window.left + length + window.right, f, h)
        self.columns[window.left : window.left + length] = rows

    @property
    def outputs(self) -> int:
        """``H``."""
        return self.columns.shape[2]

    def __call__(self, diff: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``[B, H]`` float32 for ``diff`` ``[B, F, W]`` (the product under ``batch``'s precision)."""
        columns = self._columns(batch)
        diff = batch.by_group(diff).transpose(2, 3).reshape(batch.groups, diff.shape[0] // batch.groups, -1)
        with batch.low_precision():
            out = torch.bmm(diff, columns) if columns.shape[0] > 1 else diff @ columns[0]
        return out.float().flatten(0, 1)

    def _columns(self, batch: Batch) -> torch.Tensor:
        """``[groups or 1, W*F, H]``: the weight columns of each group's window (a view of
        :attr:`columns` when the windows are evenly spaced)."""
        w, c = self.window, self.columns
        first = int(w.starts[batch.start]) + w.left
        rows = c.shape[1] * c.shape[2]
        if w.step == 0:
            return c[first : first + w.width].view(1, -1, c.shape[2])
        if w.step is not None:
            shape = (batch.groups, w.width * w.features, c.shape[2])
            return c.as_strided(shape, (w.step * rows, c.shape[2], 1), first * rows)
        index = w.group_starts(batch)[:, None] + w.left + torch.arange(w.width, device=c.device)
        return c[index].view(batch.groups, -1, c.shape[2])


class FlattenLinear(Rule):
    """Flatten then ``nn.Linear``: reference output + the window's weight columns @ difference."""

    def __init__(self, module: nn.Linear, node: str, source: Window):
        self.module = module
        self.source = source
        self.key = CacheKey(node, flat=False)

    def caches(self):
        return (self.key,)

    def prepare(self) -> None:
        w = self.source
        self.weights = WindowWeights(w, self.module.weight.view(-1, w.features, w.length))

    def flops(self) -> float:
        w = self.source
        return 2.0 * w.width * w.features * self.module.out_features

    def __call__(self, diffs, batch, cache):
        return self.weights(diffs[0], batch) + cache[self.key][batch.row]


class LengthReduce(Rule):
    """Mean or sum over the length axis: the reference's plus the window's sum of differences."""

    def __init__(self, mean: bool, keepdim: bool, node: str, source: Window):
        self.mean, self.keepdim = mean, keepdim
        self.source = source
        self.key = CacheKey(node, flat=False)

    def caches(self):
        return (self.key,)

    def flops(self) -> float:
        return float(self.source.features * self.source.width)

    def __call__(self, diffs, batch, cache):
        w = self.source
        change = diffs[0].sum(dim=2)
        if self.mean:
            change = change / w.length
        change = change.view(batch.mutants, *w.lead, *((1,) if self.keepdim else ()))
        return change + cache[self.key][batch.row]


def splice(diff: torch.Tensor, window: Window, reference: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The whole mutant activation ``[B, *lead, L]``: the reference plus the difference window.

    ``reference`` is the cached reference activation of ``batch``'s row, ``[F, left + L + right]``
    (key :meth:`CacheKey.padded`).
    """
    full = reference.expand(batch.mutants, *reference.shape).clone()
    starts = window.group_starts(batch).repeat_interleave(batch.mutants // batch.groups)
    index = starts[:, None, None] + window.left
    full.scatter_add_(2, (index + torch.arange(window.width, device=diff.device)).expand_as(diff), diff)
    return full.narrow(2, window.left, window.length).reshape(batch.mutants, *window.lead, window.length)


def _one(value: int | Sequence[int]) -> int:
    """A pooling parameter given as an int or a one-element tuple."""
    return value if isinstance(value, int) else value[0]

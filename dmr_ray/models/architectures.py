"""Built-in architectures, reachable as ``dmr_ray.models.architectures:<name>``.

Every architecture takes one-hot ``float32 [batch, 4, L]`` and is split into

* ``body``: an ``nn.Sequential`` of *local* blocks: output position ``j`` of a block
  depends only on a fixed window of its input positions (convolutions, pointwise
  activations, batch norm in eval mode, max pooling, dropout, residual adds);
* ``head``: everything after the body (flatten + dense layers, global pooling, output
  convolutions), recomputed in full for every input.

``forward(x) == head(body(x))``. The class attribute ``fast_ism_layout = "body_head"``
declares this contract so that a receptive-field fast ISM path can cache the body
activations of a reference and recompute only the window a point mutation changes.
``input_length`` is the one input length the model accepts, or ``None`` for any length.

Names
-----
small_cnn
    The Deep MR simulation's ``CountsRegressor`` (valid convolutions, as the original);
    ``heads="separate"`` gives each task its own dense tower (:class:`TaskTowers`).
pooled_cnn
    Convolutions, then the mean and the max over positions (translation invariant, like a
    motif's occupancy), then dense layers.
bpnet
    BPNet-style dilated residual CNN with a profile and a count head ("same" padding).
deepsea
    DeepSEA (2015) layout: three valid convolutions with max pooling and dropout, a dense
    layer and sigmoid outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from dmr_ray.errors import InputError

ALPHABET_SIZE = 4

HEADS = ("shared", "separate")
"""``SmallCNN`` head layouts: one dense stack for all tasks, or one tower per task."""


class SmallCNN(nn.Module):
    """Small convolutional regressor (Deep MR simulation ``CountsRegressor``).

    Layer list::

        body[i], i < n_conv:  Conv1d(4 or filters -> filters, kernel, padding 0)
                              BatchNorm1d(filters), ReLU, [Dropout(conv_dropout)]
        head, heads="shared":   Flatten
                                [Linear(-> hidden), ReLU, [Dropout(dropout)]] x n_dense
                                Linear(hidden -> n_tasks)
        head, heads="separate": TaskTowers: per task t, Flatten
                                [Linear(-> hidden), ReLU, [Dropout(dropout)]] x n_dense
                                Linear(hidden -> 1); the n_tasks columns concatenated

    With shared heads every task reads the same hidden dense units, so a network trained on
    correlated tasks can route one task's input features into another's prediction through
    them; separate towers share only the convolutions.

    Output position ``j`` of ``body`` sees input positions ``j .. j + n_conv*(kernel-1)``;
    the body output has ``length - n_conv*(kernel-1)`` positions. Output: ``[batch, n_tasks]``.

    Parameters
    ----------
    length
        Input length (the only one accepted: the flatten fixes it).
    filters, kernel
        Channels and width of every convolution.
    n_conv, n_dense
        Number of convolution blocks (>= 1) and hidden dense layers (>= 0).
    hidden
        Width of the hidden dense layers.
    n_tasks
        Number of outputs.
    dropout, conv_dropout
        Dropout probability after each hidden dense ReLU / each convolution block
        (0 adds no layer). Needed for MC dropout.
    heads
        ``"shared"`` (one dense stack with ``n_tasks`` outputs; the original layout) or
        ``"separate"`` (one dense tower per task, :class:`TaskTowers`).

    Raises
    ------
    InputError
        A bad option (naming it).
    """

    fast_ism_layout: ClassVar[str] = "body_head"

    def __init__(
        self,
        length: int = 100,
        filters: int = 15,
        kernel: int = 7,
        n_conv: int = 3,
        n_dense: int = 2,
        hidden: int = 30,
        n_tasks: int = 2,
        dropout: float = 0.0,
        conv_dropout: float = 0.0,
        heads: str = "shared",
    ):
        super().__init__()
        _require(n_conv >= 1 and n_dense >= 0, f"need n_conv >= 1 and n_dense >= 0, got {n_conv}, {n_dense}")
        _require(heads in HEADS, f"heads: must be one of {list(HEADS)}, got {heads!r}")
        self.input_length = length
        self.body = nn.Sequential(
            *(
                conv_block(ALPHABET_SIZE if i == 0 else filters, filters, kernel, batch_norm=True, dropout=conv_dropout)
                for i in range(n_conv)
            )
        )
        out_length = _valid_length(length, [kernel] * n_conv, [1] * n_conv)
        self.head: nn.Module
        if heads == "separate":
            self.head = TaskTowers(filters * out_length, [hidden] * n_dense, n_tasks, dropout)
        else:
            self.head = nn.Sequential(
                nn.Flatten(), *dense_stack(filters * out_length, [hidden] * n_dense, n_tasks, dropout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, 4, length]`` one-hot -> ``[batch, n_tasks]``."""
        return self.head(self.body(x))


class PooledCNN(nn.Module):
    """Convolutions summarised over positions, then dense layers.

    Layer list::

        body:  Conv1d(4 -> filters, kernel, padding 0), ReLU, Conv1d(filters -> filters, 1), ReLU
        head:  concat(mean over positions, max over positions)  -> [batch, 2 * filters]
               [Linear(-> hidden), ReLU] x n_dense, Linear(hidden -> n_tasks)

    A motif's occupancy is a sum over the windows of a sequence; ``small_cnn``'s dense layer
    over every position must learn that position by position, this network has it built in.
    On the Deep MR simulation it learns the local slope within 10 % of the truth for more pair
    sequences than ``small_cnn`` (docs/experiments.md).

    Parameters
    ----------
    length
        Input length (at least ``kernel``).
    filters, kernel
        Channels of both convolutions and the first one's width.
    n_dense, hidden
        Hidden dense layers (>= 0) and their width.
    n_tasks
        Outputs.
    """

    fast_ism_layout: ClassVar[str] = "body_head"

    def __init__(
        self,
        length: int = 100,
        filters: int = 64,
        kernel: int = 11,
        n_dense: int = 2,
        hidden: int = 64,
        n_tasks: int = 2,
    ):
        super().__init__()
        _require(n_dense >= 0, f"need n_dense >= 0, got {n_dense}")
        _valid_length(length, [kernel], [1])
        self.input_length = length
        self.body = nn.Sequential(
            nn.Conv1d(ALPHABET_SIZE, filters, kernel), nn.ReLU(), nn.Conv1d(filters, filters, 1), nn.ReLU()
        )
        self.head = nn.Sequential(MeanMaxPool(), *dense_stack(2 * filters, [hidden] * n_dense, n_tasks, 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, 4, length]`` one-hot -> ``[batch, n_tasks]``."""
        return self.head(self.body(x))


class MeanMaxPool(nn.Module):
    """``[batch, C, L] -> [batch, 2C]``: the mean over positions, then the max, per channel."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)


class TaskTowers(nn.Module):
    """One dense tower per task on a shared body output.

    For body output ``h`` ``[batch, C, L]`` and task ``t`` (towers built in task order)::

        out[:, t] = tower_t(h),  tower_t = Flatten, [Linear, ReLU, [Dropout]] per width, Linear(-> 1)

    so task ``t`` reads only ``h`` and tower ``t``'s parameters. Each tower flattens ``h``
    itself, so that every flatten feeds a single ``nn.Linear`` (the fast ISM path folds such
    a pair into one incremental boundary).

    Parameters
    ----------
    in_features
        ``C * L`` of the body output.
    widths
        Hidden widths of every tower.
    n_tasks
        Number of towers (>= 1).
    dropout
        Dropout probability after each hidden ReLU (0 adds no layer).
    """

    def __init__(self, in_features: int, widths: Sequence[int], n_tasks: int, dropout: float):
        super().__init__()
        _require(n_tasks >= 1, f"n_tasks: need at least one task for separate heads, got {n_tasks}")
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Flatten(), *dense_stack(in_features, widths, 1, dropout)) for _ in range(n_tasks)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[batch, C, L]`` body output -> ``[batch, n_tasks]``."""
        return torch.cat([tower(h) for tower in self.towers], dim=1)


class DilatedResidual(nn.Module):
    """``x + ReLU(Conv1d(x))`` with a kernel-3 convolution of the given dilation ("same" padding).

    Output position ``j`` sees input positions ``j - dilation .. j + dilation``.
    """

    def __init__(self, filters: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(filters, filters, 3, padding=dilation, dilation=dilation)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update of ``x`` (``[batch, filters, L]``)."""
        return x + self.act(self.conv(x))


class BPNetHeads(nn.Module):
    """BPNet's profile and count heads.

    * ``profile``: Conv1d(filters -> n_tasks*strands, profile_kernel, "same" padding), cropped
      by ``trim`` positions on each side -> ``[batch, n_tasks, strands, L - 2*trim]``.
    * ``counts``: mean of the body output over the same cropped positions, then
      Linear(filters -> n_tasks*strands) -> ``[batch, n_tasks, strands]`` (log counts).
    """

    def __init__(self, filters: int, n_tasks: int, strands: int, profile_kernel: int, trim: int):
        super().__init__()
        self.shape = (n_tasks, strands)
        self.trim = trim
        self.profile = nn.Conv1d(filters, n_tasks * strands, profile_kernel, padding=profile_kernel // 2)
        self.counts = nn.Linear(filters, n_tasks * strands)

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[batch, filters, L]`` body output -> ``{"profile": ..., "counts": ...}``."""
        kept = slice(self.trim, h.shape[-1] - self.trim)
        profile = self.profile(h)[:, :, kept].unflatten(1, self.shape)
        counts = self.counts(h[:, :, kept].mean(dim=-1)).unflatten(1, self.shape)
        return {"profile": profile, "counts": counts}


class BPNet(nn.Module):
    """BPNet-style dilated residual CNN (bpnet-lite layout, "same" padding, no batch norm).

    Layer list::

        body[0]:              Conv1d(4 -> filters, 21, padding 10), ReLU
        body[i], 1..n_layers: DilatedResidual(filters, dilation 2**i)   # x + ReLU(conv_k3(x))
        head:                 BPNetHeads(profile conv k=profile_kernel, count Linear)

    Outputs ``{"profile": [batch, n_tasks, strands, L - 2*trim],
    "counts": [batch, n_tasks, strands]}``. Any input length above ``2*trim`` works.
    The body's receptive field is ``21 + 2*(2**(n_layers+1) - 2)`` positions (2065 for 9
    layers, 1041 for 8); the profile convolution adds ``profile_kernel - 1``.

    Parameters
    ----------
    filters
        Channels of every body convolution.
    n_layers
        Number of dilated residual layers (``bpnet9``: 9; bpnet-lite: 8).
    n_tasks, strands
        Profile/count outputs per task and strands per task.
    profile_kernel
        Width (odd) of the profile convolution.
    trim
        Positions cropped from each end of the profile and of the count pooling.
    """

    fast_ism_layout: ClassVar[str] = "body_head"
    input_length: ClassVar[int | None] = None

    def __init__(
        self,
        filters: int = 64,
        n_layers: int = 9,
        n_tasks: int = 4,
        strands: int = 2,
        profile_kernel: int = 75,
        trim: int = 0,
    ):
        super().__init__()
        _require(profile_kernel % 2 == 1, f"profile_kernel must be odd for 'same' padding, got {profile_kernel}")
        _require(n_layers >= 0 and trim >= 0, f"need n_layers >= 0 and trim >= 0, got {n_layers}, {trim}")
        self.body = nn.Sequential(
            conv_block(ALPHABET_SIZE, filters, 21, padding=10),
            *(DilatedResidual(filters, 2**i) for i in range(1, n_layers + 1)),
        )
        self.head = BPNetHeads(filters, n_tasks, strands, profile_kernel, trim)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[batch, 4, L]`` one-hot -> ``{"profile", "counts"}``."""
        return self.head(self.body(x))


class DeepSEA(nn.Module):
    """DeepSEA-style CNN (Zhou & Troyanskaya 2015 layout; sizes configurable).

    Layer list (defaults in brackets)::

        body[i]:  Conv1d(c_{i-1} -> channels[i], kernel, padding 0), ReLU,
                  MaxPool1d(pool) [all but the last block], Dropout(dropout[i])
                  [channels 320/480/960, kernel 8, pool 4, dropout .2/.2/.5]
        head:     Flatten, Linear(-> hidden [925]), ReLU, Linear(hidden -> n_tasks [919]), Sigmoid

    Output: ``[batch, n_tasks]`` probabilities. The flatten fixes the input length.

    Parameters
    ----------
    length
        Input length (the only one accepted).
    channels
        Channels of each convolution block.
    kernel, pool
        Convolution width and max-pool size/stride.
    dropout
        Dropout probability after each block: one value for all or one per block.
    hidden
        Width of the dense layer.
    n_tasks
        Number of sigmoid outputs.
    """

    fast_ism_layout: ClassVar[str] = "body_head"

    def __init__(
        self,
        length: int = 1000,
        channels: Sequence[int] = (320, 480, 960),
        kernel: int = 8,
        pool: int = 4,
        dropout: float | Sequence[float] = (0.2, 0.2, 0.5),
        hidden: int = 925,
        n_tasks: int = 919,
    ):
        super().__init__()
        channels = list(channels)
        rates = [float(dropout)] * len(channels) if isinstance(dropout, int | float) else list(dropout)
        _require(len(channels) >= 1, "need at least one convolution block")
        _require(len(rates) == len(channels), f"dropout has {len(rates)} values for {len(channels)} blocks")
        pools = [pool] * (len(channels) - 1) + [1]
        self.input_length = length
        self.body = nn.Sequential(
            *(
                conv_block(c_in, c_out, kernel, pool=p, dropout=rate)
                for c_in, c_out, p, rate in zip([ALPHABET_SIZE, *channels[:-1]], channels, pools, rates, strict=True)
            )
        )
        out_length = _valid_length(length, [kernel] * len(channels), pools)
        dense = dense_stack(channels[-1] * out_length, [hidden], n_tasks, 0.0)
        self.head = nn.Sequential(nn.Flatten(), *dense, nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, 4, length]`` one-hot -> ``[batch, n_tasks]`` probabilities."""
        return self.head(self.body(x))


def conv_block(
    c_in: int,
    c_out: int,
    kernel: int,
    *,
    padding: int = 0,
    batch_norm: bool = False,
    pool: int = 1,
    dropout: float = 0.0,
) -> nn.Sequential:
    """``Conv1d, [BatchNorm1d], ReLU, [MaxPool1d(pool)], [Dropout(dropout)]``."""
    layers: list[nn.Module] = [nn.Conv1d(c_in, c_out, kernel, padding=padding)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(c_out))
    layers.append(nn.ReLU())
    if pool > 1:
        layers.append(nn.MaxPool1d(pool))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def dense_stack(in_features: int, widths: Sequence[int], n_out: int, dropout: float) -> list[nn.Module]:
    """``[Linear, ReLU, [Dropout]]`` per hidden width, then ``Linear(-> n_out)``."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, n_out))
    return layers


def _valid_length(length: int, kernels: Sequence[int], pools: Sequence[int]) -> int:
    """Length left after valid convolutions each followed by a max pool."""
    out = length
    for kernel, pool in zip(kernels, pools, strict=True):
        out = (out - kernel + 1) // pool
    _require(out >= 1, f"input length {length} is too short for the convolution stack")
    return out


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


small_cnn = SmallCNN
pooled_cnn = PooledCNN
bpnet = BPNet
deepsea = DeepSEA

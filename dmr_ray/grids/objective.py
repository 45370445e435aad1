"""What a GRIDS search minimises: one target gene's predicted expression, down or up (grids.md §3).

The per-cell loss is the plain prediction ``ℓ_c = ŷ[c, g]`` for ``direction="down"`` (peaks are
removed: ``p = 0``) and ``ℓ_c = −ŷ[c, g]`` for ``direction="up"`` (peaks are opened: ``p = 1``).
A population's loss is the mean of ``ℓ_c`` over its cells; sums over cell shards add up to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError

Direction = Literal["down", "up"]


@dataclass(frozen=True)
class Objective:
    """The target of a search: gene column ``gene`` of the surrogate's output, pushed ``direction``.

    Attributes
    ----------
    gene
        Column of the target gene in the surrogate's output ``[cells, n_genes]``.
    direction
        ``"down"`` removes peaks (``p = 0``) to lower the gene; ``"up"`` opens them (``p = 1``) to raise it.
    """

    gene: int
    direction: Direction = "down"

    def __post_init__(self) -> None:
        if not is_int(self.gene) or self.gene < 0:
            raise InputError(f"objective gene must be a column index >= 0, got {self.gene!r}")
        if self.direction not in ("down", "up"):
            raise InputError(f"objective direction must be 'down' or 'up', got {self.direction!r}")

    @property
    def p(self) -> float:
        """The value the selected peaks are set to: 0 (removed) for down, 1 (opened) for up."""
        return 0.0 if self.direction == "down" else 1.0

    @property
    def sign(self) -> float:
        """+1 for down, −1 for up: ``ℓ_c = sign · ŷ[c, gene]``."""
        return 1.0 if self.direction == "down" else -1.0

    def per_cell(self, prediction: torch.Tensor) -> torch.Tensor:
        """``ŷ [cells, n_genes]`` → ``ℓ [cells]``, the loss of every cell (differentiable)."""
        if prediction.ndim != 2 or not 0 <= self.gene < prediction.shape[1]:
            raise InputError(f"objective gene {self.gene} is not a column of predictions {tuple(prediction.shape)}")
        return self.sign * prediction[:, self.gene]

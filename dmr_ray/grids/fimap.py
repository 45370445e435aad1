"""FIMAP's mask network, adapted to global subset perturbation (grids.md §12; an adaptation).

FIMAP (Chapman-Rounds et al., AAAI 2021) trains a network g(x) that outputs a minimal
perturbation flipping a black box. Here g maps a cell's accessibility to a mask
``m(x_c) ∈ [0, 1]^m`` over the candidate peaks (four ReLU layers of 100 units, sigmoid output;
a deterministic relaxation instead of FIMAP's Gumbel layer) and is trained on

    mean_c ℓ_c(x_c ⊙ (1 − m) + p·m) + λ · mean_c ‖m(x_c)‖₁

with Adam on shuffled minibatches. The surrogate is frozen: gradients are taken with respect to
g's parameters only, so the surrogate's ``.grad`` is never touched. Choosing λ and the global
subset is :func:`dmr_ray.grids.baselines.fimap`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from dmr_ray.grids.objective import Objective


class MaskNetwork(nn.Module):
    """g: ``x [cells, n_peaks]`` → mask ``m [cells, n_candidates]`` in [0, 1].

    Parameters
    ----------
    n_peaks, n_candidates
        Input width and mask width.
    hidden, depth
        ``depth`` Linear → ReLU layers of ``hidden`` units (FIMAP: 4 × 100).
    """

    def __init__(self, n_peaks: int, n_candidates: int, *, hidden: int = 100, depth: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_peaks
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers, nn.Linear(width, n_candidates))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


@dataclass(frozen=True)
class MaskFit:
    """One fit of the mask network at a fixed λ.

    Attributes
    ----------
    penalty
        λ.
    mean_mask
        ``float64 [n_candidates]``: ``mean_c m(x_c)`` over all cells after training.
    mass
        ``mean_c ‖m(x_c)‖₁`` = ``mean_mask.sum()``.
    """

    penalty: float
    mean_mask: np.ndarray

    @property
    def mass(self) -> float:
        return float(self.mean_mask.sum())


def fit_mask(
    model: nn.Module,
    x: sp.csr_matrix,
    objective: Objective,
    candidates: np.ndarray,
    penalty: float,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    hidden: int = 100,
    depth: int = 4,
) -> MaskFit:
    """Train g on ``x [cells, n_peaks]`` with penalty λ = ``penalty``; same ``seed`` → same init and batches.

    ``candidates`` (``int64 [m]``) are the peaks the mask may set to p; the others keep ``x``.
    """
    model.eval()
    cand = torch.as_tensor(candidates, dtype=torch.int64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MaskNetwork(x.shape[1], len(candidates), hidden=hidden, depth=depth)
    params = list(net.parameters())
    optimiser = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(x.shape[0])
        for start in range(0, len(order), batch_size):
            dense = torch.as_tensor(x[np.sort(order[start : start + batch_size])].toarray(), dtype=torch.float32)
            mask = net(dense)
            perturbed = dense.clone()
            perturbed[:, cand] = dense[:, cand] * (1 - mask) + objective.p * mask
            loss = objective.per_cell(model(perturbed)).mean() + penalty * mask.sum(dim=1).mean()
            for param, grad in zip(params, torch.autograd.grad(loss, params), strict=True):
                param.grad = grad
            optimiser.step()
    total = torch.zeros(len(candidates), dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            dense = torch.as_tensor(x[start : start + batch_size].toarray(), dtype=torch.float32)
            total += net(dense).double().sum(dim=0)
    return MaskFit(penalty=float(penalty), mean_mask=(total / x.shape[0]).numpy())

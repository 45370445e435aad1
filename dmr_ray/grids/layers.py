"""Building blocks of the GRIDS surrogate (grids.md §2), written for this project.

* :class:`ChromosomeEncoder`: per-peak, per-state embeddings summed per chromosome, then a
  small network per chromosome block and a projection to the latent space.
* :class:`AffineMixture`: the latent translator, a stack of affine maps whose matrices are
  gated mixtures of a bank of experts.
* :func:`dense_stack`: Linear → BatchNorm → PReLU layers (the RNA autoencoder's body).
"""

from __future__ import annotations

import torch
from torch import nn


def dense_stack(sizes: list[int]) -> nn.Sequential:
    """``Linear(sizes[i], sizes[i+1]) → BatchNorm1d → PReLU`` for each consecutive pair."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.PReLU()]
    return nn.Sequential(*layers)


class ChromosomeEncoder(nn.Module):
    """ATAC encoder: ``x [batch, n_peaks]`` → ``z [batch, latent_dim]``.

    Peak j in state s has embedding ``E[j, s]`` (``[n_peaks, 2, embed_dim]``, N(0, 1) init).
    Chromosome c sums its peaks: ``h_c = Σ_{j∈c} E[j, 0] + x_j·(E[j, 1] − E[j, 0])``, which is
    the embedding lookup for binary x and linear in x (so gradients and relaxed inputs are
    defined, and the sum never forms a ``[batch, n_peaks, embed_dim]`` tensor). Each block then
    runs BatchNorm → PReLU → Linear(embed_dim → block_dim) → BatchNorm → PReLU with its own
    weights; the blocks are concatenated and projected by two linear layers.

    Parameters
    ----------
    peak_block
        ``int64 [n_peaks]``: the chromosome block of every peak, in ``0 … n_blocks − 1``.
    """

    def __init__(self, peak_block: torch.Tensor, n_blocks: int, embed_dim: int, block_dim: int, latent_dim: int):
        super().__init__()
        self.n_blocks, self.embed_dim, self.block_dim = n_blocks, embed_dim, block_dim
        self.embedding = nn.Parameter(torch.randn(len(peak_block), 2, embed_dim))
        self.peak_block: torch.Tensor
        self.register_buffer("peak_block", peak_block.to(torch.int64))
        self.block_members = [torch.nonzero(peak_block == c).ravel() for c in range(n_blocks)]
        self.norm_in = nn.BatchNorm1d(n_blocks * embed_dim)
        self.act_in = nn.PReLU()
        self.block_weight = nn.Parameter(torch.randn(n_blocks, embed_dim, block_dim) / embed_dim**0.5)
        self.block_bias = nn.Parameter(torch.zeros(n_blocks, block_dim))
        self.norm_out = nn.BatchNorm1d(n_blocks * block_dim)
        self.act_out = nn.PReLU()
        self.project = nn.Sequential(nn.Linear(n_blocks * block_dim, latent_dim), nn.Linear(latent_dim, latent_dim))

    def chromosome_sums(self, x: torch.Tensor) -> torch.Tensor:
        """``x [batch, n_peaks]`` → ``h [batch, n_blocks, embed_dim]``, the per-chromosome sums."""
        closed = self.embedding[:, 0]
        delta = self.embedding[:, 1] - closed
        base = torch.zeros(self.n_blocks, self.embed_dim, dtype=closed.dtype, device=closed.device)
        base = base.index_add(0, self.peak_block, closed)
        opened = [x[:, members] @ delta[members] for members in self.block_members]
        return base + torch.stack(opened, dim=1)

    def blocks(self, sums: torch.Tensor) -> torch.Tensor:
        """``h [batch, n_blocks, embed_dim]`` → ``z [batch, latent_dim]`` (everything after the sums)."""
        batch = sums.shape[0]
        h = self.act_in(self.norm_in(sums.reshape(batch, -1))).reshape(batch, self.n_blocks, self.embed_dim)
        h = torch.einsum("bce,ceh->bch", h, self.block_weight) + self.block_bias
        return self.project(self.act_out(self.norm_out(h.reshape(batch, -1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [batch, n_peaks]`` (float, 0/1 or relaxed) → ``z [batch, latent_dim]``."""
        return self.blocks(self.chromosome_sums(x))


class AffineMixture(nn.Module):
    """Latent translator ``z [batch, dim]`` → ``[batch, dim]``.

    A gate ``softmax(Linear(dim → gate_hidden) → ReLU → Linear(gate_hidden → n_experts))`` of
    the input weighs, in every layer l, a bank of matrices and offsets:
    ``h ← (Σ_e gate_e A[l, e]) h + Σ_e gate_e c[l, e]``, with PReLU between layers (not after the
    last). Matrices start near the identity so an untrained translator passes z through.
    """

    def __init__(self, dim: int, n_experts: int, n_layers: int, gate_hidden: int):
        super().__init__()
        eye = torch.eye(dim).expand(n_layers, n_experts, dim, dim)
        self.matrices = nn.Parameter(eye + 0.1 * torch.randn(n_layers, n_experts, dim, dim) / dim**0.5)
        self.offsets = nn.Parameter(torch.zeros(n_layers, n_experts, dim))
        self.gate = nn.Sequential(nn.Linear(dim, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, n_experts))
        self.acts = nn.ModuleList(nn.PReLU() for _ in range(n_layers - 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        gate = torch.softmax(self.gate(z), dim=-1)
        h = z
        for layer in range(self.matrices.shape[0]):
            matrix = torch.einsum("be,eij->bij", gate, self.matrices[layer])
            h = torch.einsum("bij,bj->bi", matrix, h) + gate @ self.offsets[layer]
            if layer < len(self.acts):
                h = self.acts[layer](h)
        return h

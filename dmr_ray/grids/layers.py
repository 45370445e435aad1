"""Building blocks of the GRIDS surrogate (grids.md §2), written for this project.

* :class:`ChromosomeEncoder`: per-peak, per-state embeddings summed per chromosome, then a
  small network per chromosome block and a projection to the latent space.
* :class:`AffineMixture`: the latent translator, a stack of affine maps whose matrices are
  gated mixtures of a bank of experts.
* :func:`dense_stack`: Linear → BatchNorm → PReLU layers (the RNA autoencoder's body).
* :class:`ChromosomeDecoder` and :class:`ConditionalDiscriminator`: used only by the unpaired
  training (:mod:`dmr_ray.grids.unpaired`), never saved with the surrogate.
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
        self.order, self.run_sizes, self.run_block = _block_runs(self.peak_block, n_blocks)
        self.norm_in = nn.BatchNorm1d(n_blocks * embed_dim)
        self.act_in = nn.PReLU()
        self.block_weight = nn.Parameter(torch.randn(n_blocks, embed_dim, block_dim) / embed_dim**0.5)
        self.block_bias = nn.Parameter(torch.zeros(n_blocks, block_dim))
        self.norm_out = nn.BatchNorm1d(n_blocks * block_dim)
        self.act_out = nn.PReLU()
        self.project = nn.Sequential(nn.Linear(n_blocks * block_dim, latent_dim), nn.Linear(latent_dim, latent_dim))

    def chromosome_sums(self, x: torch.Tensor) -> torch.Tensor:
        """``x [batch, n_peaks]`` → ``h [batch, n_blocks, embed_dim]``, the per-chromosome sums.

        One matrix product per run of consecutive peaks of the same block, on views of ``x`` (no
        copy of ``x`` when the peaks come in a few runs, as in a BED file sorted by chromosome;
        otherwise one gather into block order first), so the cost is one pass over ``x``.
        """
        closed, opened = self.embedding.unbind(dim=1)  # one stack in backward, not a zeroed copy per index
        delta = opened - closed
        if self.order is not None:
            x, closed, delta = x[:, self.order], closed[self.order], delta[self.order]
        split = self.run_sizes
        runs = zip(torch.split(x, split, dim=1), torch.split(closed, split), torch.split(delta, split), strict=True)
        per_run = torch.stack([x_run @ d_run + c_run.sum(dim=0) for x_run, c_run, d_run in runs], dim=1)
        return per_run.new_zeros(x.shape[0], self.n_blocks, self.embed_dim).index_add(1, self.run_block, per_run)

    def blocks(self, sums: torch.Tensor) -> torch.Tensor:
        """``h [batch, n_blocks, embed_dim]`` → ``z [batch, latent_dim]`` (everything after the sums)."""
        batch = sums.shape[0]
        h = self.act_in(self.norm_in(sums.reshape(batch, -1))).reshape(batch, self.n_blocks, self.embed_dim)
        h = torch.einsum("bce,ceh->bch", h, self.block_weight) + self.block_bias
        return self.project(self.act_out(self.norm_out(h.reshape(batch, -1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [batch, n_peaks]`` (float, 0/1 or relaxed) → ``z [batch, latent_dim]``."""
        return self.blocks(self.chromosome_sums(x))


def _block_runs(peak_block: torch.Tensor, n_blocks: int) -> tuple[torch.Tensor | None, list[int], torch.Tensor]:
    """How :meth:`ChromosomeEncoder.chromosome_sums` splits the peaks into runs of one block.

    Returns ``order`` (``None`` when the peaks' own order has at most ``2·n_blocks`` runs, else
    ``int64 [n_peaks]`` sorting them by block, stably), the length of each run in that order and
    ``int64 [n_runs]`` the block of each run.
    """
    order, block = None, peak_block
    if int((block[1:] != block[:-1]).sum()) + 1 > 2 * n_blocks:
        order = torch.argsort(block, stable=True)
        block = block[order]
    starts = torch.cat([torch.tensor([True]), block[1:] != block[:-1]]).nonzero().ravel()
    sizes = torch.diff(starts, append=torch.tensor([len(block)]))
    return order, sizes.tolist(), block[starts]


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


class ChromosomeDecoder(nn.Module):
    """ATAC decoder of the unpaired training: ``z [batch, latent_dim]`` → peak logits.

    ``Linear(latent_dim → n_blocks·block_dim) → BatchNorm``, then per chromosome block
    ``Linear(block_dim → embed_dim) → BatchNorm → PReLU``, then each peak's own
    ``Linear(embed_dim → 1)`` on its block's state (grids.md §2). Logits are computed only at the
    requested (cell, peak) entries, so a batch never forms ``[batch, n_peaks]``.

    Parameters
    ----------
    peak_block
        ``int64 [n_peaks]``: the chromosome block of every peak.
    """

    def __init__(self, peak_block: torch.Tensor, n_blocks: int, embed_dim: int, block_dim: int, latent_dim: int):
        super().__init__()
        self.n_blocks, self.embed_dim, self.block_dim = n_blocks, embed_dim, block_dim
        self.peak_block: torch.Tensor
        self.register_buffer("peak_block", peak_block.to(torch.int64))
        self.expand = nn.Sequential(nn.Linear(latent_dim, n_blocks * block_dim), nn.BatchNorm1d(n_blocks * block_dim))
        self.block_weight = nn.Parameter(torch.randn(n_blocks, block_dim, embed_dim) / block_dim**0.5)
        self.block_bias = nn.Parameter(torch.zeros(n_blocks, embed_dim))
        self.norm = nn.BatchNorm1d(n_blocks * embed_dim)
        self.act = nn.PReLU()
        self.peak_weight = nn.Parameter(torch.randn(len(peak_block), embed_dim) / embed_dim**0.5)
        self.peak_bias = nn.Parameter(torch.zeros(len(peak_block)))

    def block_states(self, z: torch.Tensor) -> torch.Tensor:
        """``z [batch, latent_dim]`` → ``[batch, n_blocks, embed_dim]``, the state each block's peaks read."""
        batch = z.shape[0]
        h = self.expand(z).reshape(batch, self.n_blocks, self.block_dim)
        h = torch.einsum("bcd,cde->bce", h, self.block_weight) + self.block_bias
        return self.act(self.norm(h.reshape(batch, -1))).reshape(batch, self.n_blocks, self.embed_dim)

    def forward(self, z: torch.Tensor, cells: torch.Tensor, peaks: torch.Tensor) -> torch.Tensor:
        """Logits ``[n_entries]`` of peak ``peaks[i]`` in cell ``cells[i]`` (a row of ``z``).

        ``cells`` and ``peaks`` are ``int64 [n_entries]``.
        """
        state = self.block_states(z)[cells, self.peak_block[peaks]]
        return (state * self.peak_weight[peaks]).sum(dim=-1) + self.peak_bias[peaks]


class ConditionalDiscriminator(nn.Module):
    """Cell-type-conditional discriminator of latent codes (grids.md §2).

    ``Linear(dim → dim) → PReLU → Dropout(0.1) → Linear(dim → hidden) → PReLU → Linear(hidden →
    n_types)``; the logit of each cell's own type is the output, so every type has its own
    real-versus-translated decision.
    """

    def __init__(self, dim: int, n_types: int, hidden: int = 10, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim),
            nn.PReLU(),
            nn.Dropout(dropout),
            nn.Linear(dim, hidden),
            nn.PReLU(),
            nn.Linear(hidden, n_types),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``z [batch, dim]``, ``labels int64 [batch]`` → logits ``[batch]`` of each cell's own type."""
        return self.net(z).gather(1, labels[:, None]).squeeze(1)

"""The cell population a GRIDS search runs on: losses, transition sums and exact swap scores.

A selection ``r`` (``int64 [L]`` peak indices, repeats allowed) perturbs every cell:
``x'_c = x_c∖r`` sets the peaks of ``r`` to ``p`` (grids.md §1). For a per-cell loss ``ℓ_c``,
the first-order change of adding peak j is ``d_cj = (p − x_cj)·∂ℓ_c/∂x'_cj`` (x the ORIGINAL
input, the gradient at the CURRENT perturbed input). Populations return **sums** over their
cells, never means, so sums over cell shards add up exactly (grids.md §13.6):

* :class:`TransitionSums` ``add_j = Σ_c d_cj`` and ``sub_i = Σ_c d_{c,r_i}``; its
  :meth:`~TransitionSums.matrix` is the transition matrix T of grids.md §4.
* :class:`Population`, the protocol a search drives: :class:`LocalPopulation` is the fast path
  for a :class:`~dmr_ray.grids.surrogate.Surrogate`; :class:`AutogradPopulation` the plain
  autograd reference for any differentiable per-cell loss on dense inputs.

**The fast path.** The surrogate's first stage is linear in x: chromosome c of cell b sums
``h_bc = base_c + Σ_{j∈c} x_bj·Δ_j`` (``Δ_j = E[j, 1] − E[j, 0]``). So ``∂ℓ_b/∂x'_bj =
⟨g_{b,c(j)}, Δ_j⟩`` with ``g = ∂ℓ/∂h`` (one backward of the small network after the sums), and
``add = p·⟨Σ_b g_{b,c(j)}, Δ_j⟩ − ⟨(X_cᵀ g_c)_j, Δ_j⟩``: one sparse product per chromosome. An
exact swap changes at most two chromosome sums of a cell, and none where the swapped peaks
already equal ``p``; only the changed (candidate, cell) rows run through the post-sum network,
and only the target gene's column of the RNA decoder's last layer is computed.

**Inputs that are not binary.** ATAC counts (or any finite real accessibility) are accepted:
the encoder is linear in x for every x, so the formulas above are the exact first-order changes
and the swap scores are exact for the model as it stands. For binary x, ``d_cj`` equals the
original's embedding formula ``⟨G, E_j[p] − E_j[x_cj]⟩``; a surrogate trained on binary peaks
extrapolates linearly on counts, which is the caller's choice (:func:`read_multiome
<dmr_ray.grids.data.read_multiome>` binarises).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.grids.layers import ChromosomeEncoder
from dmr_ray.grids.objective import Objective
from dmr_ray.grids.perturb import perturb
from dmr_ray.grids.surrogate import Surrogate

Selection = torch.Tensor | np.ndarray
"""``int64 [L]`` peak indices: a torch tensor or a numpy array."""


def as_peaks(peaks: Selection, n_peaks: int, what: str = "selection") -> np.ndarray:
    """``peaks`` as ``int64 [m]`` numpy indices, checked to lie in ``[0, n_peaks)``.

    Raises
    ------
    InputError
        If ``peaks`` is not one-dimensional, not integers, or out of range.
    """
    array = np.asarray(peaks.detach().cpu() if isinstance(peaks, torch.Tensor) else peaks)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise InputError(f"{what} must be a 1-d array of integer peak indices, got shape {array.shape} {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= n_peaks):
        bad = array[(array < 0) | (array >= n_peaks)]
        raise InputError(f"{what} has peak indices outside [0, {n_peaks}): {bad[:5].tolist()}")
    return array


def _check_row(row: int, length: int) -> None:
    if not is_int(row) or not 0 <= row < length:
        raise InputError(f"row must be an integer in [0, {length}), got {row!r}")


def _check_candidates(candidates: Selection, n_peaks: int) -> np.ndarray:
    array = as_peaks(candidates, n_peaks, "candidates")
    if array.size == 0:
        raise InputError("candidates must hold at least one peak (k >= 1)")
    return array


@dataclass(frozen=True)
class TransitionSums:
    """First-order changes summed over a population's cells, at a selection ``r``.

    Attributes
    ----------
    add
        ``float64 [n_peaks]``: ``add_j = Σ_c d_cj``, the change from adding peak j to the perturbation.
    sub
        ``float64 [L]``: ``sub_i = Σ_c d_{c,r_i}`` (``= add[r]``); restoring ``r_i`` changes the loss by ``−sub_i``.
    n_cells
        How many cells were summed.
    """

    add: np.ndarray
    sub: np.ndarray
    n_cells: int

    def __add__(self, other: TransitionSums) -> TransitionSums:
        """Sums over two disjoint cell shards at the same ``r``."""
        if not isinstance(other, TransitionSums):
            return NotImplemented
        if self.add.shape != other.add.shape or self.sub.shape != other.sub.shape:
            raise InputError(
                f"transition sums of different shapes cannot be added: {self.add.shape}/{self.sub.shape} "
                f"and {other.add.shape}/{other.sub.shape}"
            )
        return TransitionSums(self.add + other.add, self.sub + other.sub, self.n_cells + other.n_cells)

    def __radd__(self, other: object) -> TransitionSums:
        """Lets ``sum(parts)`` start from 0."""
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def _checked(self, r: Selection) -> np.ndarray:
        if self.n_cells < 1:
            raise InputError("transition sums over zero cells have no mean")
        r = as_peaks(r, len(self.add))
        if len(r) != len(self.sub):
            raise InputError(f"selection has {len(r)} peaks but the sums were taken at {len(self.sub)}")
        return r

    def row(self, r: Selection, i: int) -> np.ndarray:
        """``float64 [n_peaks]``: row ``i`` of :meth:`matrix` without building the others."""
        r = self._checked(r)
        _check_row(i, len(r))
        t = np.where(_members(r, len(self.add)), 0.0, self.add) - self.sub[i]
        t[r[i]] = 0.0
        return t / self.n_cells

    def matrix(self, r: Selection) -> np.ndarray:
        """``float64 [L, n_peaks]``: ``T[i, j] = (1[j∉r]·add_j − sub_i)/n_cells``, ``T[i, r_i] = 0``.

        ``T[i, j]`` is the first-order predicted change of the mean loss (new − old) when ``r_i``
        is replaced by ``j`` (grids.md §4). Columns ``j ∈ r∖{r_i}`` are not masked, as in the original.
        """
        r = self._checked(r)
        t = np.where(_members(r, len(self.add)), 0.0, self.add)[None, :] - self.sub[:, None]
        t[np.arange(len(r)), r] = 0.0
        return t / self.n_cells


def _members(r: np.ndarray, n_peaks: int) -> np.ndarray:
    """``bool [n_peaks]``: 1[j ∈ r]."""
    inside = np.zeros(n_peaks, bool)
    inside[r] = True
    return inside


@runtime_checkable
class Population(Protocol):
    """What a GRIDS search needs from a cell population (all values are sums over its cells)."""

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        ...

    @property
    def n_peaks(self) -> int:
        """Number of peaks (input features)."""
        ...

    def loss_sum(self, r: Selection) -> float:
        """``Σ_c ℓ_c(x_c∖r)``."""
        ...

    def transition_sums(self, r: Selection) -> TransitionSums:
        """The first-order changes at ``r`` (see :class:`TransitionSums`)."""
        ...

    def candidate_loss_sums(self, r: Selection, row: int, candidates: Selection) -> np.ndarray:
        """``float64 [k]``: ``Σ_c ℓ_c`` with ``r[row]`` replaced by each candidate in turn."""
        ...


def _swap_flags(r: np.ndarray, row: int, candidates: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray]:
    """What replacing ``r[row]`` by each candidate changes in the perturbed set.

    Returns ``(restore, restore_k, set_k)``: whether ``r[row]`` appears only at ``row`` (so
    it may be restored), and per candidate whether ``r[row]`` is restored (``bool [k]``) and
    whether the candidate is newly set (``bool [k]``: not already in ``r``).
    """
    others = np.delete(r, row)
    restore = bool(r[row] not in others)
    set_k = ~np.isin(candidates, r)
    restore_k = restore & (candidates != r[row])
    return restore, restore_k, set_k


class AutogradPopulation:
    """The plain autograd reference: dense inputs, fresh forward passes, any per-cell loss.

    Parameters
    ----------
    loss
        ``x [n, d] → ℓ [n]``, differentiable; cells must not interact (models in eval mode).
    x
        ``[n_cells, n_peaks]`` dense original inputs (float).
    p
        The value selected peaks are set to.
    batch_size
        Rows per forward pass (cells, or candidate × cell rows).
    """

    def __init__(
        self, loss: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, p: float, *, batch_size: int = 256
    ):
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
            raise InputError("AutogradPopulation needs x as a 2-d floating-point torch tensor [cells, peaks]")
        if not bool(torch.isfinite(x).all()):
            raise InputError("x has non-finite values")
        if not is_int(batch_size) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.loss, self.x, self.p, self.batch_size = loss, x, float(p), batch_size

    @classmethod
    def for_surrogate(
        cls, model: Surrogate, x: sp.spmatrix | sp.sparray | np.ndarray, objective: Objective, *, batch_size: int = 256
    ) -> AutogradPopulation:
        """The reference for a surrogate: densifies ``x`` in the model's dtype; the model goes to eval mode."""
        model.eval()
        dense = x.toarray() if isinstance(x, sp.spmatrix | sp.sparray) else np.asarray(x)
        dtype = next(model.parameters()).dtype
        return cls(lambda v: objective.per_cell(model(v)), torch.as_tensor(dense, dtype=dtype), objective.p,
                   batch_size=batch_size)  # fmt: skip

    @property
    def n_cells(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_peaks(self) -> int:
        return int(self.x.shape[1])

    def subset(self, cells: np.ndarray) -> AutogradPopulation:
        """The population of the cells ``cells`` (``int [m]``)."""
        return AutogradPopulation(self.loss, self.x[torch.as_tensor(cells)], self.p, batch_size=self.batch_size)

    def _losses(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            parts = [self.loss(x[s : s + self.batch_size]) for s in range(0, x.shape[0], self.batch_size)]
        return torch.cat(parts) if parts else x.new_zeros(0)

    def loss_sum(self, r: Selection) -> float:
        r = as_peaks(r, self.n_peaks)
        return float(self._losses(perturb(self.x, r, self.p)).double().sum())

    def transition_sums(self, r: Selection) -> TransitionSums:
        r = as_peaks(r, self.n_peaks)
        add = torch.zeros(self.n_peaks, dtype=torch.float64)
        for s in range(0, self.n_cells, self.batch_size):
            original = self.x[s : s + self.batch_size]
            current = perturb(original, r, self.p).detach().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(self.loss(current).sum(), current)
            add += ((self.p - original) * grad).double().sum(0)
        add_np = add.numpy()
        return TransitionSums(add_np, add_np[r].copy(), self.n_cells)

    def candidate_loss_sums(self, r: Selection, row: int, candidates: Selection) -> np.ndarray:
        r = as_peaks(r, self.n_peaks)
        _check_row(row, len(r))
        candidates = _check_candidates(candidates, self.n_peaks)
        out = np.zeros(len(candidates))
        for i, j in enumerate(candidates):
            swapped = r.copy()
            swapped[row] = j
            out[i] = self.loss_sum(swapped)
        return out


@dataclass(frozen=True)
class _SurrogateParts:
    """What the fast path precomputes once per model: embeddings, blocks and the head."""

    delta: torch.Tensor  # [n_peaks, e], model dtype: Δ_j = E[j, 1] − E[j, 0]
    delta64: np.ndarray  # the same in float64
    base: torch.Tensor  # [B, e]: Σ_{j∈c} E[j, 0]
    block: np.ndarray  # int64 [n_peaks]: chromosome block of every peak
    order: np.ndarray  # int64 [n_peaks]: peaks sorted by block (stable)
    rank: np.ndarray  # int64 [n_peaks]: position of every peak in ``order``
    bounds: np.ndarray  # int64 [B + 1]: block c is order[bounds[c]:bounds[c+1]]
    network: nn.Module  # sums [n, B, e] → hidden [n, rna_hidden[0]]
    gene_weight: torch.Tensor  # [rna_hidden[0]]
    gene_bias: torch.Tensor  # []
    sign: float
    p: float

    @classmethod
    def of(cls, model: Surrogate, objective: Objective) -> _SurrogateParts:
        if not isinstance(model, Surrogate):
            raise InputError(f"LocalPopulation needs a grids Surrogate, got {type(model).__name__}")
        if not 0 <= objective.gene < model.config.n_genes:
            raise InputError(f"objective gene {objective.gene} is not one of the surrogate's {model.config.n_genes}")
        model.eval()
        encoder = model.atac_encoder
        with torch.no_grad():
            closed = encoder.embedding[:, 0].detach()
            delta = (encoder.embedding[:, 1] - closed).detach().contiguous()
            base = torch.zeros(encoder.n_blocks, encoder.embed_dim, dtype=closed.dtype)
            base = base.index_add(0, encoder.peak_block, closed)
        block = encoder.peak_block.numpy().astype(np.int64)
        order = np.argsort(block, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        bounds = np.searchsorted(block[order], np.arange(encoder.n_blocks + 1))
        network = nn.Sequential(_Blocks(encoder), model.atac_to_rna, model.rna_decoder[:-1])
        output = model.rna_output
        return cls(
            delta, delta.double().numpy(), base, block, order, rank, bounds, network,
            output.weight[objective.gene].detach(), output.bias[objective.gene].detach(), objective.sign, objective.p,
        )  # fmt: skip

    def losses(self, sums: torch.Tensor) -> torch.Tensor:
        """``h [n, B, e]`` → ``ℓ [n]``: the target gene's clamped prediction, signed."""
        hidden = self.network(sums)
        return self.sign * (hidden @ self.gene_weight + self.gene_bias).clamp(min=0)


class _Blocks(nn.Module):
    """The encoder after its chromosome sums, as a module."""

    def __init__(self, encoder: ChromosomeEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, sums: torch.Tensor) -> torch.Tensor:
        return self.encoder.blocks(sums)


def _row_view(matrix: sp.csr_matrix, rows: slice) -> sp.csr_matrix:
    """Rows ``rows`` of a CSR matrix sharing its data and indices (no copy)."""
    start, stop = matrix.indptr[rows.start], matrix.indptr[rows.stop]
    indptr = matrix.indptr[rows.start : rows.stop + 1] - start
    return sp.csr_matrix(
        (matrix.data[start:stop], matrix.indices[start:stop], indptr),
        shape=(len(indptr) - 1, matrix.shape[1]),
        copy=False,
    )


class LocalPopulation:
    """The fast path for a :class:`~dmr_ray.grids.surrogate.Surrogate` on sparse ATAC (module docstring).

    Parameters
    ----------
    model
        The surrogate; it is put in eval mode (BatchNorm running statistics).
    x
        ``[n_cells, n_peaks]`` scipy sparse accessibility (binary, or any finite values).
    objective
        Target gene and direction (``p``).
    batch_size
        Rows through the post-sum network at once (cells, or candidate × cell rows).

    Memory is ``O(nnz(x) + cells·B·e + batch_size·hidden)``; nothing of size
    ``[cells, peaks, embed]`` or ``[L, cells, peaks]`` is built. The peak embeddings are
    copied when the population is built: build a new one after changing the model.
    """

    def __init__(
        self,
        model: Surrogate,
        x: sp.spmatrix | sp.sparray,
        objective: Objective,
        *,
        batch_size: int = 8192,
        _parts: _SurrogateParts | None = None,
    ):
        if not isinstance(x, sp.spmatrix | sp.sparray) or x.ndim != 2:
            raise InputError(f"LocalPopulation needs x as a 2-d scipy sparse matrix, got {type(x).__name__}")
        if not is_int(batch_size) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        parts = _parts if _parts is not None else _SurrogateParts.of(model, objective)
        if x.shape[1] != len(parts.block):
            raise InputError(f"x has {x.shape[1]} peaks but the surrogate takes {len(parts.block)}")
        x = sp.csr_matrix(x, dtype=np.float64)
        if not np.isfinite(x.data).all():
            raise InputError("x has non-finite values")
        self.model, self.objective, self.batch_size, self._parts = model, objective, batch_size, parts
        # peaks × cells, rows in block order: block c is rows bounds[c]:bounds[c+1]
        self._xt = sp.csr_matrix(x[:, parts.order].T)
        self._blocks = [_row_view(self._xt, self._span(c)) for c in range(len(parts.bounds) - 1)]
        dtype = parts.delta.dtype
        sums = np.stack(
            [rows.T @ parts.delta64[parts.order[self._span(c)]] for c, rows in enumerate(self._blocks)], axis=1
        )  # [cells, B, e]
        self._h0 = parts.base + torch.as_tensor(sums, dtype=dtype)
        self._cache: tuple[bytes, torch.Tensor, torch.Tensor] | None = None

    @property
    def n_cells(self) -> int:
        return int(self._xt.shape[1])

    @property
    def n_peaks(self) -> int:
        return int(self._xt.shape[0])

    def subset(self, cells: np.ndarray) -> LocalPopulation:
        """The population of the cells ``cells`` (``int [m]``), sharing this one's model parts."""
        x = sp.csr_matrix(self._xt.T)[np.asarray(cells)][:, self._parts.rank]
        return LocalPopulation(self.model, x, self.objective, batch_size=self.batch_size, _parts=self._parts)

    def _span(self, c: int) -> slice:
        return slice(int(self._parts.bounds[c]), int(self._parts.bounds[c + 1]))

    def _columns(self, peaks: np.ndarray) -> np.ndarray:
        """``float64 [len(peaks), cells]``: the original x of these peaks."""
        return self._xt[self._parts.rank[peaks]].toarray()

    def _sums(self, r: np.ndarray) -> torch.Tensor:
        """``h' [cells, B, e]``: the chromosome sums at ``x∖r``."""
        parts, members = self._parts, np.unique(r)
        n_blocks, embed = parts.base.shape
        coef = torch.as_tensor(parts.p - self._columns(members).T, dtype=parts.delta.dtype)  # [cells, U]
        spread = torch.zeros(len(members), n_blocks, embed, dtype=parts.delta.dtype)
        spread[torch.arange(len(members)), torch.as_tensor(parts.block[members])] = parts.delta[members]
        return self._h0 + (coef @ spread.reshape(len(members), n_blocks * embed)).reshape(-1, n_blocks, embed)

    def _state(self, r: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums ``h' [cells, B, e]`` and losses ``ℓ' [cells]`` at ``x∖r`` (the last ``r`` is cached)."""
        key = np.unique(r).tobytes()
        if self._cache is None or self._cache[0] != key:
            h = self._sums(r)
            with torch.no_grad():
                losses = [self._parts.losses(h[s : s + self.batch_size]) for s in range(0, len(h), self.batch_size)]
            self._cache = (key, h, torch.cat(losses))
        return self._cache[1], self._cache[2]

    def loss_sum(self, r: Selection) -> float:
        return float(self._state(as_peaks(r, self.n_peaks))[1].double().sum())

    def transition_sums(self, r: Selection) -> TransitionSums:
        r = as_peaks(r, self.n_peaks)
        parts = self._parts
        h = self._sums(r)
        grads, losses = [], []
        for s in range(0, len(h), self.batch_size):
            batch = h[s : s + self.batch_size].detach().requires_grad_(True)
            with torch.enable_grad():
                loss = parts.losses(batch)
                grads.append(torch.autograd.grad(loss.sum(), batch)[0])
            losses.append(loss.detach())
        self._cache = (np.unique(r).tobytes(), h, torch.cat(losses))
        g = torch.cat(grads).double().numpy()  # [cells, B, e]: ∂ℓ_c/∂h'_c
        total = g.sum(0)  # [B, e]
        add_sorted = np.empty(self.n_peaks)
        for c in range(g.shape[1]):
            span = self._span(c)
            delta = parts.delta64[parts.order[span]]
            weighted = self._blocks[c] @ g[:, c]  # Σ_b x_bj g_bc, [n_c, e]
            add_sorted[span] = parts.p * (delta @ total[c]) - np.einsum("je,je->j", weighted, delta)
        add = add_sorted[parts.rank]
        return TransitionSums(add, add[r].copy(), self.n_cells)

    def candidate_loss_sums(self, r: Selection, row: int, candidates: Selection) -> np.ndarray:
        r = as_peaks(r, self.n_peaks)
        _check_row(row, len(r))
        candidates = _check_candidates(candidates, self.n_peaks)
        parts = self._parts
        h, losses = self._state(r)
        restore, restore_k, set_k = _swap_flags(r, row, candidates)
        leaving = int(r[row])
        restore_coef = self._columns(np.array([leaving]))[0] - parts.p if restore else np.zeros(self.n_cells)
        set_coef = (parts.p - self._columns(candidates)) * set_k[:, None]  # [k, cells]
        changed = (set_coef != 0) | ((restore_coef != 0)[None, :] & restore_k[:, None])
        cand_idx, cell_idx = np.nonzero(changed)
        total = np.full(len(candidates), float(losses.double().sum()))
        dtype = parts.delta.dtype
        for s in range(0, len(cand_idx), self.batch_size):
            ci, cell = cand_idx[s : s + self.batch_size], cell_idx[s : s + self.batch_size]
            rows = h[torch.as_tensor(cell)].clone()
            back = torch.as_tensor(restore_coef[cell] * restore_k[ci], dtype=dtype)
            rows[:, parts.block[leaving]] += back[:, None] * parts.delta[leaving]
            put = torch.as_tensor(set_coef[ci, cell], dtype=dtype)
            peaks = candidates[ci]
            rows[torch.arange(len(ci)), torch.as_tensor(parts.block[peaks])] += put[:, None] * parts.delta[peaks]
            with torch.no_grad():
                diff = (parts.losses(rows) - losses[torch.as_tensor(cell)]).double().numpy()
            total += np.bincount(ci, weights=diff, minlength=len(candidates))
        return total

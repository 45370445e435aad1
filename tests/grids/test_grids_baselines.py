"""GRIDS baselines against brute force, exact removal effects and planted peaks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from dmr_ray.errors import InputError
from dmr_ray.grids.baselines import (
    BASELINES,
    fimap,
    integrated_gradients,
    random_draws,
    sage,
    saliency,
)
from dmr_ray.grids.fimap import fit_mask
from dmr_ray.grids.objective import Objective
from dmr_ray.grids.perturb import perturb
from dmr_ray.grids.surrogate import Surrogate, SurrogateConfig, chromosome_blocks, names_digest

torch.set_num_threads(1)

N_CELLS, N_PEAKS, N_GENES, L = 30, 18, 4, 3
FAST = {  # small settings so every baseline runs in well under a second here
    "random": {},
    "saliency": {},
    "smoothgrad": {"n_samples": 4},
    "integrated_gradients": {"max_steps": 50},
    "fimap": {"fits": 2, "epochs": 2},
    "sage": {"n_permutations": 64},
}


@pytest.fixture(scope="module")
def surrogate() -> Surrogate:
    """A tiny randomly initialised surrogate whose target gene is never clamped at 0."""
    chromosomes, block = chromosome_blocks(np.repeat(["chr1", "chr2", "chr3"], N_PEAKS // 3))
    small = dict(embed_dim=4, block_dim=4, latent_dim=4, rna_hidden=(8, 8), n_experts=2, gate_hidden=8)
    config = SurrogateConfig(
        N_PEAKS, N_GENES, chromosomes, names_digest(["p"]), names_digest(["g"]), translator_layers=1, **small
    )
    model = Surrogate(config, block, seed=5).eval()
    with torch.no_grad():
        model.rna_output.bias += 20.0
        model.atac_encoder.embedding *= 3.0  # larger, less linear peak effects
    return model


@pytest.fixture(scope="module")
def atac() -> sp.csr_matrix:
    x = (np.random.default_rng(1).random((N_CELLS, N_PEAKS)) < 0.4).astype(np.float32)
    x[:, 7] = 0  # closed in every cell: can never help a removal
    return sp.csr_matrix(x)


def _loss(model: nn.Module, objective: Objective, x: torch.Tensor) -> torch.Tensor:
    return objective.per_cell(model(x))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_pick_L_distinct_peaks_reproducibly_within_candidates(name, surrogate, atac):
    method, objective = BASELINES[name], Objective(1)
    first = method(surrogate, atac, objective, L, seed=3, **FAST[name])
    again = method(surrogate, atac, objective, L, seed=3, **FAST[name])
    assert first.selected.dtype == np.int64 and first.selected.shape == (L,)
    assert len(set(first.selected.tolist())) == L and 0 <= first.selected.min() and first.selected.max() < N_PEAKS
    assert first.scores.shape == (N_PEAKS,) and np.isfinite(first.scores).all()
    np.testing.assert_array_equal(first.selected, again.selected)
    np.testing.assert_array_equal(first.scores, again.scores)
    # the selection is the top L of the scores
    assert first.scores[first.selected].min() >= np.delete(first.scores, first.selected).max()

    candidates = np.array([16, 2, 9, 11, 4], dtype=np.int64)
    within = method(surrogate, atac, objective, L, seed=3, candidates=candidates, **FAST[name])
    assert set(within.selected.tolist()) <= set(candidates.tolist()) and len(set(within.selected.tolist())) == L
    outside = np.setdiff1d(np.arange(N_PEAKS), candidates)
    assert np.isnan(within.scores[outside]).all() and np.isfinite(within.scores[candidates]).all()


def test_random_draws_differ_and_are_seeded(surrogate, atac):
    draws = random_draws(surrogate, atac, Objective(1), L, draws=4, seed=0)
    assert len({tuple(d.selected.tolist()) for d in draws}) > 1
    again = random_draws(surrogate, atac, Objective(1), L, draws=4, seed=0)
    assert [d.selected.tolist() for d in draws] == [d.selected.tolist() for d in again]


@pytest.mark.parametrize("direction", ["down", "up"])
def test_saliency_scores_are_the_first_order_removal_changes(surrogate, atac, direction):
    objective = Objective(2, direction)
    result = saliency(surrogate, atac, objective, L)
    x = torch.tensor(atac.toarray(), requires_grad=True)
    (grad,) = torch.autograd.grad(_loss(surrogate, objective, x).sum(), x)
    brute = -((objective.p - x.detach()) * grad).mean(dim=0).double().numpy()
    np.testing.assert_allclose(result.scores, brute, rtol=1e-5, atol=1e-7)
    if direction == "down":
        assert result.scores[7] == 0.0  # closed everywhere: (p − x) = 0
    # finite differences along (p − x_j) for the best peak: ℓ(x + ε(p − x)e_j) − ℓ(x) ≈ −ε·score·n
    j, eps = int(result.selected[0]), 1e-2
    with torch.no_grad():
        step = torch.zeros_like(x)
        step[:, j] = eps * (objective.p - x[:, j])
        change = (_loss(surrogate, objective, x + step) - _loss(surrogate, objective, x)).mean().item()
    assert change == pytest.approx(-eps * result.scores[j], rel=0.05)


@pytest.mark.parametrize("direction", ["down", "up"])
def test_saliency_is_exact_for_a_model_linear_in_x(atac, direction):
    torch.manual_seed(0)
    linear = nn.Linear(N_PEAKS, 2).eval()
    objective = Objective(1, direction)
    scores = saliency(linear, atac, objective, L).scores
    with torch.no_grad():
        x = torch.tensor(atac.toarray())
        base = _loss(linear, objective, x)
        exact = [(base - _loss(linear, objective, perturb(x, [j], objective.p))).mean().item() for j in range(N_PEAKS)]
    np.testing.assert_allclose(scores, exact, rtol=1e-5, atol=1e-6)
    if direction == "down":  # peak 7 is closed everywhere; closed candidates tie at 0 and go in index order
        closed = sp.csr_matrix(atac.multiply(np.arange(N_PEAKS) < 10))
        tied = saliency(linear, closed, objective, 2, candidates=np.array([15, 12, 17, 10]))
        assert tied.selected.tolist() == [10, 12] and (tied.scores[[10, 12, 15, 17]] == 0).all()


def test_integrated_gradients_are_complete_per_cell(surrogate, atac):
    objective = Objective(1)
    with torch.no_grad():
        dense = torch.tensor(atac.toarray())
        gap = _loss(surrogate, objective, dense) - _loss(surrogate, objective, torch.zeros(1, N_PEAKS))
    for c in (0, 5, 17):
        assert abs(gap[c].item()) > 0.05
        scores = integrated_gradients(surrogate, atac[c : c + 1], objective, L, tolerance=1e-4, max_steps=800).scores
        assert scores.sum() == pytest.approx(gap[c].item(), abs=1e-4)


class _Planted(nn.Module):
    """ŷ_0 = softplus(3·x_5 + 0.2·Σ_j w_j x_j): peak 5 matters, the others barely."""

    def __init__(self, n_peaks: int, important: int):
        super().__init__()
        self.important = important
        self.weight = torch.linspace(-0.2, 0.2, n_peaks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(3.0 * x[:, self.important] + x @ self.weight)[:, None]


def test_fimap_picks_the_one_peak_that_matters():
    x = sp.csr_matrix((np.random.default_rng(2).random((64, 12)) < 0.5).astype(np.float32))
    result = fimap(_Planted(12, important=5), x, Objective(0), 1, seed=0, fits=4, epochs=15, lr=1e-2)
    assert result.selected.tolist() == [5]


def test_fimap_mask_mass_falls_with_the_penalty_and_leaves_the_surrogate_untouched(surrogate, atac):
    peaks = np.arange(N_PEAKS, dtype=np.int64)
    fits = [
        fit_mask(surrogate, atac, Objective(1), peaks, penalty, seed=0, epochs=5, batch_size=16, lr=1e-2)
        for penalty in (1e-4, 1.0)
    ]
    assert fits[0].mass > fits[1].mass + 1 and fits[0].mean_mask.shape == (N_PEAKS,)
    assert all(param.grad is None for param in surrogate.parameters())


def test_sage_ranks_the_important_peak_first():
    x = sp.csr_matrix((np.random.default_rng(3).random((40, 10)) < 0.5).astype(np.float32))
    result = sage(_Planted(10, important=3), x, Objective(0), 2, seed=0, n_permutations=256, batch_size=128)
    assert result.selected[0] == 3
    assert result.scores[3] > 5 * np.abs(np.delete(result.scores, 3)).max()


@pytest.mark.parametrize(
    ("L_", "candidates", "match"),
    [
        (0, None, "L must be"),
        (N_PEAKS + 1, None, "L must be"),
        (2, np.array([1, 1]), "repeated"),
        (1, np.array([N_PEAKS]), "candidates"),
    ],
)
def test_bad_options_are_input_errors(surrogate, atac, L_, candidates, match):
    with pytest.raises(InputError, match=match):
        saliency(surrogate, atac, Objective(1), L_, candidates=candidates)


def test_sage_candidate_imputer_matches_sage_default_imputer_on_all_peaks(surrogate, atac):
    everything = np.arange(N_PEAKS, dtype=np.int64)
    own = sage(surrogate, atac, Objective(1), L, seed=4, candidates=everything, n_permutations=32)
    default = sage(surrogate, atac, Objective(1), L, seed=4, n_permutations=32)
    np.testing.assert_allclose(own.scores, default.scores, rtol=1e-6, atol=1e-9)

"""The fast population of a surrogate against the plain autograd reference and fresh forward passes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from dmr_ray.errors import InputError
from dmr_ray.grids.objective import Objective
from dmr_ray.grids.perturb import perturb
from dmr_ray.grids.population import AutogradPopulation, LocalPopulation, Population, TransitionSums
from dmr_ray.grids.surrogate import Surrogate, SurrogateConfig, chromosome_blocks

N_CELLS, N_PEAKS, N_GENES, GENE = 30, 50, 6, 2
R = np.array([3, 10, 3, 41, 7])  # peak 3 twice


def small_surrogate(seed: int = 0, n_peaks: int = N_PEAKS) -> Surrogate:
    """A random float64 surrogate whose target gene is positive in most cells and clamped in some."""
    rng = np.random.default_rng(seed)
    chromosomes, block = chromosome_blocks(rng.choice(["chr1", "chr2", "chrX"], n_peaks))
    small = dict(embed_dim=4, block_dim=6, latent_dim=5, rna_hidden=(12, 8), n_experts=3, gate_hidden=8)
    config = SurrogateConfig(n_peaks, N_GENES, chromosomes, "peaks", "genes", **small)
    model = Surrogate(config, block, seed=seed).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
        model.rna_output.weight.mul_(3.0)
    return model.eval()


def binary_atac(seed: int = 1, n_cells: int = N_CELLS, n_peaks: int = N_PEAKS) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_cells, n_peaks)) < 0.3).astype(np.float64))


def centred_objective(model: Surrogate, x: sp.csr_matrix, direction: str) -> Objective:
    """Shift the gene's output bias so about a quarter of the cells are clamped at 0."""
    objective = Objective(GENE, direction)  # type: ignore[arg-type]
    with torch.no_grad():
        unclamped = model.rna_decoder(model.atac_to_rna(model.atac_encoder(torch.as_tensor(x.toarray()))))
        raw = unclamped[:, GENE] - model.rna_output.bias[GENE]
        model.rna_output.bias[GENE] = -torch.quantile(raw, 0.25)
    return objective


def fresh_loss_sum(model: Surrogate, x: sp.csr_matrix, objective: Objective, r: np.ndarray) -> float:
    with torch.no_grad():
        perturbed = perturb(torch.as_tensor(x.toarray()), r, objective.p)
        return float(objective.per_cell(model(perturbed)).sum())


@pytest.fixture(scope="module", params=["down", "up"])
def setup(request):
    torch.set_num_threads(1)
    model, x = small_surrogate(), binary_atac()
    objective = centred_objective(model, x, request.param)
    return model, x, objective


def test_fast_transition_sums_equal_the_autograd_reference(setup):
    model, x, objective = setup
    fast, reference = LocalPopulation(model, x, objective), AutogradPopulation.for_surrogate(model, x, objective)
    assert isinstance(fast, Population) and isinstance(reference, Population)
    for r in (R, np.array([0]), np.zeros(0, np.int64)):
        a, b = fast.transition_sums(r), reference.transition_sums(r)
        assert a.n_cells == b.n_cells == N_CELLS
        np.testing.assert_allclose(a.add, b.add, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(a.sub, b.sub, rtol=1e-10, atol=1e-12)
        assert fast.loss_sum(r) == pytest.approx(reference.loss_sum(r), rel=1e-12)
    assert np.abs(b.add).max() > 1e-3  # the comparison is not between zeros
    t_fast, t_ref = fast.transition_sums(R).matrix(R), reference.transition_sums(R).matrix(R)
    np.testing.assert_allclose(t_fast, t_ref, rtol=1e-10, atol=1e-13)
    assert t_fast.shape == (len(R), N_PEAKS) and np.all(t_fast[np.arange(len(R)), R] == 0)
    # T[i, j] = (1[j∉r] add_j − sub_i)/n, written out for one row and a member column
    sums = fast.transition_sums(R)
    assert t_fast[1, 20] == pytest.approx((sums.add[20] - sums.sub[1]) / N_CELLS)
    assert t_fast[1, 41] == pytest.approx(-sums.sub[1] / N_CELLS)
    np.testing.assert_array_equal(sums.row(R, 3), t_fast[3])


def test_first_order_change_matches_a_finite_difference_on_a_relaxed_input(setup):
    """add_j is the derivative of the loss sum along x'_j → x'_j + ε(p − x_j) (grids.md §4)."""
    model, x, objective = setup
    sums = LocalPopulation(model, x, objective).transition_sums(R)
    dense = perturb(torch.as_tensor(x.toarray()), R, objective.p)
    j, eps = 20, 1e-6
    step = torch.zeros_like(dense)
    step[:, j] = objective.p - torch.as_tensor(x.toarray())[:, j]
    with torch.no_grad():
        up, down = (objective.per_cell(model(dense + sign * eps * step)).sum() for sign in (1, -1))
    assert sums.add[j] == pytest.approx(float(up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_exact_candidate_scores_equal_fresh_forward_passes(setup):
    model, x, objective = setup
    fast, reference = LocalPopulation(model, x, objective), AutogradPopulation.for_surrogate(model, x, objective)
    candidates = np.array([3, 10, 5, 41, 49, 0, 5])  # members, a repeat, and new peaks
    for row in range(len(R)):  # rows 0 and 2 hold the duplicated peak 3
        scores = fast.candidate_loss_sums(R, row, candidates)
        expected = []
        for j in candidates:
            swapped = R.copy()
            swapped[row] = j
            expected.append(fresh_loss_sum(model, x, objective, swapped))
        np.testing.assert_allclose(scores, expected, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(reference.candidate_loss_sums(R, row, candidates), expected, rtol=1e-11)
    assert len(set(np.round(scores, 8))) > 2  # the candidates do differ


def test_sums_over_two_cell_shards_add_up_to_the_whole(setup):
    model, x, objective = setup
    whole = LocalPopulation(model, x, objective)
    shards = [LocalPopulation(model, x[:11], objective), whole.subset(np.arange(11, N_CELLS))]
    total = sum(shard.transition_sums(R) for shard in shards)
    assert isinstance(total, TransitionSums) and total.n_cells == N_CELLS
    np.testing.assert_allclose(total.add, whole.transition_sums(R).add, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(total.matrix(R), whole.transition_sums(R).matrix(R), rtol=1e-12, atol=1e-14)
    assert sum(s.loss_sum(R) for s in shards) == pytest.approx(whole.loss_sum(R), rel=1e-12)
    candidates = np.array([1, 2, 41])
    np.testing.assert_allclose(
        sum(s.candidate_loss_sums(R, 1, candidates) for s in shards), whole.candidate_loss_sums(R, 1, candidates)
    )


def test_counts_are_handled_as_a_linear_input():
    """Non-binary ATAC: the encoder is linear in x, so the fast path stays exact."""
    model = small_surrogate(seed=4)
    counts = sp.csr_matrix(np.random.default_rng(5).poisson(0.6, (N_CELLS, N_PEAKS)).astype(np.float64))
    assert counts.max() > 1
    objective = centred_objective(model, counts, "down")
    fast = LocalPopulation(model, counts, objective)
    reference = AutogradPopulation.for_surrogate(model, counts, objective)
    np.testing.assert_allclose(fast.transition_sums(R).add, reference.transition_sums(R).add, rtol=1e-10, atol=1e-12)
    candidates = np.array([0, 3, 20])
    np.testing.assert_allclose(
        fast.candidate_loss_sums(R, 3, candidates), reference.candidate_loss_sums(R, 3, candidates), rtol=1e-11
    )


def test_small_batches_give_the_same_sums(setup):
    model, x, objective = setup
    whole, batched = LocalPopulation(model, x, objective), LocalPopulation(model, x, objective, batch_size=7)
    np.testing.assert_allclose(batched.transition_sums(R).add, whole.transition_sums(R).add, rtol=1e-12, atol=1e-14)
    candidates = np.arange(0, N_PEAKS, 3)
    expected = whole.candidate_loss_sums(R, 4, candidates)
    np.testing.assert_allclose(batched.candidate_loss_sums(R, 4, candidates), expected)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda pop: pop.loss_sum(np.array([0, N_PEAKS])), "outside"),
        (lambda pop: pop.transition_sums(np.array([[0, 1]])), "1-d"),
        (lambda pop: pop.transition_sums(np.array([0.0, 1.0])), "integer"),
        (lambda pop: pop.candidate_loss_sums(R, len(R), np.array([1])), "row"),
        (lambda pop: pop.candidate_loss_sums(R, 0, np.zeros(0, np.int64)), "k >= 1"),
        (lambda pop: pop.candidate_loss_sums(R, 0, np.array([-1])), "outside"),
        (lambda pop: pop.transition_sums(R).matrix(R[:2]), "selection has 2"),
    ],
)
def test_bad_selections_are_input_errors(setup, call, match):
    model, x, objective = setup
    for population in (LocalPopulation(model, x, objective), AutogradPopulation.for_surrogate(model, x, objective)):
        with pytest.raises(InputError, match=match):
            call(population)


def test_bad_populations_are_input_errors():
    model, x = small_surrogate(), binary_atac()
    with pytest.raises(InputError, match="peaks but the surrogate"):
        LocalPopulation(model, x[:, :-1], Objective(GENE))
    with pytest.raises(InputError, match="scipy sparse"):
        LocalPopulation(model, x.toarray(), Objective(GENE))  # type: ignore[arg-type]
    nan = x.copy()
    nan.data[0] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        LocalPopulation(model, nan, Objective(GENE))
    with pytest.raises(InputError, match="not one of"):
        LocalPopulation(model, x, Objective(N_GENES))
    with pytest.raises(InputError, match="batch_size"):
        LocalPopulation(model, x, Objective(GENE), batch_size=0)
    with pytest.raises(InputError, match="floating-point"):
        AutogradPopulation(lambda v: v.sum(1), torch.ones(3, 4, dtype=torch.int64), 0.0)
    with pytest.raises(InputError, match="different shapes"):
        TransitionSums(np.zeros(4), np.zeros(2), 1) + TransitionSums(np.zeros(5), np.zeros(2), 1)
    with pytest.raises(InputError, match="zero cells"):
        TransitionSums(np.zeros(4), np.zeros(1), 0).matrix(np.array([1]))

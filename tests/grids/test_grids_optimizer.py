"""The GRIDS search: monotone improved mode, the original's always-replace, a planted redundant group."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_grids_population import binary_atac, centred_objective, small_surrogate

from dmr_ray.errors import InputError
from dmr_ray.grids.optimizer import GridsOptimizer, StepInfo, greedy_forward, grids_search
from dmr_ray.grids.population import AutogradPopulation, LocalPopulation


def linear_population(weights: list[float], n_cells: int = 1) -> AutogradPopulation:
    """ℓ_c = Σ_j w_j x_cj on all-open cells: removing peak j changes the loss by exactly −w_j."""
    w = torch.tensor(weights, dtype=torch.float64)
    return AutogradPopulation(lambda x: x @ w, torch.ones(n_cells, len(weights), dtype=torch.float64), 0.0)


def one_step(population, r: list[int], *, k: int, mode: str) -> tuple[list[int], StepInfo]:
    selection = torch.tensor(r)
    optimizer = GridsOptimizer([selection], population, k=k, mode=mode)  # type: ignore[arg-type]
    optimizer.step()
    assert optimizer.last is not None
    return selection.tolist(), optimizer.last


def test_faithful_mode_always_replaces_even_when_the_exact_loss_rises():
    """ℓ = 3x0² − 4x0 + 1 + 0.1·x2 at x = 1, r = {2}: T predicts removing peak 0 saves 1.9, it costs 1.1.

    −T[0] = (1.9, −0.1, 0) for peaks (0, 1, 2), so with k = 1 the only candidate is peak 0:
    the original replaces anyway (loss 0 → 1.1); the improved mode keeps r = {2}.
    """

    def loss(x: torch.Tensor) -> torch.Tensor:
        return 3 * x[:, 0] ** 2 - 4 * x[:, 0] + 1 + 0.1 * x[:, 2]

    population = AutogradPopulation(loss, torch.ones(1, 3, dtype=torch.float64), 0.0)
    np.testing.assert_allclose(-population.transition_sums(np.array([2])).row(np.array([2]), 0), [1.9, -0.1, 0.0])
    r, info = one_step(population, [2], k=1, mode="faithful")
    assert r == [0] and info.accepted and info.train_loss == pytest.approx(1.1)
    assert info.predicted == pytest.approx(-1.9)
    r, info = one_step(population, [2], k=1, mode="improved")
    assert r == [2] and not info.accepted and info.train_loss == pytest.approx(0.0)
    # with k = 2 the no-op column T[0, r_0] = 0 is a candidate and wins: the original keeps r too
    assert one_step(population, [2], k=2, mode="faithful")[0] == [2]


def test_faithful_mode_makes_duplicates_and_the_improved_mode_does_not():
    """w = (3, −1, −2, −0.5), r = (1, 0): restoring the harmful peak 1 by a copy of member 0 scores best.

    −T[0] = (1, 0, −1, 0.5): the faithful top 2 are peak 0 (→ r = (0, 0), loss −3.5) and peak 3
    (→ (3, 0), −3.0); the exact argmin is the duplicate. Masking members leaves peaks 3 and 2.
    """
    population = linear_population([3.0, -1.0, -2.0, -0.5])
    np.testing.assert_allclose(-population.transition_sums(np.array([1, 0])).row(np.array([1, 0]), 0), [1, 0, -1, 0.5])
    r, info = one_step(population, [1, 0], k=2, mode="faithful")
    assert r == [0, 0] and info.train_loss == pytest.approx(-3.5)
    r, info = one_step(population, [1, 0], k=2, mode="improved")
    assert r == [3, 0] and info.train_loss == pytest.approx(-3.0)


def test_faithful_search_runs_its_fixed_steps_on_reshuffled_minibatches():
    population = linear_population([float(w) for w in range(12)], n_cells=10)
    seen: list[StepInfo] = []
    result = grids_search(population, 3, k=4, steps=17, mode="faithful", batch_size=4, seed=3, on_step=seen.append)
    assert len(result.history) == len(seen) == 17 and result.history == tuple(seen)
    assert [info.row for info in seen[:5]] == [0, 1, 2, 0, 1]
    assert result.restarts[0].steps == 17 and not result.restarts[0].converged
    # a linear loss is exact to first order: the best three peaks (11, 10, 9) are found
    assert sorted(result.selected.tolist()) == [9, 10, 11] and result.train_loss == pytest.approx(sum(range(9)))
    again = grids_search(population, 3, k=4, steps=17, mode="faithful", batch_size=4, seed=3)
    assert again.history == result.history


def test_improved_search_never_increases_the_loss_and_keeps_distinct_peaks():
    torch.set_num_threads(1)
    model, x = small_surrogate(seed=2, n_peaks=40), binary_atac(seed=3, n_cells=24, n_peaks=40)
    objective = centred_objective(model, x, "down")
    population = LocalPopulation(model, x, objective)
    steps: list[StepInfo] = []
    sets: list[list[int]] = []

    def record(info: StepInfo) -> None:
        steps.append(info)

    selection = torch.as_tensor(np.random.default_rng(0).choice(40, 6, replace=False))
    optimizer = GridsOptimizer([selection], population, k=5)
    start = population.loss_sum(selection) / population.n_cells
    while not optimizer.converged:
        optimizer.step()
        assert optimizer.last is not None
        record(optimizer.last)
        sets.append(selection.tolist())
    losses = np.array([start] + [info.train_loss for info in steps])
    assert np.all(np.diff(losses) <= 0) and losses[-1] < losses[0]
    assert sum(info.accepted for info in steps) >= 2
    assert all(len(set(r)) == 6 for r in sets)
    assert not any(info.accepted for info in steps[-6:])  # it stopped after a sweep without improvement
    for info, r in zip(steps, sets, strict=True):  # each reported loss is the loss of the set
        assert info.train_loss == pytest.approx(population.loss_sum(np.array(r)) / population.n_cells, rel=1e-12)


def or_population(n_cells: int = 200, seed: int = 0) -> AutogradPopulation:
    """A planted redundant group: ℓ = 2·OR(x0, x1, x2) + 0.6·(x3 + x4 + x5 + x6) + 0.05·Σ x7..x11.

    Each peak is open in half of the cells. Removing one group peak only matters where the
    other two are closed, so first-order ranks the single peaks first; removing the whole group
    lowers the mean loss by 1.75, three singles by 0.9.
    """
    x = torch.as_tensor(np.random.default_rng(seed).random((n_cells, 12)) < 0.5, dtype=torch.float64)
    singles = torch.tensor([0.6] * 4 + [0.05] * 5, dtype=torch.float64)

    def loss(v: torch.Tensor) -> torch.Tensor:
        return 2 * (1 - torch.prod(1 - v[:, :3], dim=1)) + v[:, 3:] @ singles

    return AutogradPopulation(loss, x, 0.0)


def test_search_removes_a_redundant_group_that_single_peak_rankings_miss():
    population = or_population()
    first_order = np.argsort(population.transition_sums(np.zeros(0, np.int64)).add, kind="stable")[:3]
    assert not set(first_order) >= {0, 1, 2}  # saliency's top 3 (most negative change) miss the group
    result = grids_search(population, 3, k=6, restarts=4, seed=1)
    assert sorted(result.selected.tolist()) == [0, 1, 2]
    assert result.train_loss < population.loss_sum(first_order) / population.n_cells - 0.5
    assert len(result.restarts) == 4 and result.train_loss == min(o.train_loss for o in result.restarts)


def test_eval_population_picks_the_best_set_seen_and_the_best_restart():
    population, held_out = or_population(seed=0), or_population(n_cells=80, seed=1)
    result = grids_search(population, 3, k=6, restarts=3, seed=5, eval_population=held_out)
    assert result.eval_loss == pytest.approx(held_out.loss_sum(result.selected) / held_out.n_cells)
    assert result.eval_loss == min(o.eval_loss for o in result.restarts)
    best = result.restarts[result.best_restart]
    evaluated = [i.eval_loss for i in result.history if i.restart == result.best_restart and i.eval_loss is not None]
    assert evaluated and best.eval_loss <= min(evaluated)
    starts = {tuple(sorted(r.selected.tolist())) for r in result.restarts}
    assert len({i.restart for i in result.history}) == 3 and starts  # every restart ran


def test_candidates_restrict_the_search_and_greedy_forward_is_exact_on_a_linear_loss():
    population = linear_population([0.5, 4.0, 1.0, 3.0, 2.0, 5.0], n_cells=3)
    assert greedy_forward(population, 3, k=2).tolist() == [5, 1, 3]
    result = grids_search(population, 2, k=3, candidates=np.array([0, 2, 4, 0]), init="greedy")
    assert sorted(result.selected.tolist()) == [2, 4]
    assert result.train_loss == pytest.approx(sum([0.5, 4.0, 3.0, 5.0]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"L": 0}, "L must be"),
        ({"L": 7}, "only 6 peaks"),
        ({"L": 3, "candidates": np.array([0, 1])}, "only 2 peaks"),
        ({"L": 2, "candidates": np.array([0, 9])}, "outside"),
        ({"L": 2, "k": 0}, "k must be"),
        ({"L": 2, "mode": "greedy"}, "mode must be"),
        ({"L": 2, "init": "best"}, "init must be"),
        ({"L": 2, "steps": 4, "sweeps": 2}, "not both"),
        ({"L": 2, "steps": 0}, "steps must be"),
        ({"L": 2, "restarts": 0}, "restarts must be"),
        ({"L": 2, "batch_size": 2}, "faithful mode"),
        ({"L": 2, "eval_population": linear_population([1.0, 2.0])}, "eval population has 2 peaks"),
    ],
)
def test_bad_search_options_are_input_errors(kwargs, match):
    population = linear_population([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    L = kwargs.pop("L")
    with pytest.raises(InputError, match=match):
        grids_search(population, L, **kwargs)


def test_bad_selections_for_the_optimizer_are_input_errors():
    population = linear_population([1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="int64"):
        GridsOptimizer([torch.zeros(2)], population)
    with pytest.raises(InputError, match="outside"):
        GridsOptimizer([torch.tensor([0, 3])], population)
    without_subset = linear_population([1.0, 2.0, 3.0])
    without_subset.subset = None  # type: ignore[assignment,method-assign]
    with pytest.raises(InputError, match="no subset"):
        GridsOptimizer([torch.tensor([0])], without_subset, mode="faithful", batch_size=2)

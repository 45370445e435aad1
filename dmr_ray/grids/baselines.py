"""Baselines of a GRIDS search at the same L (grids.md §12): single-peak rankings and FIMAP.

Every baseline has the signature of :data:`BASELINES`::

    method(model, x, objective, L, *, seed=0, candidates=None, ...) -> BaselineResult

with ``model`` the surrogate (or any module ``[cells, n_peaks] → [cells, n_outputs]`` in eval
mode), ``x`` the population's accessibility ``csr_matrix [cells, n_peaks]`` and ``objective`` the
per-cell loss ``ℓ_c = objective.per_cell(model(x))[c]``. A baseline scores every peak by the
**predicted decrease of the mean loss when that peak alone is set to p** (higher is better) and
selects the L best scores, best first; ties go to the lower peak index, so peaks closed in every
cell (which cannot help when p = 0 and score exactly 0 by the gradient rules) are taken in index
order. ``candidates`` restricts the scored and selectable peaks; the others score NaN.

* ``random``: uniform keys, i.e. L distinct uniform peaks; average metrics over several draws
  (:func:`random_draws`).
* ``saliency``: with ``G = ∂ℓ_c/∂x_c`` at the unperturbed input (Captum ``Saliency``), the
  first-order change ``d_cj = (p − x_cj)·G_cj`` (the transition matrix's add term at r = ∅,
  grids.md §4); score ``−mean_c d_cj``. Exact for a model linear in x.
* ``smoothgrad``: as saliency with ``G`` averaged over Gaussian-noised inputs (Captum
  ``NoiseTunnel(Saliency, "smoothgrad")``), σ = ``noise`` × the features' range (1 for binary
  peaks; attribution.md §7).
* ``integrated_gradients``: Captum ``IntegratedGradients`` from the all-p baseline to x
  (Gauss–Legendre, adaptive steps): ``Σ_j a_cj = ℓ_c(x_c) − ℓ_c(p)``, so ``a_cj`` is peak j's
  share of the loss decrease of setting everything to p; score ``mean_c a_cj``.
* ``fimap``: a global adaptation of FIMAP (Chapman-Rounds et al., AAAI 2021): a mask network
  g(x) with four ReLU layers of 100 units and a sigmoid output m ∈ [0, 1]^m, trained on
  ``mean_c ℓ_c(x_c ⊙ (1 − m) + p·m) + λ·mean_c ‖m(x_c)‖₁``; λ is bisected (geometrically) over
  a few short fits so the mean mask mass is ≈ L; score ``mean_c m(x_c)``.
* ``sage``: relaxed SAGE (Covert et al. 2020) with the ``sage-importance`` package, as the
  original runs it: removed peaks are set to p, permutation estimator with the loss replaced
  by the per-cell loss, coalitions from ``n − L`` to ``n`` peaks; score ``−φ`` (φ is the loss
  change of setting the peak to p). Needs the ``sage`` extra.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from dmr_ray._checks import is_int
from dmr_ray.attribution import methods as captum_methods
from dmr_ray.errors import InputError
from dmr_ray.grids.fimap import MaskFit, fit_mask
from dmr_ray.grids.objective import Objective

_DENSE_ELEMENTS = 1 << 24
"""Input values (cells × peaks) densified at a time (64 MiB float32)."""


@dataclass(frozen=True)
class BaselineResult:
    """The peaks a baseline selects.

    Attributes
    ----------
    selected
        ``int64 [L]`` distinct peak indices, best first.
    scores
        ``float64 [n_peaks]`` predicted decrease of the mean loss per peak (higher is better);
        NaN outside ``candidates``.
    """

    selected: np.ndarray
    scores: np.ndarray


class Baseline(Protocol):
    """The signature shared by every entry of :data:`BASELINES`."""

    def __call__(
        self,
        model: nn.Module,
        x: sp.csr_matrix,
        objective: Objective,
        L: int,
        *,
        seed: int = 0,
        candidates: np.ndarray | None = None,
    ) -> BaselineResult: ...


class CellLoss(nn.Module):
    """``x [cells, n_peaks]`` → ``ℓ [cells, 1]``: the objective's per-cell loss as a one-output module.

    This is the form Captum's wrappers in :mod:`dmr_ray.attribution.methods` explain (target 0,
    output ``"logit"``).
    """

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.objective.per_cell(self.model(x))[:, None]


def dense_batches(x: sp.csr_matrix, batch_size: int) -> Iterator[np.ndarray]:
    """``float32 [≤ batch_size, n_peaks]`` consecutive rows of ``x``, densified (at most 2²⁴ values each)."""
    rows = max(1, min(batch_size, _DENSE_ELEMENTS // max(1, x.shape[1])))
    for start in range(0, x.shape[0], rows):
        yield np.asarray(x[start : start + rows].toarray(), dtype=np.float32)


def _population(
    x: sp.csr_matrix | np.ndarray, L: int, candidates: np.ndarray | None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """``x`` as CSR and the ``int64 [m]`` peaks that may be selected, checked against ``L``."""
    if not sp.issparse(x) and not isinstance(x, np.ndarray):
        raise InputError(f"x must be a scipy sparse matrix or numpy array [cells, n_peaks], got {type(x).__name__}")
    x = sp.csr_matrix(x)
    if x.shape[0] < 1:
        raise InputError("x has no cells")
    n_peaks = x.shape[1]
    if candidates is None:
        peaks = np.arange(n_peaks, dtype=np.int64)
    else:
        peaks = np.asarray(candidates)
        if peaks.ndim != 1 or (
            peaks.size and (peaks.dtype.kind not in "iu" or peaks.min() < 0 or peaks.max() >= n_peaks)
        ):
            raise InputError(f"candidates must be peak indices in [0, {n_peaks})")
        peaks = peaks.astype(np.int64)
        if len(np.unique(peaks)) != len(peaks):
            raise InputError("candidates has repeated peaks")
    if not is_int(L) or not 1 <= L <= len(peaks):
        raise InputError(f"L must be an integer in [1, {len(peaks)}] (the candidate peaks), got {L!r}")
    return x, peaks


def _result(values: np.ndarray, peaks: np.ndarray, n_peaks: int, L: int) -> BaselineResult:
    """Scores ``values [m]`` of ``peaks [m]`` → the top L (ties to the lower index) and the full score vector."""
    scores = np.full(n_peaks, np.nan)
    scores[peaks] = values
    order = np.lexsort((peaks, -np.asarray(values, dtype=np.float64)))
    return BaselineResult(selected=peaks[order[:L]].astype(np.int64), scores=scores)


def random_subset(
    model: nn.Module,
    x: sp.csr_matrix,
    objective: Objective,
    L: int,
    *,
    seed: int = 0,
    candidates: np.ndarray | None = None,
) -> BaselineResult:
    """L distinct peaks drawn uniformly (seeded); ``scores`` are the uniform keys that rank them.

    One draw is noisy: compare methods against the mean metrics of :func:`random_draws`.
    """
    x, peaks = _population(x, L, candidates)
    return _result(np.random.default_rng(seed).random(len(peaks)), peaks, x.shape[1], L)


def random_draws(
    model: nn.Module,
    x: sp.csr_matrix,
    objective: Objective,
    L: int,
    *,
    draws: int,
    seed: int = 0,
    candidates: np.ndarray | None = None,
) -> list[BaselineResult]:
    """``draws`` independent :func:`random_subset` draws, seeded by spawning ``seed``."""
    if not is_int(draws) or draws < 1:
        raise InputError(f"draws must be an integer >= 1, got {draws!r}")
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(draws)]
    return [random_subset(model, x, objective, L, seed=s, candidates=candidates) for s in seeds]


Attribute = Callable[[CellLoss, np.ndarray, int], np.ndarray]
"""``(loss, x [n, n_peaks], batch index) -> float32 [n, n_peaks]`` per-cell gradients or attributions."""


def _attribution_baseline(
    model: nn.Module,
    x: sp.csr_matrix,
    objective: Objective,
    L: int,
    candidates: np.ndarray | None,
    attribute: Attribute,
    *,
    batch_size: int,
    gradient: bool,
) -> BaselineResult:
    """Score the cell mean of ``−(p − x)·G`` (``gradient``; ``attribute`` gives ``G = ∂ℓ/∂x``) or of attributions."""
    x, peaks = _population(x, L, candidates)
    loss = CellLoss(model.eval(), objective)
    total = np.zeros(x.shape[1])
    for b, dense in enumerate(dense_batches(x, batch_size)):
        values = attribute(loss, dense, b).astype(np.float64)
        total += -((objective.p - dense) * values).sum(axis=0) if gradient else values.sum(axis=0)
    return _result(total[peaks] / x.shape[0], peaks, x.shape[1], L)


def _batch_seed(seed: int, batch: int) -> int:
    """An independent seed for batch ``batch`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def _target(dense: np.ndarray) -> np.ndarray:
    return np.zeros(len(dense), np.int64)


def saliency(
    model: nn.Module,
    x: sp.csr_matrix,
    objective: Objective,
    L: int,
    *,
    seed: int = 0,
    candidates: np.ndarray | None = None,
    batch_size: int = 64,
) -> BaselineResult:
    """Score ``−mean_c (p − x_cj)·∂ℓ_c/∂x_cj`` (Captum ``Saliency`` at the unperturbed input; ``seed`` unused)."""

    def gradient(loss: CellLoss, dense: np.ndarray, _: int) -> np.ndarray:
        return captum_methods.saliency(
            loss, dense, _target(dense), output="logit", absolute=False, batch_size=batch_size
        ).values

    return _attribution_baseline(model, x, objective, L, candidates, gradient, batch_size=batch_size, gradient=True)


def smoothgrad(
    model: nn.Module,
    x: sp.csr_matrix,
    objective: Objective,
    L: int,
    *,
    seed: int = 0,
    candidates: np.ndarray | None = None,
    noise: float = 0.15,
    n_samples: int = 25,
    batch_size: int = 64,
) -> BaselineResult:
    """As :func:`saliency` with ``∂ℓ/∂x`` averaged over ``n_samples`` noisy inputs.

    The noise's standard deviation is ``noise`` × the range of the values in ``x`` (1 for
    binary peaks), not Captum's absolute σ = 1 (attribution.md §7). Seeded per cell batch.
    """
    x = _population(x, L, candidates)[0]
    low, high = (min(0.0, float(x.data.min())), max(0.0, float(x.data.max()))) if x.nnz else (0.0, 0.0)
    scale = high - low if high > low else 1.0
    noisy_rows = max(1, math.isqrt(max(1, _DENSE_ELEMENTS // max(1, x.shape[1]))))  # cells × samples per pass

    def gradient(loss: CellLoss, dense: np.ndarray, batch: int) -> np.ndarray:
        return captum_methods.smoothgrad(
            loss,
            dense,
            _target(dense),
            output="logit",
            absolute=False,
            noise=noise,
            scale=scale,
            n_samples=n_samples,
            seed=_batch_seed(seed, batch),
            batch_size=noisy_rows,
        ).values

    return _attribution_baseline(model, x, objective, L, candidates, gradient, batch_size=batch_size, gradient=True)


def integrated_gradients(
    model: nn.Module,
    x: sp.csr_matrix,
    objective: Objective,
    L: int,
    *,
    seed: int = 0,
    candidates: np.ndarray | None = None,
    tolerance: float = 0.01,
    start_steps: int = 16,
    max_steps: int = 256,
    batch_size: int = 64,
) -> BaselineResult:
    """Score ``mean_c a_cj``, Captum's integrated gradients from the all-p input to x (``seed`` unused).

    Per cell ``Σ_j a_cj = ℓ_c(x_c) − ℓ_c(p·1)`` up to the quadrature error: per batch of cells
    the Gauss–Legendre step count doubles from ``start_steps`` until every cell's gap is ≤
    ``tolerance`` (in loss units, log1p expression for the surrogate) or ``max_steps`` is
    reached. Each step costs a forward and backward pass of every cell, so IG costs about
    ``start_steps`` times :func:`saliency` (more where the gap needs more steps).
    """
    baseline = np.full(x.shape[1], objective.p, np.float32)

    def attribution(loss: CellLoss, dense: np.ndarray, _: int) -> np.ndarray:
        return captum_methods.integrated_gradients(
            loss,
            dense,
            _target(dense),
            baseline=baseline,
            output="logit",
            tolerance=tolerance,
            start_steps=start_steps,
            max_steps=max_steps,
            batch_size=batch_size,
        ).values

    return _attribution_baseline(model, x, objective, L, candidates, attribution, batch_size=batch_size, gradient=False)


def fimap(
    model: nn.Module,
    x: sp.csr_matrix,
    objective: Objective,
    L: int,
    *,
    seed: int = 0,
    candidates: np.ndarray | None = None,
    fits: int = 5,
    penalty_range: tuple[float, float] = (1e-5, 10.0),
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
) -> BaselineResult:
    """Global FIMAP: score ``mean_c m(x_c)`` of the mask network fitted with mass ≈ L (:mod:`dmr_ray.grids.fimap`).

    λ is bisected geometrically inside ``penalty_range`` over ``fits`` short fits (``epochs``
    passes each, the same seed so fits differ only in λ): a mass above L raises λ, below
    lowers it. The fit whose mass is closest to L (in ratio) gives the scores.
    """
    x, peaks = _population(x, L, candidates)
    low, high = penalty_range
    if not 0 < low < high or not is_int(fits) or fits < 1 or not is_int(epochs) or epochs < 1:
        raise InputError(
            f"need 0 < penalty_range[0] < penalty_range[1], fits >= 1 and epochs >= 1, got "
            f"{penalty_range!r}, {fits!r}, {epochs!r}"
        )
    best: MaskFit | None = None
    for _ in range(fits):
        penalty = math.sqrt(low * high)
        fit = fit_mask(model, x, objective, peaks, penalty, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr)
        if best is None or abs(math.log(max(fit.mass, 1e-12) / L)) < abs(math.log(max(best.mass, 1e-12) / L)):
            best = fit
        low, high = (penalty, high) if fit.mass > L else (low, penalty)
    assert best is not None
    return _result(best.mean_mask, peaks, x.shape[1], L)


class _CandidateImputer:
    """``sage.DefaultImputer`` over the candidate peaks only: removed candidates are set to p, the rest keep x.

    (``sage.GroupedDefaultImputer`` with one-peak groups does the same through a boolean
    ``[batch, m] × [m, n_peaks]`` product per call, far too slow at genome scale.)
    """

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], peaks: np.ndarray, p: float):
        self.model, self.peaks, self.p = model, peaks, p
        self.num_groups = len(peaks)

    def __call__(self, x: np.ndarray, present: np.ndarray) -> np.ndarray:
        imputed = x.copy()
        imputed[:, self.peaks] = np.where(present, x[:, self.peaks], self.p)
        return self.model(imputed)


def sage(
    model: nn.Module,
    x: sp.csr_matrix,
    objective: Objective,
    L: int,
    *,
    seed: int = 0,
    candidates: np.ndarray | None = None,
    n_permutations: int | None = None,
    scores_per_peak: int = 20,
    batch_size: int = 512,
) -> BaselineResult:
    """Relaxed SAGE with ``sage-importance`` as the original runs it; score ``−φ`` (needs the ``sage`` extra).

    The players are the candidate peaks (all peaks by default; the others keep their values);
    a removed player is set to p (``DefaultImputer``; for candidates an equivalent imputer over
    the candidate columns); ``PermutationEstimator`` with its loss replaced by the
    per-cell loss, ``detect_convergence=False`` and coalitions of ``m − L`` to ``m`` players, so
    each permutation restores the last L players one by one and credits each with the loss
    change of setting it to p in the context of the others. ``n_permutations`` defaults to
    ``scores_per_peak · m / L`` (each player is scored ≈ ``scores_per_peak`` times).

    Expensive at genome scale: the whole population is densified (cells × n_peaks float32) and
    every permutation costs L + 1 forward rows; at d = 120k peaks and L = 10 the original's
    256,000 permutations give ≈ 20 scores per peak. Use ``candidates`` to shrink the players.
    """
    try:
        import sage as sage_importance
    except ImportError:
        raise InputError("the sage baseline needs sage-importance: pip install 'dmr-ray[sage]'") from None

    x, peaks = _population(x, L, candidates)
    n_players = len(peaks)
    if n_permutations is None:
        if not is_int(scores_per_peak) or scores_per_peak < 1:
            raise InputError(f"scores_per_peak must be an integer >= 1, got {scores_per_peak!r}")
        n_permutations = math.ceil(scores_per_peak * n_players / L)
    if not is_int(n_permutations) or n_permutations < 1 or not is_int(batch_size) or batch_size < 1:
        raise InputError(f"n_permutations and batch_size must be integers >= 1, got {n_permutations!r}, {batch_size!r}")
    loss = CellLoss(model.eval(), objective)

    def per_cell_loss(dense: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loss(torch.as_tensor(dense, dtype=torch.float32))[:, 0].double().numpy()

    if candidates is None:
        imputer = sage_importance.DefaultImputer(per_cell_loss, np.full(x.shape[1], objective.p, np.float32))
    else:
        imputer = _CandidateImputer(per_cell_loss, peaks, objective.p)
    estimator = sage_importance.PermutationEstimator(imputer, "mse", random_state=seed)
    estimator.loss_fn = lambda prediction, _: prediction
    explanation = estimator(
        np.asarray(x.toarray(), dtype=np.float32),
        np.zeros(x.shape[0]),
        batch_size=min(batch_size, n_permutations),
        detect_convergence=False,
        n_permutations=n_permutations,
        min_coalition=n_players - L,
        max_coalition=n_players,
        bar=False,
    )
    return _result(-np.asarray(explanation.values, dtype=np.float64), peaks, x.shape[1], L)


BASELINES: dict[str, Baseline] = {
    "random": random_subset,
    "saliency": saliency,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "fimap": fimap,
    "sage": sage,
}
"""The baselines by name, all ``(model, x, objective, L, *, seed=0, candidates=None) -> BaselineResult``."""

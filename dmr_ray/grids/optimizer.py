"""The GRIDS search: cyclic coordinate steps over a selection of L peaks (grids.md §5, §13).

Each step of :class:`GridsOptimizer` takes row ``i = step mod L`` of the selection ``r``, ranks
every peak j by the first-order predicted decrease ``−T[i, j]`` of the transition matrix
(:class:`~dmr_ray.grids.population.TransitionSums`), scores the top ``k`` swaps ``r_i → j``
exactly on the population and moves. Two modes:

* ``"faithful"`` (the original, grids.md §5): no masking (a swap onto a member makes a
  duplicate), always replace ``r_i`` by the exact argmin of the k candidates (ties → the
  best-ranked), a fixed number of steps, optionally on reshuffled minibatches of cells.
* ``"improved"`` (the default, grids.md §13): members of ``r`` are masked so ``|r| = L``; the
  current set competes with the candidates, so a swap is taken only if it lowers the exact loss
  (the loss never increases); the search stops after a full sweep without improvement. In
  :func:`grids_search` the best set so far by the eval population's loss is kept, and random
  restarts (distinct seeds) and a greedy-forward start are available.

Ranking ties (e.g. peaks closed in every cell, ``T = 0``) are broken by the lower peak index,
so runs are reproducible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.grids.population import Population, TransitionSums, as_peaks

Mode = Literal["improved", "faithful"]
Init = Literal["random", "greedy"]


@dataclass(frozen=True)
class StepInfo:
    """What one coordinate step did (passed to ``on_step``; Ray Tune reports it).

    Attributes
    ----------
    restart, step
        Restart index and the step's number within it (1 for the first step).
    row
        The coordinate ``i`` of the selection that was updated.
    removed, added
        The peak at ``r_i`` before and after the step (equal when nothing moved).
    accepted
        Whether ``r_i`` changed.
    predicted
        The first-order predicted change of the mean loss ``T[i, added]`` of the best candidate
        (NaN when there was none).
    train_loss
        Mean loss at the selection after the step, on the step's cells (the minibatch in the
        faithful minibatch mode, else the whole population).
    eval_loss
        Mean loss on the eval population, when it was evaluated at this step (else None).
    """

    restart: int
    step: int
    row: int
    removed: int
    added: int
    accepted: bool
    predicted: float
    train_loss: float
    eval_loss: float | None = None

    def as_dict(self) -> dict[str, float | int | bool | None]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RestartResult:
    """The outcome of one restart: the set it reports and its losses (means)."""

    selected: np.ndarray
    train_loss: float
    eval_loss: float | None
    steps: int
    converged: bool


@dataclass(frozen=True)
class SearchResult:
    """The result of :func:`grids_search`.

    Attributes
    ----------
    selected
        ``int64 [L]`` peak indices of the best restart (distinct in the improved mode).
    train_loss, eval_loss
        Mean loss of ``selected`` on the search population and on the eval population (None without one).
    history
        Every step of every restart, in order.
    restarts
        One :class:`RestartResult` per restart; ``best_restart`` indexes the one reported.
    mode
        ``"improved"`` or ``"faithful"``.
    """

    selected: np.ndarray
    train_loss: float
    eval_loss: float | None
    history: tuple[StepInfo, ...]
    restarts: tuple[RestartResult, ...]
    best_restart: int
    mode: str


def _top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest finite scores, best first; ties go to the lower index."""
    finite = np.flatnonzero(np.isfinite(score))
    k = min(k, len(finite))
    if k == 0:
        return np.zeros(0, np.int64)
    values = score[finite]
    threshold = np.partition(values, len(values) - k)[len(values) - k]
    above = finite[values > threshold]
    tied = finite[values == threshold][: k - len(above)]
    chosen = np.concatenate([above, tied])
    return chosen[np.lexsort((chosen, -score[chosen]))].astype(np.int64)


def _exact_scores(population: Population, r: np.ndarray, row: int, candidates: np.ndarray, chunk: int) -> np.ndarray:
    """``float64 [k]`` exact loss sums of the swaps, ``chunk`` candidates per call."""
    parts = [
        population.candidate_loss_sums(r, row, candidates[s : s + chunk]) for s in range(0, len(candidates), chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


class GridsOptimizer(torch.optim.Optimizer):
    """Cyclic coordinate steps on a selection ``int64 [L]`` held in a param group.

    Parameters
    ----------
    params
        One ``int64 [L]`` tensor (the selection); it is updated in place.
    population
        Where the transition sums and exact scores are computed.
    k
        Candidates scored exactly per step (the top k of ``−T[row]``).
    mode
        ``"improved"`` (default) or ``"faithful"`` (module docstring).
    chunk
        Candidates per :meth:`~dmr_ray.grids.population.Population.candidate_loss_sums` call.
    allowed
        ``int64 [m]`` peaks the search may select (default: all).
    rtol
        Improved mode: a swap is taken only if it lowers the loss sum by more than
        ``rtol·|loss sum|`` (above rounding noise, so the loss never increases).
    batch_size, seed
        Faithful mode only: score each step on the next minibatch of ``batch_size`` cells of a
        permutation reshuffled every epoch (seeded), as the original does (grids.md §3). The
        population must then have a ``subset(cells)`` method.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        population: Population,
        *,
        k: int = 32,
        mode: Mode = "improved",
        chunk: int = 16,
        allowed: np.ndarray | None = None,
        rtol: float = 1e-6,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        for name, value in (("k", k), ("chunk", chunk)):
            if not is_int(value) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if mode not in ("improved", "faithful"):
            raise InputError(f"mode must be 'improved' or 'faithful', got {mode!r}")
        if not rtol >= 0:
            raise InputError(f"rtol must be >= 0, got {rtol!r}")
        if batch_size is not None:
            if mode != "faithful":
                raise InputError(
                    "minibatches (batch_size) belong to the faithful mode; improved runs on a fixed population"
                )
            if not is_int(batch_size) or batch_size < 1:
                raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
            if not callable(getattr(population, "subset", None)):
                raise InputError(f"{type(population).__name__} has no subset(cells); minibatches need one")
        super().__init__(params, {"k": k, "mode": mode, "chunk": chunk})
        tensors = [p for group in self.param_groups for p in group["params"]]
        if len(tensors) != 1 or tensors[0].dtype != torch.int64 or tensors[0].ndim != 1 or len(tensors[0]) < 1:
            raise InputError("GridsOptimizer takes exactly one int64 [L] selection tensor with L >= 1")
        self.selection = tensors[0]
        n_peaks = population.n_peaks
        as_peaks(self.selection, n_peaks)
        self.population = population
        self.allowed = np.ones(n_peaks, bool)
        if allowed is not None:
            self.allowed[:] = False
            self.allowed[as_peaks(allowed, n_peaks, "allowed peaks")] = True
        self.rtol, self.batch_size = float(rtol), batch_size
        self._rng = np.random.default_rng(seed)
        self._order = np.zeros(0, np.int64)
        self._sums: tuple[bytes, TransitionSums] | None = None
        self._loss: tuple[bytes, float] | None = None
        self.last: StepInfo | None = None
        self.state[self.selection].update(step=0, stale=0)

    @property
    def converged(self) -> bool:
        """Improved mode: a full sweep (L steps in a row) made no improvement."""
        return self.param_groups[0]["mode"] == "improved" and self.state[self.selection]["stale"] >= len(self.selection)

    def _step_population(self) -> Population:
        if self.batch_size is None:
            return self.population
        if len(self._order) == 0:
            self._order = self._rng.permutation(self.population.n_cells)
        cells, self._order = self._order[: self.batch_size], self._order[self.batch_size :]
        return self.population.subset(cells)  # type: ignore[attr-defined]

    def _transition(self, population: Population, r: np.ndarray) -> TransitionSums:
        if population is not self.population:
            return population.transition_sums(r)
        if self._sums is None or self._sums[0] != r.tobytes():
            self._sums = (r.tobytes(), population.transition_sums(r))
        return self._sums[1]

    def loss_sum(self, r: np.ndarray) -> float:
        """The population's loss sum at ``r`` (cached for the current selection)."""
        if self._loss is None or self._loss[0] != r.tobytes():
            self._loss = (r.tobytes(), self.population.loss_sum(r))
        return self._loss[1]

    def step(self, closure: Callable[[], float] | None = None) -> float:  # type: ignore[override]
        """One coordinate step; returns the mean loss after it (:attr:`last` has the details)."""
        group, state = self.param_groups[0], self.state[self.selection]
        r = self.selection.numpy().astype(np.int64)
        row = state["step"] % len(r)
        population = self._step_population()
        improved = group["mode"] == "improved"
        score = -self._transition(population, r).row(r, row)
        blocked = ~self.allowed
        if improved:
            blocked[r] = True
        score[blocked] = -np.inf
        top = _top_k(score, group["k"])
        exact = _exact_scores(population, r, row, top, group["chunk"])
        removed = added = int(r[row])
        predicted = float("nan")
        if len(top):
            best = int(np.argmin(exact))
            predicted = float(-score[top[best]])
            if improved:
                current = self.loss_sum(r)
                take = exact[best] < current - self.rtol * abs(current)
            else:
                take = True
            if take:
                added = int(top[best])
        state["step"] += 1
        accepted = added != removed
        state["stale"] = 0 if accepted else state["stale"] + 1
        with torch.no_grad():
            self.selection[row] = added
        r[row] = added
        if improved or population is self.population:
            train = self.loss_sum(r) / self.population.n_cells
        else:
            train = float(exact[best]) / population.n_cells if len(top) else population.loss_sum(r) / population.n_cells
        self.last = StepInfo(0, state["step"], row, removed, added, accepted, predicted, train)
        return train


def greedy_forward(
    population: Population, L: int, *, k: int = 32, allowed: np.ndarray | None = None, chunk: int = 16
) -> np.ndarray:
    """A start for the search: add peaks one at a time, L times, each the exact best of the top k.

    At every addition the peaks are ranked by their first-order change ``add_j`` at the current
    set and the ``k`` most negative are scored exactly (a duplicated placeholder row lets
    :meth:`~dmr_ray.grids.population.Population.candidate_loss_sums` score additions).

    Returns
    -------
    ``int64 [L]`` distinct peaks.
    """
    usable = np.ones(population.n_peaks, bool)
    if allowed is not None:
        usable[:] = False
        usable[as_peaks(allowed, population.n_peaks, "allowed peaks")] = True
    chosen: list[int] = []
    for _ in range(L):
        r = np.array(chosen, np.int64)
        score = -population.transition_sums(r).add
        score[~usable] = -np.inf
        score[r] = -np.inf
        top = _top_k(score, k)
        if len(top) == 0:
            raise InputError(f"only {len(chosen)} peaks can be selected, fewer than L = {L}")
        placeholder = np.array([chosen[-1] if chosen else top[0]], np.int64)
        scores = _exact_scores(population, np.concatenate([r, placeholder]), len(chosen), top, chunk)
        chosen.append(int(top[int(np.argmin(scores))]))
    return np.array(chosen, np.int64)


def _allowed(population: Population, candidates: np.ndarray | torch.Tensor | None, L: int) -> np.ndarray:
    peaks = (
        np.arange(population.n_peaks)
        if candidates is None
        else np.unique(as_peaks(candidates, population.n_peaks, "candidates"))
    )
    if len(peaks) < L:
        raise InputError(f"L = {L} but only {len(peaks)} peaks may be selected")
    return peaks


def grids_search(
    population: Population,
    L: int,
    *,
    k: int = 32,
    steps: int | None = None,
    sweeps: int | None = None,
    restarts: int = 1,
    seed: int = 0,
    mode: Mode = "improved",
    eval_population: Population | None = None,
    candidates: np.ndarray | torch.Tensor | None = None,
    on_step: Callable[[StepInfo], object] | None = None,
    init: Init = "random",
    batch_size: int | None = None,
    chunk: int = 16,
    rtol: float = 1e-6,
    eval_every: int = 10,
) -> SearchResult:
    """Search the L peaks whose perturbation most lowers the population's mean loss.

    Parameters
    ----------
    population
        The search (training) cells.
    L
        Size of the selection.
    k, chunk, rtol, batch_size
        See :class:`GridsOptimizer`.
    steps, sweeps
        Step budget per restart: ``steps``, or ``sweeps·L`` (default 50 sweeps, the original's
        500 steps at L = 10). Faithful runs use all of it; improved runs stop earlier after a
        sweep without improvement.
    restarts, seed
        Restart i starts from ``numpy.random.default_rng([seed, i])``; the restart with the best
        eval loss (train loss without an eval population) is reported.
    mode
        ``"improved"`` (default) or ``"faithful"``.
    eval_population
        Held-out cells. Improved mode: evaluated after every accepted swap, and the best set so
        far by its loss is the restart's result. Faithful mode: evaluated every ``eval_every``
        steps and at the end; the set after the last step is the result (as the original).
    candidates
        ``int [m]`` peaks the search may select (e.g. those near the gene's TSS); default all.
    on_step
        Called with a :class:`StepInfo` after every step.
    init
        ``"random"``: L distinct allowed peaks. ``"greedy"``: restart 0 starts from
        :func:`greedy_forward`, the others at random.

    Raises
    ------
    InputError
        For bad options (checked before any step runs).
    """
    if not is_int(L) or L < 1:
        raise InputError(f"L must be an integer >= 1, got {L!r}")
    for name, value in (("restarts", restarts), ("eval_every", eval_every)):
        if not is_int(value) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    if steps is not None and sweeps is not None:
        raise InputError("give steps or sweeps, not both")
    for name, limit in (("steps", steps), ("sweeps", sweeps)):
        if limit is not None and (not is_int(limit) or limit < 1):
            raise InputError(f"{name} must be an integer >= 1, got {limit!r}")
    if init not in ("random", "greedy"):
        raise InputError(f"init must be 'random' or 'greedy', got {init!r}")
    if not is_int(seed):
        raise InputError(f"seed must be an integer, got {seed!r}")
    if eval_population is not None and eval_population.n_peaks != population.n_peaks:
        raise InputError(
            f"eval population has {eval_population.n_peaks} peaks, the search population {population.n_peaks}"
        )
    allowed = _allowed(population, candidates, L)
    budget = steps if steps is not None else (sweeps if sweeps is not None else 50) * L

    def evaluate(r: np.ndarray) -> float | None:
        return None if eval_population is None else eval_population.loss_sum(r) / eval_population.n_cells

    history: list[StepInfo] = []
    outcomes: list[RestartResult] = []
    for restart in range(restarts):
        rng = np.random.default_rng([seed, restart])
        if init == "greedy" and restart == 0:
            start = greedy_forward(population, L, k=k, allowed=allowed, chunk=chunk)
        else:
            start = rng.choice(allowed, L, replace=False).astype(np.int64)
        selection = torch.as_tensor(start)
        optimizer = GridsOptimizer(
            [selection], population, k=k, mode=mode, chunk=chunk, allowed=allowed, rtol=rtol,
            batch_size=batch_size, seed=int(rng.integers(2**63)),
        )  # fmt: skip
        best = start.copy()
        best_eval = evaluate(best)
        for _ in range(budget):
            optimizer.step()
            info = optimizer.last
            assert info is not None
            eval_now = None
            r = selection.numpy().copy()
            if mode == "improved" and info.accepted:
                eval_now = evaluate(r)
                if eval_now is None or best_eval is None or eval_now < best_eval:
                    best, best_eval = r, eval_now
            elif mode == "faithful" and info.step % eval_every == 0:
                eval_now = evaluate(r)
            info = dataclasses.replace(info, restart=restart, eval_loss=eval_now)
            history.append(info)
            if on_step is not None:
                on_step(info)
            if optimizer.converged:
                break
        if mode == "faithful":
            best = selection.numpy().copy()
            best_eval = evaluate(best)
        state = optimizer.state[selection]
        outcomes.append(
            RestartResult(
                best, population.loss_sum(best) / population.n_cells, best_eval, state["step"], optimizer.converged
            )
        )
    key = [(o.eval_loss if o.eval_loss is not None else o.train_loss) for o in outcomes]
    chosen = int(np.argmin(key))
    winner = outcomes[chosen]
    return SearchResult(
        winner.selected, winner.train_loss, winner.eval_loss, tuple(history), tuple(outcomes), chosen, mode
    )

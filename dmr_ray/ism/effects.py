"""Where the effects of a saturation-mutagenesis call are collected, checked and returned.

Both paths (exact and fast) write the per-mutant mean and standard deviation over replicates
into an :class:`EffectTable` and finish with :meth:`EffectTable.result`. The fast path, which
runs one replicate at a time, reduces with :class:`ReplicateMoments` (Welford's update by
:func:`dmr_ray.stats.moments.combine`, float64).
"""

from __future__ import annotations

import torch

from dmr_ray.errors import NonFinitePredictionError
from dmr_ray.ism.mutants import MutantSites
from dmr_ray.ism.result import ISMResult
from dmr_ray.stats.moments import Moments, combine
from dmr_ray.uncertainty.predictors import ReplicatePredictor


def check_references(ref_pred: torch.Tensor, task_names: tuple[str, ...] | None, first_seq: int = 0) -> None:
    """Raise :class:`NonFinitePredictionError` if a reference prediction ``[R, n, T]`` is not finite.

    ``first_seq`` is the index of row 0 in the caller's numbering (for the message).
    """
    bad = ~torch.isfinite(ref_pred)
    if bad.any():
        replicate, seq, task = (int(v[0]) for v in torch.nonzero(bad).T)
        name = f" ({task_names[task]!r})" if task_names else ""
        raise NonFinitePredictionError(
            f"sequence {first_seq + seq}: non-finite prediction for the reference "
            f"(replicate {replicate}, task {task}{name})"
        )


class EffectTable:
    """``beta`` and ``se`` ``float32 [n, L, 3, T]`` on the compute device, NaN until written,
    and optionally every replicate's effects ``float32 [R, n, L, 3, T]``.

    Parameters
    ----------
    n, length, n_tasks
        Sequences, positions and tasks.
    device
        Where the table lives.
    n_replicates
        ``R`` to keep every replicate's effects (:attr:`replicates`), ``0`` (default) to keep
        only their moments.
    """

    def __init__(self, n: int, length: int, n_tasks: int, device: torch.device, n_replicates: int = 0):
        self.beta = torch.full((n, length, 3, n_tasks), float("nan"), device=device)
        self.se = torch.full_like(self.beta, float("nan"))
        self.replicates = torch.full((n_replicates, *self.beta.shape), float("nan"), device=device)

    def put(self, sites: MutantSites, mean: torch.Tensor, sd: torch.Tensor, diffs: torch.Tensor) -> None:
        """Write the ``[B, T]`` replicate mean and SD of the mutants ``sites`` (and, when
        replicates are kept, their ``[R, B, T]`` paired differences ``diffs``)."""
        self.beta[sites.seq, sites.pos, sites.slot] = mean.float()
        self.se[sites.seq, sites.pos, sites.slot] = sd.float()
        if len(self.replicates):
            self.replicates[:, sites.seq, sites.pos, sites.slot] = diffs.float()

    def put_replicate(self, replicate: int, start: int, diffs: torch.Tensor, valid: torch.Tensor) -> None:
        """Keep replicate ``replicate``'s ``[g, L, 3, T]`` effects of sequences ``start ..
        start+g-1`` at their ``valid`` ``[g, L]`` positions (no-op when replicates are not kept)."""
        if len(self.replicates):
            rows = slice(start, start + diffs.shape[0])
            kept = self.replicates[replicate, rows]
            self.replicates[replicate, rows] = torch.where(valid[:, :, None, None], diffs.float(), kept)

    def put_rows(self, start: int, mean: torch.Tensor, sd: torch.Tensor, valid: torch.Tensor) -> None:
        """Write the ``[g, L, 3, T]`` mean and SD of sequences ``start .. start+g-1`` at their
        ``valid`` ``[g, L]`` positions."""
        rows = slice(start, start + mean.shape[0])
        keep = valid[:, :, None, None]
        self.beta[rows] = torch.where(keep, mean.float(), self.beta[rows])
        self.se[rows] = torch.where(keep, sd.float(), self.se[rows])

    def result(
        self, ref_pred: torch.Tensor, valid: torch.Tensor, predictor: ReplicatePredictor, ddof: int
    ) -> ISMResult:
        """Check every mutated position and return the :class:`ISMResult`.

        Parameters
        ----------
        ref_pred
            ``[R, n, T]`` reference predictions.
        valid
            ``bool [n, L]``: the mutated (non-N) positions.
        predictor
            The predictor (task names, replicate count and kind).
        ddof
            Delta degrees of freedom of the SDs.

        Raises
        ------
        NonFinitePredictionError
            A mutant's effect or SD is not finite; names the sequence and position.
        """
        finite = torch.isfinite(self.beta) & torch.isfinite(self.se) & torch.isfinite(self.replicates).all(dim=0)
        bad = ~finite.all(dim=3).all(dim=2) & valid
        if bad.any():
            seq, pos = (int(v[0]) for v in torch.nonzero(bad).T)
            raise NonFinitePredictionError(
                f"sequence {seq}: non-finite prediction for a mutant at position {pos} (0-based)"
            )
        ref_sd, ref_mean = torch.std_mean(ref_pred.double(), dim=0, correction=ddof)
        return ISMResult(
            beta=self.beta.cpu().numpy(),
            se=self.se.cpu().numpy(),
            ref_mean=ref_mean.float().cpu().numpy(),
            ref_se=ref_sd.float().cpu().numpy(),
            task_names=predictor.task_names,
            n_replicates=predictor.n_replicates,
            replicate_kind=predictor.kind,
            ddof=ddof,
            replicate_beta=self.replicates.cpu().numpy() if len(self.replicates) else None,
        )


class ReplicateMoments:
    """Running moments over replicates, one replicate folded in at a time (float64).

    Each replicate's values enter as one observation ``Moments(1, x, 0)`` merged by
    :func:`dmr_ray.stats.moments.combine` (Welford's update; formula there).

    The moments start empty (zeros of the first replicate's shape, dtype float64 and device).
    """

    def __init__(self) -> None:
        self.moments: Moments[torch.Tensor] | None = None

    def add(self, values: torch.Tensor) -> None:
        """Fold in one replicate's values."""
        values = values.double()
        zeros = torch.zeros_like(values)
        self.moments = combine(self.moments or Moments(0, zeros, zeros), Moments(1, values, zeros))

    def std_mean(self, ddof: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sd, mean)`` with ``ddof`` delta degrees of freedom (as ``torch.std_mean``)."""
        if self.moments is None:
            raise AssertionError("no replicate was added")
        return self.moments.variance(ddof).sqrt(), self.moments.mean

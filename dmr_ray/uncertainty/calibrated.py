"""A replicate predictor whose predictions pass through a fitted recalibration.

Recalibration maps each replicate's prediction through the calibrated predictive distribution
of *all* replicates for the same input (their mean and SD), so it cannot be applied to one
replicate alone. :class:`CalibratedPredictor` therefore evaluates every replicate of an input
together, applies the map, and serves single replicates from that result: ISM asks for
replicate 0, 1, ... of the same batch in turn and the batch is evaluated once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import torch

from dmr_ray.uncertainty.calibration import load_recalibrator
from dmr_ray.uncertainty.predictors import ReplicatePredictor


class CalibratedPredictor(ReplicatePredictor):
    """``base`` with ``recalibrator.apply`` on its ``[R, batch, tasks]`` predictions.

    Parameters
    ----------
    base
        The uncalibrated replicate predictor.
    recalibrator
        An ``IsotonicRecalibrator`` or ``VarianceScaler`` (``apply([R, n, T]) -> [R, n, T]``).

    Notes
    -----
    The fast ISM path evaluates replicates layer by layer and cannot apply the map
    (``layerwise`` is False), so ISM of a calibrated predictor takes the exact path.
    """

    layerwise = False

    def __init__(self, base: ReplicatePredictor, recalibrator) -> None:
        self.base = base
        self.recalibrator = recalibrator
        self.kind = base.kind
        self.networks = base.networks
        self.selector = base.selector
        self.input_length = base.input_length
        self.device = base.device
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def n_replicates(self) -> int:
        """Number of replicates ``R`` (those of ``base``)."""
        return self.base.n_replicates

    def to(self, device: str | torch.device) -> CalibratedPredictor:
        """Move ``base`` to ``device``; returns ``self``."""
        self.base.to(device)
        self.device = self.base.device
        self._cache = None
        return self

    def replicate_network(self, replicate: int) -> contextlib.AbstractContextManager:
        """Not available: a single replicate's network output is not calibrated."""
        raise NotImplementedError("a calibrated predictor evaluates all replicates together")

    @torch.inference_mode()
    def predict_all(self, onehot: torch.Tensor) -> torch.Tensor:
        """Recalibrated predictions of every replicate: ``float32 [R, batch, tasks]``."""
        raw = self.base.predict_all(onehot).double().cpu().numpy()
        return torch.from_numpy(self.recalibrator.apply(raw)).to(self.device, torch.float32)

    @torch.inference_mode()
    def predict(self, onehot: torch.Tensor, replicate: int) -> torch.Tensor:
        """Replicate ``replicate`` of :meth:`predict_all`, computed once per input tensor."""
        onehot = onehot.to(self.device, torch.float32)
        cached = self._cache
        if cached is None or cached[0].shape != onehot.shape or not torch.equal(cached[0], onehot):
            # Keyed on content, not identity: a reused buffer must never serve stale results.
            cached = self._cache = (onehot.clone(), self.predict_all(onehot))
        return cached[1][replicate]


def calibration_digest(path: str | Path | None) -> str:
    """``"none"`` or a sha256 of the recalibration in ``calibration.json`` (a run identity)."""
    if path is None:
        return "none"
    recalibrator = json.loads(Path(path).read_text())["recalibrator"]
    canonical = json.dumps(recalibrator, sort_keys=True, separators=(",", ":"))
    return f"{recalibrator.get('kind', 'recalibration')}:sha256:{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def with_calibration(predictor: ReplicatePredictor, path: str | Path | None) -> ReplicatePredictor:
    """``predictor`` recalibrated by the map in ``calibration.json`` at ``path`` (or unchanged)."""
    if path is None:
        return predictor
    return CalibratedPredictor(predictor, load_recalibrator(json.loads(Path(path).read_text())["recalibrator"]))

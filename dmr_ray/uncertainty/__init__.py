"""Replicate predictors (deep ensembles, MC dropout with locked masks) and calibration.

* :class:`ReplicatePredictor`: ``predict(onehot, r)`` / ``predict_all(onehot)``.
* :class:`EnsemblePredictor`, :class:`MCDropoutPredictor`, :class:`SinglePredictor`;
  :class:`ReplicateSubset` (some replicates of another predictor).
* :func:`build_predictor` (from a :class:`~dmr_ray.models.ModelSpec`), :func:`as_predictor`;
  :func:`plain_output` (a selector-less output as ``[batch, tasks]``).
"""

from dmr_ray.uncertainty.dropout import LockedDropout, lock_dropout, mask_seed
from dmr_ray.uncertainty.predictors import (
    EnsemblePredictor,
    MCDropoutPredictor,
    ReplicatePredictor,
    ReplicateSubset,
    SinglePredictor,
    as_predictor,
    build_predictor,
    plain_output,
)

__all__ = [
    "EnsemblePredictor",
    "LockedDropout",
    "MCDropoutPredictor",
    "ReplicatePredictor",
    "ReplicateSubset",
    "SinglePredictor",
    "as_predictor",
    "build_predictor",
    "lock_dropout",
    "mask_seed",
    "plain_output",
]

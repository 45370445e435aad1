"""Saturation mutagenesis on the model's device.

* :func:`saturation_mutagenesis` -> :class:`ISMResult` (``beta``, ``se`` ``[n, L, 3, T]``;
  ``ref_mean``, ``ref_se`` ``[n, T]``); ``fast=True``/``"auto"`` recomputes only the
  receptive field of each substitution (:mod:`dmr_ray.ism.fast`).
* :func:`fast_ism_eligibility`: whether (and why not) the fast path can run a model.
* :class:`FastPlanCache`: fast-path plans kept across calls (built once per predictor,
  length, device, mode and precision); :func:`check_precision` validates a ``precision``.
* :func:`alt_alleles`: the alternative allele of each substitution slot.
* :class:`NonFinitePredictionError` (defined in :mod:`dmr_ray.errors`, re-exported here).
"""

from dmr_ray.errors import NonFinitePredictionError
from dmr_ray.ism.eligibility import Eligibility, fast_ism_eligibility
from dmr_ray.ism.exact import DEFAULT_MEMORY_BUDGET, auto_batch_size, saturation_mutagenesis
from dmr_ray.ism.fast import FastPlanCache, Precision, check_precision
from dmr_ray.ism.mutants import alt_alleles
from dmr_ray.ism.result import ISMResult

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "Eligibility",
    "FastPlanCache",
    "ISMResult",
    "NonFinitePredictionError",
    "Precision",
    "alt_alleles",
    "auto_batch_size",
    "check_precision",
    "fast_ism_eligibility",
    "saturation_mutagenesis",
]

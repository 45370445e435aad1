"""Saturation mutagenesis on the model's device.

* :func:`saturation_mutagenesis` -> :class:`ISMResult` (``beta``, ``se`` ``[n, L, 3, T]``;
  ``ref_mean``, ``ref_se`` ``[n, T]``).
* :func:`alt_alleles`: the alternative allele of each substitution slot.
"""

from dmr_ray.ism.exact import DEFAULT_MEMORY_BUDGET, NonFinitePredictionError, auto_batch_size, saturation_mutagenesis
from dmr_ray.ism.mutants import alt_alleles
from dmr_ray.ism.result import ISMResult

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "ISMResult",
    "NonFinitePredictionError",
    "alt_alleles",
    "auto_batch_size",
    "saturation_mutagenesis",
]

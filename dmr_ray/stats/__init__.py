"""The statistics core: MR estimators, their batched forms and R's ``density()`` grid.

* :mod:`dmr_ray.stats.mr`: IVW, MR-Egger, weighted median, MBE (exact against R's
  MendelianRandomization 0.10.0), a Steiger-style directionality test, Cochran's Q and I^2.
* :mod:`dmr_ray.stats.batched`: the same over padded ``[regions, J]`` arrays with a mask.
* :mod:`dmr_ray.stats.density`: R's ``density()`` grid and its vectorised argmax.
* :mod:`dmr_ray.stats.lmrob` (MM-regression) and :mod:`dmr_ray.stats.meta` (random-effects
  meta-analysis) are imported on use.
* :mod:`dmr_ray.stats.moments`: sample moments merged exactly (Chan/Welford), for any array
  type; :mod:`dmr_ray.stats.workers`: the ``threads`` option of the density search and MBE.

Nothing here imports torch or ray.
"""

from dmr_ray.stats import batched
from dmr_ray.stats.batched import BatchedMRResult, BatchedSteigerResult, Reason, ragged_to_padded
from dmr_ray.stats.density import RDensity, density_mode, r_density
from dmr_ray.stats.mr import (
    Heterogeneity,
    MRResult,
    SteigerResult,
    cochran_q,
    egger,
    i_squared,
    ivw,
    mbe,
    steiger,
    weighted_median,
)

__all__ = [
    "BatchedMRResult",
    "BatchedSteigerResult",
    "Heterogeneity",
    "MRResult",
    "RDensity",
    "Reason",
    "SteigerResult",
    "batched",
    "cochran_q",
    "density_mode",
    "egger",
    "i_squared",
    "ivw",
    "mbe",
    "r_density",
    "ragged_to_padded",
    "steiger",
    "weighted_median",
]

"""The statistics core: MR estimators, their batched forms and R's ``density()`` grid.

* :mod:`dmr_ray.stats.mr`: IVW, MR-Egger, weighted median, MBE (exact against R's
  MendelianRandomization 0.10.0), a Steiger-style directionality test, Cochran's Q and I^2.
* :mod:`dmr_ray.stats.batched`: the same over padded ``[regions, J]`` arrays with a mask.
* :mod:`dmr_ray.stats.density`: R's ``density()`` grid and its vectorised argmax.
* :mod:`dmr_ray.stats.lmrob` (MM-regression) and :mod:`dmr_ray.stats.meta` (random-effects
  meta-analysis) are imported on use.
* :mod:`dmr_ray.stats.moments`: sample moments merged exactly (Chan/Welford), for any array
  type; :mod:`dmr_ray.stats.workers`: the ``threads`` option of the density search and MBE.

Nothing here imports torch or ray. The names below are imported on first use (importing
:mod:`dmr_ray.stats.moments` alone does not load numba).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "batched": ("BatchedMRResult", "BatchedSteigerResult", "Reason", "ragged_to_padded"),
    "density": ("RDensity", "density_mode", "r_density"),
    "mr": (
        "Heterogeneity",
        "MRResult",
        "SteigerResult",
        "cochran_q",
        "egger",
        "i_squared",
        "ivw",
        "mbe",
        "steiger",
        "weighted_median",
    ),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import the estimators on first use, so that importing a light module of this package
    (``moments``, ``workers``) does not load the numba-compiled density kernels."""
    if name == "batched":
        return importlib.import_module("dmr_ray.stats.batched")
    if name in _HOME:
        return getattr(importlib.import_module(f"dmr_ray.stats.{_HOME[name]}"), name)
    raise AttributeError(f"module 'dmr_ray.stats' has no attribute {name!r}")


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

"""dmr_ray: distributed audits of what genomic deep-learning models have learned."""

from dmr_ray.errors import (
    ConfigError,
    DmrRayError,
    InputError,
    InsufficientInstrumentsError,
    ModelSpecError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DmrRayError",
    "InputError",
    "InsufficientInstrumentsError",
    "ModelSpecError",
    "__version__",
]

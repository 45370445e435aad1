"""The error hierarchy of dmr_ray.

Every error a user can cause is a :class:`DmrRayError`; its message names the file,
field, index or value at fault. The CLI turns these into one line and a non-zero exit.
"""

from __future__ import annotations


class DmrRayError(Exception):
    """Base class of every error dmr_ray raises on purpose."""


class InputError(DmrRayError, ValueError):
    """Bad input data: malformed FASTA/BED/Zarr, non-ACGT symbols, wrong shapes, NaN, zero SEs."""


class ModelSpecError(DmrRayError, ValueError):
    """A model spec that cannot be turned into a working predictor."""


class ConfigError(DmrRayError, ValueError):
    """An invalid configuration file or option."""


class InsufficientInstrumentsError(DmrRayError, ValueError):
    """Too few instruments for the requested MR estimator."""


class ResumeConflictError(DmrRayError):
    """An existing output was produced with different inputs or options and cannot be resumed."""


class ChunkFailedError(DmrRayError):
    """A chunk of work failed for a deterministic reason (e.g. non-finite predictions)."""


class NonFinitePredictionError(ChunkFailedError, InputError):
    """A replicate predicted NaN or infinity for a reference or a mutant (names the sequence)."""


class EngineError(DmrRayError, RuntimeError):
    """The run cannot go on (e.g. every actor of a replicate group is lost); committed chunks are kept."""


class StalledRunError(EngineError, TimeoutError):
    """Nothing finished within the stall timeout; the message says what was waiting."""

"""Tiny argument checks shared across packages."""

from __future__ import annotations

from numbers import Integral


def is_int(value: object) -> bool:
    """True for integers (Python or numpy), False for bools and everything else."""
    return isinstance(value, Integral) and not isinstance(value, bool)

"""Tiny argument checks shared across packages."""

from __future__ import annotations

from numbers import Integral
from typing import TypeGuard


def is_int(value: object) -> TypeGuard[int]:
    """True for integers (Python or numpy), False for bools and everything else.

    A numpy integer passes too; type checkers then treat the value as an ``int``, which it
    behaves as.
    """
    return isinstance(value, Integral) and not isinstance(value, bool)

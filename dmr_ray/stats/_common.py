"""Shared pieces of the MR estimators: input checks, inference helpers and R's normal stream.

Everything here works on padded ``[regions, J]`` arrays with a boolean mask, so the scalar
estimators (one region) and the batched ones share one implementation.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeAlias

import numpy as np
from scipy import special

from dmr_ray.errors import InputError, InsufficientInstrumentsError

__all__ = [
    "MAD_CONSTANT",
    "Padded",
    "Seed",
    "check_options",
    "masked_mad",
    "masked_median",
    "masked_sd",
    "r_rnorm",
    "require_instruments",
    "scratch",
    "take_last",
    "wald_inference",
]

MAD_CONSTANT = 1.4826
"""R's ``mad()`` consistency constant."""

Seed: TypeAlias = int | np.random.Generator | None
"""An ``int`` (R's ``set.seed``), a Generator (used as is) or None (fresh entropy)."""

_MT_N = 624
_I2_32M1 = 2.328306437080797e-10  # 1 / (2^32 - 1), R's fixup value for a zero uniform
_BIG = 134217728.0  # 2^27, R's INVERSION normal generator
_RNORM_BLOCK = 1 << 15


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Padded:
    """Validated instrument sets as float64 ``[R, J]`` arrays with a mask.

    Padded slots hold harmless values (bx = 1, SEs = 1, by = 0); ``n`` counts the real
    instruments of each region.
    """

    bx: np.ndarray
    bxse: np.ndarray
    by: np.ndarray
    byse: np.ndarray
    valid: np.ndarray
    n: np.ndarray

    @classmethod
    def build(
        cls,
        bx: np.ndarray,
        bxse: np.ndarray,
        by: np.ndarray,
        byse: np.ndarray,
        mask: np.ndarray | None = None,
        *,
        scalar: bool = False,
    ) -> Padded:
        """Validate summary statistics.

        Parameters
        ----------
        bx, bxse, by, byse : array_like
            Exposure effects, their SEs, outcome effects, their SEs: ``[J]`` when ``scalar``,
            else ``[R, J]``.
        mask : array_like of bool, optional
            ``[R, J]``; True marks a real instrument. Padding may hold anything (NaN too).
        scalar : bool
            Inputs are one instrument set; error messages then name plain indices.

        Raises
        ------
        InputError
            Mismatched shapes, non-finite effects, SEs that are not finite and > 0, or
            bx == 0 (such a variant is no instrument; R's ``sign(0) = 0`` would zero it).
        """
        names = ("bx", "bxse", "by", "byse")
        arrays = [np.asarray(a, dtype=np.float64) for a in (bx, bxse, by, byse)]
        ndim = 1 if scalar else 2
        for name, a in zip(names, arrays, strict=True):
            if a.ndim != ndim:
                raise InputError(f"{name} must be {ndim}-dimensional, got shape {a.shape}")
            if a.shape != arrays[0].shape:
                raise InputError(f"{name} has shape {a.shape} but bx has shape {arrays[0].shape}")
        arrays = [a[None, :] if scalar else a for a in arrays]
        if mask is None:
            valid = np.ones(arrays[0].shape, dtype=bool)
        else:
            valid = np.asarray(mask, dtype=bool)
            if valid.shape != arrays[0].shape:
                raise InputError(f"mask has shape {valid.shape} but bx has shape {arrays[0].shape}")
        for name, a in zip(names, arrays, strict=True):
            _check(name, a, valid, scalar)
        fill = (1.0, 1.0, 0.0, 1.0)
        padded = (np.ascontiguousarray(np.where(valid, a, f)) for a, f in zip(arrays, fill, strict=True))
        bx_, bxse_, by_, byse_ = padded
        return cls(bx_, bxse_, by_, byse_, valid, valid.sum(axis=1))


def _check(name: str, a: np.ndarray, valid: np.ndarray, scalar: bool) -> None:
    if name.endswith("se"):
        bad, why = ~(np.isfinite(a) & (a > 0)), "standard errors must be finite and > 0"
    else:
        bad, why = ~np.isfinite(a), "effects must be finite"
    if name == "bx" and not (valid & bad).any():
        bad, why = a == 0, "a variant without exposure effect cannot be an instrument"
    bad &= valid
    if bad.any():
        region, slot = (int(i) for i in np.argwhere(bad)[0])
        where = f"[{slot}]" if scalar else f"[region {region}, instrument {slot}]"
        raise InputError(f"{name}{where} = {float(a[region, slot])!r}: {why}")


def require_instruments(n: int, minimum: int, method: str) -> None:
    """Raise :class:`InsufficientInstrumentsError` when ``n < minimum``."""
    if n < minimum:
        raise InsufficientInstrumentsError(f"{method} needs at least {minimum} instruments, got {n}")


def check_options(**choices: tuple[object, tuple[object, ...]]) -> None:
    """Raise :class:`InputError` for an option value outside its allowed set.

    Each keyword maps an option name to ``(value, allowed_values)``.
    """
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise InputError(f"{name}={value!r}; expected one of {', '.join(map(repr, allowed))}")


# --------------------------------------------------------------------------- masked reductions


def masked_median(a: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """R's ``median`` of the valid entries along the last axis (NaN where none).

    Parameters
    ----------
    a
        Values ``[..., J]``.
    valid
        Boolean mask broadcastable to ``a``; None means every entry is data (then a NaN
        entry makes its row's median NaN, as in R).

    Returns
    -------
    numpy.ndarray
        ``[...]``: the middle valid value of each row, or the mean ``(lo + hi) / 2`` of the
        two middle ones for an even count.
    """
    if valid is None:
        return np.median(a, axis=-1)
    n = valid.sum(axis=-1)
    if a.shape[-1] == 0:
        return np.full(n.shape, np.nan)
    s = np.sort(np.where(valid, a, np.inf), axis=-1)
    lo = take_last(s, np.maximum(n - 1, 0)[..., None] // 2)[..., 0]
    hi = take_last(s, np.minimum(n // 2, a.shape[-1] - 1)[..., None])[..., 0]
    return np.where(n > 0, (lo + hi) / 2.0, np.nan)


def masked_mad(a: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """R's ``mad``: ``MAD_CONSTANT * median(|a - median(a)|)`` of the valid entries along the
    last axis (``valid`` as in :func:`masked_median`)."""
    centre = masked_median(a, valid)
    return MAD_CONSTANT * masked_median(np.abs(a - centre[..., None]), valid)


def masked_sd(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """R's ``sd`` (n - 1 denominator) of the valid entries along the last axis."""
    n = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, a, 0.0).sum(axis=-1) / n
        dev = np.where(valid, a - mean[..., None], 0.0)
        return np.sqrt((dev * dev).sum(axis=-1) / (n - 1))


def take_last(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``take_along_axis(a, index, -1)``, ``a`` broadcast over ``index``, as one flat gather.

    Several times faster than ``take_along_axis`` for short last axes.
    """
    lead = np.arange(a.size // a.shape[-1]).reshape(a.shape[:-1] + (1,)) * a.shape[-1]
    return np.ascontiguousarray(a).reshape(-1)[lead + index]


_scratch = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
    """A per-thread scratch array for hot loops, reused from call to call (contents undefined).

    Fresh multi-megabyte temporaries are page-faulted in on every call once glibc has handed
    them back to the system; in the bootstrap kernels that cost as much as the arithmetic.
    Each name keeps its largest request per thread.
    """
    pool = getattr(_scratch, "pool", None)
    if pool is None:
        pool = _scratch.pool = {}
    size = math.prod(shape)
    buf = pool.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = pool[name] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


# --------------------------------------------------------------------------- inference


def wald_inference(
    est: np.ndarray,
    se: np.ndarray,
    df: np.ndarray | float,
    distribution: str,
    alpha: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidence bounds and two-sided p-value of ``est / se`` (R's ``ci_normal`` / ``ci_t``).

    Returns
    -------
    tuple of ndarray
        ``(ci_low, ci_high, p_value)``; with ``distribution="t-dist"`` the reference is
        Student's t with ``df`` degrees of freedom, else the standard normal.
    """
    z = np.abs(est / se)
    if distribution == "t-dist":
        q = special.stdtrit(df, 1.0 - alpha / 2.0)
        p = 2.0 * special.stdtr(df, -z)
    else:
        q = special.ndtri(1.0 - alpha / 2.0)
        p = 2.0 * special.ndtr(-z)
    return est - q * se, est + q * se, p


# --------------------------------------------------------------------------- R's normal stream


@lru_cache(maxsize=16)
def _r_mt_key(seed: int) -> np.ndarray:
    """Mersenne-Twister state that R's ``set.seed(seed)`` produces (RNG.c, ``RNG_Init``)."""
    s = seed & 0xFFFFFFFF
    for _ in range(50):  # initial scrambling
        s = (69069 * s + 1) & 0xFFFFFFFF
    key = np.empty(_MT_N + 1, dtype=np.uint32)
    for j in range(_MT_N + 1):
        s = (69069 * s + 1) & 0xFFFFFFFF
        key[j] = s
    key = key[1:]  # slot 0 is R's position counter ("dummy[0]"), reset to 624
    key.setflags(write=False)
    return key


_STREAM_CACHE_BYTES = 64 << 20
"""Memory the cache of R normal streams may hold (see :func:`r_rnorm`)."""

_streams: OrderedDict[int, np.ndarray] = OrderedDict()
_streams_lock = threading.Lock()


def r_rnorm(seed: int, n: int) -> np.ndarray:
    """The first ``n`` values of R's ``set.seed(seed); rnorm(n)``, read-only.

    R's defaults are reproduced: Mersenne-Twister, ``normal.kind = "Inversion"`` (two
    uniforms per normal, ``qnorm((floor(2^27 u1) + u2) / 2^27)``). ``rnorm(n, mean, sd)``
    with vector arguments is ``mean + sd * r_rnorm(seed, n)`` element by element. The
    quantile function is scipy's ``ndtri`` (R uses AS241); both are accurate to about one
    ulp, so draws agree with R's to ~1e-16 relative.

    Streams are cached: every bootstrap with the same ``int`` seed (MendelianRandomization's
    default 314159265 on every call) replays the same draws, and the inverse normal costs
    ~15 ns a draw, more than the bootstrap itself. The longest stream drawn per seed is kept
    (a shorter request is its prefix), least recently used first out once the streams
    exceed :data:`_STREAM_CACHE_BYTES`. The cache is thread-safe; the returned array is a
    read-only view into it.
    """
    seed, n = int(seed), int(n)
    with _streams_lock:
        cached = _streams.get(seed)
        if cached is not None and cached.size >= n:
            _streams.move_to_end(seed)
            return cached[:n]
    values = _r_rnorm(seed, n)
    values.setflags(write=False)
    if values.nbytes <= _STREAM_CACHE_BYTES:
        with _streams_lock:
            cached = _streams.get(seed)
            if cached is None or cached.size < n:
                _streams[seed] = values
            _streams.move_to_end(seed)
            while sum(a.nbytes for a in _streams.values()) > _STREAM_CACHE_BYTES:
                _streams.popitem(last=False)
    return values


def _r_rnorm(seed: int, n: int) -> np.ndarray:
    """:func:`r_rnorm` without the cache (in blocks that stay in cache)."""
    gen = np.random.MT19937()
    gen.state = {"bit_generator": "MT19937", "state": {"key": _r_mt_key(seed), "pos": _MT_N}}
    out = np.empty(n)
    for start in range(0, n, _RNORM_BLOCK):
        stop = min(n, start + _RNORM_BLOCK)
        raw = gen.random_raw(2 * (stop - start)).reshape(-1, 2)
        high = out[start:stop]
        np.multiply(raw[:, 0], 0.03125, out=high)
        np.floor(high, out=high)  # (int)(2^27 * u1), exact: u1 = raw * 2^-32
        low = raw[:, 1] * 2.3283064365386963e-10  # u2 = raw * 2^-32
        low[low == 0.0] = 0.5 * _I2_32M1  # R's fixup keeps uniforms inside (0, 1)
        high += low
        high /= _BIG
        special.ndtri(high, out=high)
    return out

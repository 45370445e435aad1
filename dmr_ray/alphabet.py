"""The nucleotide alphabet: tokens, one-hot tensors and the conversions between them.

Tokens are ``uint8`` with A=0, C=1, G=2, T=3 and N=4. One-hot tensors are ``float32``
``[n, 4, L]`` (channels first); N is a column of zeros.
"""

from __future__ import annotations

from typing import Literal, NoReturn

import numpy as np

from dmr_ray.errors import InputError

ALPHABET = "ACGT"
N_TOKEN = 4

_INVALID = 255
_ENCODE = np.full(256, _INVALID, dtype=np.uint8)
for _token, _base in enumerate(ALPHABET + "N"):
    _ENCODE[ord(_base)] = _token
    _ENCODE[ord(_base.lower())] = _token
_DECODE = np.frombuffer((ALPHABET + "N").encode("ascii"), dtype=np.uint8)
_ONEHOT = np.vstack([np.eye(len(ALPHABET), dtype=np.float32), np.zeros((1, len(ALPHABET)), np.float32)])
_COMPLEMENT = np.array([3, 2, 1, 0, N_TOKEN], dtype=np.uint8)


def encode(seq: str, *, record: str = "", offset: int = 0) -> np.ndarray:
    """Turn a nucleotide string into tokens.

    Parameters
    ----------
    seq
        Letters from ``ACGTN`` in either case (soft-masked sequence is accepted).
    record
        Name of the sequence the string comes from, used in error messages.
    offset
        0-based position of ``seq[0]`` within ``record``, used in error messages.

    Returns
    -------
    numpy.ndarray
        ``uint8`` tokens of shape ``[len(seq)]``.

    Raises
    ------
    InputError
        If a symbol is not one of ``ACGTNacgtn``; names the record, the 1-based position
        and the symbol.
    """
    try:
        raw = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError as err:
        _raise_symbol(seq, err.start, record, offset)
    tokens = _ENCODE[raw]
    bad = np.flatnonzero(tokens == _INVALID)
    if bad.size:
        _raise_symbol(seq, int(bad[0]), record, offset)
    return tokens


def _raise_symbol(seq: str, i: int, record: str, offset: int) -> NoReturn:
    where = f"record {record!r} " if record else ""
    raise InputError(
        f"invalid nucleotide symbol {seq[i]!r} at {where}position {offset + i + 1} "
        f"(1-based); only A, C, G, T and N are allowed"
    )


def check_tokens(tokens: np.ndarray, what: str = "tokens", first_row: int = 0) -> None:
    """Raise :class:`InputError` naming ``what`` and the first index whose value is outside 0..4.

    ``first_row`` is added to the reported index on the first axis (for slices of a store).
    """
    bad = (tokens < 0) | (tokens > N_TOKEN)
    if bad.any():
        index = tuple(int(v[0]) for v in np.nonzero(bad))
        index = (index[0] + first_row, *index[1:])
        raise InputError(f"{what}: value {tokens[bad][0]} at index {index} is not a token (must lie in 0..{N_TOKEN})")


def decode(tokens: np.ndarray) -> str:
    """Turn a 1-D array of tokens (0..4) back into an ``ACGTN`` string."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise InputError(f"decode expects a 1-D token array, got shape {tokens.shape}")
    check_tokens(tokens)
    return _DECODE[tokens.astype(np.intp)].tobytes().decode("ascii")


def onehot_to_tokens(onehot: np.ndarray, layout: Literal["NCL", "NLC"] = "NCL") -> np.ndarray:
    """Turn a one-hot array into tokens.

    Parameters
    ----------
    onehot
        ``[n, 4, L]`` (``layout="NCL"``) or ``[n, L, 4]`` (``layout="NLC"``), channels in
        ``ACGT`` order. An all-zero position is N.
    layout
        Where the channel axis is.

    Returns
    -------
    numpy.ndarray
        ``uint8`` tokens ``[n, L]``.

    Raises
    ------
    InputError
        If the shape is wrong or a position is neither one-hot nor all zero; names the
        sequence index and the 1-based position.
    """
    onehot = np.asarray(onehot)
    if layout not in ("NCL", "NLC"):
        raise InputError(f"layout must be 'NCL' or 'NLC', got {layout!r}")
    channel_axis = 1 if layout == "NCL" else 2
    if onehot.ndim != 3 or onehot.shape[channel_axis] != len(ALPHABET):
        raise InputError(
            f"one-hot array must be 3-D with {len(ALPHABET)} channels on axis {channel_axis} "
            f"({layout}), got shape {onehot.shape}"
        )
    nlc = onehot if layout == "NLC" else np.moveaxis(onehot, 1, 2)
    is_one = nlc == 1
    valid = ((nlc == 0) | is_one).all(axis=2) & (is_one.sum(axis=2) <= 1)
    if not valid.all():
        seq, pos = (int(v[0]) for v in np.nonzero(~valid))
        raise InputError(
            f"one-hot array is not one-hot at sequence {seq}, position {pos + 1} (1-based): "
            f"values {nlc[seq, pos].tolist()}"
        )
    tokens = np.argmax(is_one, axis=2).astype(np.uint8)
    tokens[~is_one.any(axis=2)] = N_TOKEN
    return tokens


def tokens_to_onehot(tokens: np.ndarray) -> np.ndarray:
    """Turn tokens ``[n, L]`` (or ``[L]``) into ``float32`` one-hot ``[n, 4, L]`` (``[4, L]``); N is all zeros."""
    tokens = np.asarray(tokens)
    check_tokens(tokens)
    return np.moveaxis(_ONEHOT[tokens.astype(np.intp)], -1, -2)


def reverse_complement(tokens: np.ndarray) -> np.ndarray:
    """Reverse-complement tokens along the last axis (N stays N)."""
    return _COMPLEMENT[np.asarray(tokens, dtype=np.intp)][..., ::-1]

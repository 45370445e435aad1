"""Tokens, one-hot tensors and their conversions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmr_ray.alphabet import (
    ALPHABET,
    N_TOKEN,
    check_tokens,
    decode,
    encode,
    onehot_to_tokens,
    reverse_complement,
    tokens_to_onehot,
)
from dmr_ray.errors import InputError


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="ACGTNacgtn", max_size=200))
def test_encode_decode_round_trip(seq: str) -> None:
    tokens = encode(seq)
    assert tokens.dtype == np.uint8
    assert decode(tokens) == seq.upper()


def test_encode_values_and_soft_mask() -> None:
    assert encode("ACGTNacgtn").tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert ALPHABET == "ACGT" and N_TOKEN == 4


@pytest.mark.parametrize("seq, symbol, position", [("ACGR", "'R'", 14), ("AC-T", "'-'", 13), ("ACé", "'é'", 13)])
def test_encode_rejects_other_symbols(seq: str, symbol: str, position: int) -> None:
    with pytest.raises(InputError, match=rf"{symbol} at record 'chr7' position {position} "):
        encode(seq, record="chr7", offset=10)


def test_onehot_round_trip_both_layouts() -> None:
    tokens = np.random.default_rng(0).integers(0, 5, size=(6, 33)).astype(np.uint8)
    ncl = tokens_to_onehot(tokens)
    assert ncl.dtype == np.float32 and ncl.shape == (6, 4, 33)
    assert (ncl.sum(axis=1)[tokens == N_TOKEN] == 0).all()
    np.testing.assert_array_equal(onehot_to_tokens(ncl, layout="NCL"), tokens)
    np.testing.assert_array_equal(onehot_to_tokens(ncl.transpose(0, 2, 1), layout="NLC"), tokens)


def test_onehot_rejects_non_onehot_rows() -> None:
    onehot = tokens_to_onehot(np.zeros((2, 5), dtype=np.uint8))
    onehot[1, 2, 3] = 1.0  # position 4 of sequence 1 has two ones
    with pytest.raises(InputError, match=r"sequence 1, position 4"):
        onehot_to_tokens(onehot)
    onehot[1, 2, 3] = 0.5
    with pytest.raises(InputError, match=r"sequence 1, position 4"):
        onehot_to_tokens(onehot)


def test_onehot_rejects_wrong_shape() -> None:
    with pytest.raises(InputError, match="4 channels"):
        onehot_to_tokens(np.zeros((2, 5, 4)), layout="NCL")


def test_token_range_checks() -> None:
    with pytest.raises(InputError, match=r"value 7 at index \(11, 1\)"):
        check_tokens(np.array([[0, 0], [0, 7]]), first_row=10)
    with pytest.raises(InputError):
        decode(np.array([0, 5]))


def test_reverse_complement() -> None:
    assert decode(reverse_complement(encode("AACGTN"))) == "NACGTT"
    assert reverse_complement(encode("ACGG")[None]).shape == (1, 4)

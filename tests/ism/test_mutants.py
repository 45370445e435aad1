"""Mutant enumeration and construction on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmr_ray.alphabet import tokens_to_onehot
from dmr_ray.errors import InputError
from dmr_ray.ism import alt_alleles
from dmr_ray.ism.mutants import MutantPlan, as_token_tensor, build_mutants, reference_onehot


def test_alt_alleles_skip_the_reference_in_acgt_order():
    tokens = np.array([[0, 1, 2, 3, 4]], dtype=np.uint8)
    assert alt_alleles(tokens)[0].tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [4, 4, 4]]


def test_plan_builds_every_substitution_once():
    tokens = np.random.default_rng(1).integers(0, 5, size=(3, 9)).astype(np.uint8)
    plan = MutantPlan(torch.from_numpy(tokens))
    sites = plan.sites(0, plan.n_mutants)
    mutants = build_mutants(reference_onehot(torch.from_numpy(tokens)), sites).numpy()
    assert plan.n_mutants == 3 * int((tokens != 4).sum())
    alts = alt_alleles(tokens)
    for m, (i, pos, slot) in enumerate(zip(sites.seq.tolist(), sites.pos.tolist(), sites.slot.tolist(), strict=True)):
        expected = tokens[i].copy()
        expected[pos] = alts[i, pos, slot]
        np.testing.assert_array_equal(mutants[m], tokens_to_onehot(expected))
    keys = set(zip(sites.seq.tolist(), sites.pos.tolist(), sites.slot.tolist(), strict=True))
    assert keys == {(i, p, k) for i, p in zip(*np.nonzero(tokens != 4), strict=True) for k in range(3)}


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (np.zeros((2, 5), dtype=np.int64), "dtype must be uint8"),
        (np.zeros(5, dtype=np.uint8), r"shape must be \[n_sequences, length\]"),
        (np.zeros((0, 5), dtype=np.uint8), "shape must be"),
        (np.full((1, 5), 7, dtype=np.uint8), r"value 7 at index \(0, 0\) is not a token"),
        (np.zeros((1, 6), dtype=np.uint8), "length 6 does not match the model's input_length 5"),
        ([[0, 1, 2, 3, 0]], "expected a numpy array or torch tensor"),
    ],
)
def test_bad_tokens(tokens, message):
    with pytest.raises(InputError, match=message):
        as_token_tensor(tokens, input_length=5)


def test_torch_tokens_accepted():
    tokens = torch.tensor([[0, 4, 2]], dtype=torch.uint8)
    assert torch.equal(as_token_tensor(tokens), tokens)

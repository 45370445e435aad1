"""The digits demo: the classifier learns 8 vs 3, GRIDS turns held-out 8s into 3s more often than random pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dmr_ray.errors import InputError
from dmr_ray.grids.digits import DigitsOptions, TowardsThree, load_eights_and_threes, train_classifier, write_digits

FAST = DigitsOptions(L=6, restarts=1, train_steps=300, random_draws=5, sage_permutations=512)


def test_data_and_loss():
    data = load_eights_and_threes()
    assert data.x.shape == (174 + 183, 64) and np.bincount(data.y).tolist() == [174, 183]
    assert 0 <= data.x.min() and data.x.max() <= 1
    classifier = train_classifier(data, steps=50, seed=0)
    x = torch.as_tensor(data.x[:5])
    expected = -torch.log_softmax(classifier.model(x), dim=1)[:, 1]
    torch.testing.assert_close(TowardsThree(classifier.model)(x)[:, 0], expected)


def test_demo_flips_more_eights_than_random_and_writes_its_outputs(tmp_path):
    torch.set_num_threads(1)
    result = write_digits(tmp_path / "demo", FAST)
    assert result.accuracy > 0.9
    assert result.n_eights == {"search": 111, "eval": 28, "test": 35}
    flipped = result.fraction_three
    assert flipped["before"] < 0.1 and flipped["grids"] > 0.8 and flipped["grids"] > flipped["random"] + 0.5
    assert all(len(set(pixels)) == FAST.L for pixels in result.selected.values())
    overlap = len(set(result.selected["grids"]) & set(result.selected["sage"])) / FAST.L
    assert result.sage_overlap == overlap
    document = json.loads((tmp_path / "demo" / "digits.json").read_text())
    assert document["fraction_three"] == flipped and document["options"]["L"] == FAST.L
    assert (tmp_path / "demo" / "digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_refuses_a_directory_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not written by dmr_ray"):
        write_digits(tmp_path, FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("kwargs", [{"L": 64}, {"L": 0}, {"restarts": 0}, {"seed": -1}])
def test_bad_options(kwargs):
    with pytest.raises(InputError, match="digits"):
        DigitsOptions(**kwargs)

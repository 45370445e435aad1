"""Output selection: dict, tuple and tensor outputs; index lists; reductions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmr_ray.errors import ModelSpecError
from dmr_ray.models import OutputSelector, OutputSpec

RAW = {"counts": torch.arange(24.0).reshape(2, 3, 4), "flat": torch.arange(6.0).reshape(2, 3)}


def _select(*outputs, raw=RAW):
    selector = OutputSelector([OutputSpec(**o) for o in outputs])
    selector.check(raw)
    return selector(raw)


def test_reductions_over_extra_axes_and_index_lists():
    counts = RAW["counts"]
    got = _select(
        {"name": "a", "select": "counts", "index": 1, "reduce": "mean"},
        {"name": "b", "select": "counts", "index": [0, 2], "reduce": "sum"},
        {"name": "c", "select": "counts", "index": 2, "reduce": "max"},
        {"name": "d", "select": "flat", "index": 2},
        {"name": "e", "select": "flat", "reduce": "mean"},
    )
    expected = torch.stack(
        [
            counts[:, 1].mean(1),
            counts[:, [0, 2]].sum((1, 2)),
            counts[:, 2].amax(1),
            RAW["flat"][:, 2],
            RAW["flat"].mean(1),
        ],
        dim=1,
    )
    torch.testing.assert_close(got, expected)


def test_tuple_and_tensor_outputs():
    tup = (RAW["flat"], RAW["counts"])
    got = _select({"name": "a", "select": 1, "index": 0, "reduce": "sum"}, raw=tup)
    torch.testing.assert_close(got, RAW["counts"][:, 0].sum(1, keepdim=True))
    torch.testing.assert_close(_select({"name": "a", "index": 1}, raw=RAW["flat"]), RAW["flat"][:, 1:2])


@pytest.mark.parametrize(
    ("output", "raw", "message"),
    [
        (
            {"select": 2},
            (RAW["flat"],),
            r"outputs\[0\]\.select: position 2 is out of range for a model returning 1 outputs",
        ),
        ({"select": "flat"}, (RAW["flat"],), r"outputs\[0\]\.select: the model returns 1 outputs in a sequence"),
        ({"select": None}, RAW, r"outputs\[0\]\.select: None is not an output"),
        ({"index": 0}, torch.zeros(2), r"outputs\[0\]\.index: output \(the model's tensor\) has no task axis"),
    ],
)
def test_selection_errors(output, raw, message):
    with pytest.raises(ModelSpecError, match=message):
        OutputSelector([OutputSpec(name="t", **output)]).check(raw)


@pytest.mark.parametrize("index", [-1, True, [], "0", [0, "1"]])
def test_bad_index_values(index):
    with pytest.raises(ValueError, match="must be an int >= 0"):
        OutputSpec(name="t", index=index)


def test_numpy_integers_are_integers_and_bools_are_not():
    spec = OutputSpec(name="t", select=np.int64(1), index=[np.int32(0), 2])
    assert spec.select == 1 and spec.index == (0, 2)
    assert type(spec.select) is int and all(type(i) is int for i in spec.index)
    with pytest.raises(ValueError, match="must be an output key"):
        OutputSpec(name="t", select=np.bool_(True))

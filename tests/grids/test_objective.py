import pytest
import torch

from dmr_ray.errors import InputError
from dmr_ray.grids.objective import Objective


def test_down_and_up_losses_are_the_signed_gene_column():
    y = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    assert torch.equal(Objective(1).per_cell(y), torch.tensor([2.0, 5.0]))
    up = Objective(1, "up")
    assert torch.equal(up.per_cell(y), torch.tensor([-2.0, -5.0]))
    assert (Objective(0).p, up.p) == (0.0, 1.0)


@pytest.mark.parametrize("kwargs", [{"gene": -1}, {"gene": 1.5}, {"gene": 0, "direction": "sideways"}])
def test_bad_objectives_are_input_errors(kwargs):
    with pytest.raises(InputError):
        Objective(**kwargs)


def test_gene_outside_the_prediction_is_an_input_error():
    with pytest.raises(InputError, match="not a column"):
        Objective(3).per_cell(torch.zeros(2, 3))

"""JASPAR matrices load offline from pyjaspar's packaged release."""

import numpy as np
import pytest

from dmr_ray.errors import InputError
from dmr_ray.sim.jaspar import JASPAR_RELEASE, PSEUDOCOUNT, jaspar_motif


def test_sox2_matrix_matches_its_counts():
    from pyjaspar import jaspardb

    raw = jaspardb(release=JASPAR_RELEASE).fetch_motif_by_id("MA0143.5")
    counts = np.array([raw.counts[b] for b in "ACGT"]).T
    expected = counts / counts.sum(1, keepdims=True) + PSEUDOCOUNT
    expected /= expected.sum(1, keepdims=True)
    motif = jaspar_motif("MA0143.5")
    assert motif.name == "SOX2"
    np.testing.assert_allclose(motif.probs, expected, rtol=0, atol=1e-15)
    assert motif.probs.min() > 0
    assert motif.consensus == str(raw.consensus)
    assert jaspar_motif("MA0143.5", name="conf").name == "conf"


@pytest.mark.parametrize("matrix_id", ["MA9999.1", "MA0143"])
def test_unknown_or_unversioned_id_is_one_clear_error(matrix_id):
    with pytest.raises(InputError, match=matrix_id):
        jaspar_motif(matrix_id)

"""The simulation plants no reverse (TAL1 → GATA) path: its declared reverse truth is 0.

docs/direction.md traces the demo's reverse IVW signal to the trained ensemble; these tests pin
the other half of that finding, that neither the oracle nor the labels make the exposure
depend on the outcome motif.
"""

from __future__ import annotations

import numpy as np

import dmr_ray.sim as sim
from dmr_ray.sim.tf_coop import anscombe, oracle_counts


def test_outcome_motif_substitutions_leave_the_oracle_exposure_unchanged():
    data = sim.simulate_tf_coop(400, effect=0.5, seed=0)
    pairs = np.flatnonzero(data.is_pair)
    tokens, start = data.tokens[pairs], data.outcome_start[pairs]
    ref = anscombe(oracle_counts(tokens, data.params))
    rows = np.arange(pairs.size)
    max_exposure, mean_outcome = 0.0, []
    for offset in range(sim.OUTCOME_MOTIF.length):
        for shift in (1, 2, 3):
            mutant = tokens.copy()
            mutant[rows, start + offset] = (mutant[rows, start + offset] + shift) % 4
            delta = anscombe(oracle_counts(mutant, data.params)) - ref
            max_exposure = max(max_exposure, float(np.abs(delta[:, 0]).max()))
            mean_outcome.append(float(np.abs(delta[:, 1]).mean()))
    assert max_exposure < 1e-3  # chance GATA3 sites only: no planted TAL1 → GATA path
    assert max(mean_outcome) > 1.0  # while the same substitutions move the outcome


def test_exposure_counts_do_not_depend_on_the_outcome_motif_where_the_exposure_motif_is():
    # Only where no exposure motif is embedded does an outcome motif matter, and there it
    # lowers c_exp slightly (its 10 bp take the place of background that could hold a chance
    # GATA3 site): no positive path.
    data = sim.simulate_tf_coop(20_000, effect=0.5, seed=1)
    counts = data.expected_counts[:, 0]
    means = {
        (exposure, outcome): counts[(data.has_exposure == exposure) & (data.has_outcome == outcome)].mean()
        for exposure in (True, False)
        for outcome in (True, False)
    }
    assert abs(means[True, True] - means[True, False]) < 0.1
    assert means[False, True] <= means[False, False]

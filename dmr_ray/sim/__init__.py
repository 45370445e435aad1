"""Simulators with ground truth.

* :mod:`dmr_ray.sim.motifs` – stand-in GATA-, TAL1- and SOX2-like motifs and PWM occupancy.
* :mod:`dmr_ray.sim.tf_coop` – the Deep MR transcription-factor cooperativity simulation
  (GATA → TAL1 with optional sequence and random confounders), its noiseless oracle and the
  true local and global causal effects.
* :mod:`dmr_ray.sim.lda` – hierarchical LDA gene-expression simulations (SIMU1/2, SimuA/B/C) with known biomarkers.
"""

from dmr_ray.sim.motifs import BACKGROUND, GATA, SOX2, TAL1, Motif, occupancy
from dmr_ray.sim.tf_coop import (
    TFCoopData,
    TFCoopParams,
    anscombe,
    global_true_effect,
    local_true_effects,
    oracle_counts,
    simulate_tf_coop,
)

__all__ = [
    "BACKGROUND",
    "GATA",
    "SOX2",
    "TAL1",
    "Motif",
    "TFCoopData",
    "TFCoopParams",
    "anscombe",
    "global_true_effect",
    "local_true_effects",
    "occupancy",
    "oracle_counts",
    "simulate_tf_coop",
]

"""Simulators with ground truth.

* :mod:`dmr_ray.sim.motifs` – position probability matrices and PWM occupancy.
* :mod:`dmr_ray.sim.jaspar` – matrices from the JASPAR release packaged with pyjaspar, pinned by ID.
* :mod:`dmr_ray.sim.tf_coop` – the Deep MR transcription-factor cooperativity simulation
  (GATA3 → TAL1::TCF3 with optional Sox2 sequence and random confounders, JASPAR2024 matrices), its
  noiseless oracle, the true local and global causal effects and the variant augmentation.
* :mod:`dmr_ray.sim.lda` – hierarchical LDA gene-expression simulations (SIMU1/2, SimuA/B/C) with known biomarkers.
"""

from dmr_ray.sim.jaspar import JASPAR_RELEASE, jaspar_motif
from dmr_ray.sim.motifs import BACKGROUND, Motif, occupancy
from dmr_ray.sim.tf_coop import (
    CONFOUNDER_MOTIF,
    EXPOSURE_MOTIF,
    OUTCOME_MOTIF,
    TFCoopData,
    TFCoopParams,
    TFCoopVariants,
    anscombe,
    augment_variants,
    global_true_effect,
    local_true_effects,
    oracle_counts,
    simulate_tf_coop,
)

__all__ = [
    "BACKGROUND",
    "CONFOUNDER_MOTIF",
    "EXPOSURE_MOTIF",
    "JASPAR_RELEASE",
    "OUTCOME_MOTIF",
    "Motif",
    "TFCoopData",
    "TFCoopParams",
    "TFCoopVariants",
    "anscombe",
    "augment_variants",
    "global_true_effect",
    "jaspar_motif",
    "local_true_effects",
    "occupancy",
    "oracle_counts",
    "simulate_tf_coop",
]

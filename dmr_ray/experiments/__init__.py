"""Ground-truth experiments: planted causal effects recovered by whole audits.

* :mod:`dmr_ray.experiments.simulation` – the Deep MR TF-cooperativity simulation study
  (four confounding scenarios, rounds scored against the planted local and global truths).
"""

from dmr_ray.experiments.simulation import SCENARIOS, SIZES, run_simulation_experiment

__all__ = ["SCENARIOS", "SIZES", "run_simulation_experiment"]

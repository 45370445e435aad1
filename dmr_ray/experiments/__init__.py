"""Ground-truth experiments: planted causal effects recovered by whole audits.

* :mod:`dmr_ray.experiments.simulation` – the Deep MR TF-cooperativity simulation study
  (four confounding scenarios, rounds scored against the planted local and global truths).
* :mod:`dmr_ray.experiments.deepsea` – a DeepSEA-style multi-task model on simulated TF binding
  that opens accessibility, audited for TF → accessibility against the reverse.
"""

from dmr_ray.experiments.simulation import SCENARIOS, SIZES, run_simulation_experiment

__all__ = ["SCENARIOS", "SIZES", "run_simulation_experiment"]

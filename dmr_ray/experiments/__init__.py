"""Ground-truth experiments: planted causal effects recovered by whole audits.

* :mod:`dmr_ray.experiments.simulation` – the Deep MR TF-cooperativity simulation study
  (four confounding scenarios, rounds scored against the planted local and global truths).
* :mod:`dmr_ray.experiments.bpnet` – the BPNet-style experiment (a planted Oct4-Sox2 grammar,
  a ``bpnet`` ensemble, all 12 count-head pairs against the truth); not imported here, as it
  needs torch.
"""

from dmr_ray.experiments.simulation import SCENARIOS, SIZES, run_simulation_experiment

__all__ = ["SCENARIOS", "SIZES", "run_simulation_experiment"]

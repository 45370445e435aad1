"""Ground-truth experiments: planted causal effects recovered by whole audits.

* :mod:`dmr_ray.experiments.simulation` – the Deep MR TF-cooperativity simulation study
  (four confounding scenarios, rounds scored against the planted local and global truths).
* :mod:`dmr_ray.experiments.rounds` – independent rounds as Ray tasks, each in its own
  placement group, a few at a time (resumable, Ctrl-C safe).
* :mod:`dmr_ray.experiments.tables` – the original's table and the scores per scenario × method.
* :mod:`dmr_ray.experiments.plots` – the experiment's figures (one or several scenarios).
* :mod:`dmr_ray.experiments.combined` – one table and one set of figures across scenarios.

* :mod:`dmr_ray.experiments.bpnet` – the BPNet-style experiment (a planted Oct4-Sox2 grammar,
  a ``bpnet`` ensemble, all 12 count-head pairs against the truth); not imported here, as it
  needs torch.

* :mod:`dmr_ray.experiments.deepsea` – a DeepSEA-style multi-task model on simulated TF binding
  that opens accessibility, audited for TF → accessibility against the reverse.
"""

from dmr_ray.experiments.simulation import SCENARIOS, SIZES, run_simulation_experiment

__all__ = ["SCENARIOS", "SIZES", "run_simulation_experiment"]

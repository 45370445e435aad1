"""GRIDS (Liu et al., ACML 2024; grids.md): learnable global subset perturbations of ATAC peaks.

* :mod:`dmr_ray.grids.coordinates` – peak and gene intervals from names or ``var`` tables.
* :mod:`dmr_ray.grids.data` – reading a MuData ``.h5mu`` or a pair of ``.h5ad`` files.
* :mod:`dmr_ray.grids.perturb` – the perturbation operator and the peaks near a gene's TSS.
* :mod:`dmr_ray.grids.layers` – the chromosome-sum ATAC encoder and the affine-mixture translator.
* :mod:`dmr_ray.grids.surrogate` – the ATAC→RNA surrogate, its config, prediction, save and load.
* :mod:`dmr_ray.grids.training` – log1p normalisation and paired (supervised) training.
* :mod:`dmr_ray.grids.accuracy` – held-out per-gene correlation and cell-type mean expression.
* :mod:`dmr_ray.grids.fit` – a multiome to a trained, held-out-scored surrogate tied to its peaks and genes.
* :mod:`dmr_ray.grids.unpaired` – the original's unpaired adversarial training (an option).
* :mod:`dmr_ray.grids.objective` – the per-cell loss of a search (target gene, down or up).
* :mod:`dmr_ray.grids.population` – transition sums and exact swap scores (fast, and the autograd reference).
* :mod:`dmr_ray.grids.optimizer` – the coordinate-descent optimizer and ``grids_search``.
* :mod:`dmr_ray.grids.baselines`, :mod:`dmr_ray.grids.fimap` – Random, Saliency, SmoothGrad, IG, FIMAP, SAGE.
* :mod:`dmr_ray.grids.metrics` – Avg Δ / Rel Δ, hit and soft hit, planted-group recovery.
* :mod:`dmr_ray.grids.simulate`, :mod:`dmr_ray.grids.search`, :mod:`dmr_ray.grids.digits` – the
  synthetic multiome, one task in process, the 8→3 digits demo.
* :mod:`dmr_ray.grids.sharded`, :mod:`dmr_ray.grids.tune`, :mod:`dmr_ray.grids.config`,
  :mod:`dmr_ray.grids.pipeline`, :mod:`dmr_ray.grids.summary` – ``grids run``: cell shards on Ray
  actors, Ray Tune trials, stages and the seed's tables.
* :mod:`dmr_ray.grids.cli`, :mod:`dmr_ray.grids.run_cli` – the ``dmr-ray grids`` commands.
"""

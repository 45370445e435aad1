"""GRIDS (Liu et al., ACML 2024; grids.md): learnable global subset perturbations of ATAC peaks.

* :mod:`dmr_ray.grids.coordinates` – peak and gene intervals from names or ``var`` tables.
* :mod:`dmr_ray.grids.data` – reading a MuData ``.h5mu`` or a pair of ``.h5ad`` files.
* :mod:`dmr_ray.grids.perturb` – the perturbation operator and the peaks near a gene's TSS.
* :mod:`dmr_ray.grids.layers` – the chromosome-sum ATAC encoder and the affine-mixture translator.
* :mod:`dmr_ray.grids.surrogate` – the ATAC→RNA surrogate, its config, prediction, save and load.
* :mod:`dmr_ray.grids.training` – log1p normalisation and paired (supervised) training.
* :mod:`dmr_ray.grids.accuracy` – held-out per-gene correlation and cell-type mean expression.
* :mod:`dmr_ray.grids.fit` – a multiome to a trained, held-out-scored surrogate tied to its peaks and genes.
"""

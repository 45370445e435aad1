"""GRIDS (Liu et al., ACML 2024; grids.md): learnable global subset perturbations of ATAC peaks.

* :mod:`dmr_ray.grids.coordinates` – peak and gene intervals from names or ``var`` tables.
* :mod:`dmr_ray.grids.data` – reading a MuData ``.h5mu`` or a pair of ``.h5ad`` files.
* :mod:`dmr_ray.grids.perturb` – the perturbation operator and the peaks near a gene's TSS.
"""

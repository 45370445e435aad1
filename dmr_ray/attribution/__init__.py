"""Attribution limits: classifiers on simulated expression data with known biomarkers, and how
far their attributions recover them.

* :mod:`dmr_ray.attribution.data` – the seeded train/test split and the per-gene z-score fitted
  on the training samples.
* :mod:`dmr_ray.attribution.models` – the logistic regression and one-hidden-layer MLP.
* :mod:`dmr_ray.attribution.train` – the SGD training recipe and held-out accuracy.
* :mod:`dmr_ray.attribution.methods` – integrated gradients (adaptive Gauss–Legendre steps),
  saliency and SmoothGrad through Captum.
* :mod:`dmr_ray.attribution.metrics` – local and global feature agreement with the true genes.
* :mod:`dmr_ray.attribution.gaps` – prediction gaps (PGI, PGU, PGR) with local and global orderings.
"""

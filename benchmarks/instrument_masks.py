"""Instrument selection with the region-scale direction filter: against the outcome only and
against every task (``direction_against``), on one chunk of 64 sequences × 1 000 bp × 4 tasks.

Usage: ``python benchmarks/instrument_masks.py CHECKOUT [outcome|all|- ...]``; CHECKOUT is the
repository to import dmr_ray from (an older worktree to compare with), ``-`` the options' default.
Prints the median of 5 runs per setting, in seconds, as JSON.
"""

import json
import sys
import time

import numpy as np

sys.path.insert(0, sys.argv[1])
from dmr_ray.deepmr.local import LocalMROptions, instrument_masks  # noqa: E402

rng = np.random.default_rng(0)
n, L, T = 64, 1000, 4
beta = rng.normal(0, 1, (n, L, 3, T))
se = np.full(beta.shape, 0.1)
tasks = tuple("ABCD")
pairs = tuple((a, b) for a in tasks for b in tasks if a != b)
out = {}
for against in sys.argv[2:]:
    kw = {} if against == "-" else {"direction_against": against}
    o = LocalMROptions(
        tasks=tasks, pairs=pairs, estimators=("ivw",), filter="wald", threshold=3.0, moments_mean=(), moments_sd=(),
        region_width=1000, direction_sd=(1.0,) * T, direction_scale="region", **kw,
    )  # fmt: skip
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        instrument_masks(beta, se, o)
        ts.append(time.perf_counter() - t0)
    out[against] = round(float(np.median(ts)), 4)
print(json.dumps(out))

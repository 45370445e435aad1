"""Weighted-median local MR of one BPNet-like chunk, for A/B runs of two source trees.

Times :func:`dmr_ray.deepmr.local.local_effects_table` with the weighted median alone at the
audit's bootstrap size (10 000 draws) on the chunk of ``local_mr_throughput.py``, and prints one
JSON line: the tree it imported, the median of 3 runs and the sum of the local SEs (the same
numbers in both trees must give the same sum). Run it alternately against each tree::

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before python /tmp/before/benchmarks/weighted_median_ab.py
    python benchmarks/weighted_median_ab.py
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
from local_mr_throughput import _effects, _options

import dmr_ray
from dmr_ray.deepmr.local import local_effects_table


def main() -> None:
    beta, se = _effects(np.random.default_rng(0), 64)
    seq_ids = np.array([f"seq{i}" for i in range(64)])
    options = _options(beta, ("weighted_median",), 10_000)
    local_effects_table(beta[:2], se[:2], seq_ids[:2], options)  # warm up (compiled kernels, R's stream)
    times, table = [], None
    for _ in range(3):
        start = time.perf_counter()
        table = local_effects_table(beta, se, seq_ids, options)
        times.append(time.perf_counter() - start)
    assert table is not None
    se_sum = float(np.nansum(table.column("se").to_numpy(zero_copy_only=False)))
    print(json.dumps({"tree": dmr_ray.__file__, "wall_median_s": statistics.median(times), "se_sum": se_sum}))


if __name__ == "__main__":
    main()

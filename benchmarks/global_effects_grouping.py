"""Grouping of local effects by (exposure, outcome, method) before the global meta-analysis.

Compares the former grouping (a Python string join per row, then ``numpy.unique`` over the
joined keys) with :func:`dmr_ray.deepmr.stages.group_rows` (Arrow ranks of each key column,
``numpy.unique`` over their combined integer codes), and times the whole
:func:`~dmr_ray.deepmr.stages.global_effects_table` for scale. Prints one JSON document;
timings are wall-clock medians over ``--repeats`` runs.

Usage::

    python benchmarks/global_effects_grouping.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from dmr_ray.deepmr.stages import GROUP_KEYS, global_effects_table, group_rows

TASKS = ("GATA", "TAL1", "CTCF", "SPI1")
METHODS = ("deepmr", "ivw", "egger", "weighted_median")


def local_table(rows: int, seed: int = 0) -> pa.Table:
    """A local-effects-like table: random keys, some NaN estimates."""
    rng = np.random.default_rng(seed)
    tasks, methods = np.array(TASKS, dtype=object), np.array(METHODS, dtype=object)
    estimate = rng.normal(0.3, 0.2, rows)
    estimate[rng.random(rows) < 0.05] = np.nan
    return pa.table(
        {
            "exposure": tasks[rng.integers(0, len(TASKS), rows)],
            "outcome": tasks[rng.integers(0, len(TASKS), rows)],
            "method": methods[rng.integers(0, len(METHODS), rows)],
            "estimate": estimate,
            "se": rng.uniform(0.05, 0.3, rows),
        }
    )


def joined_key_grouping(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The former grouping: one joined string key per row, ``numpy.unique`` over them."""
    columns = [table.column(name).to_numpy(zero_copy_only=False) for name in GROUP_KEYS]
    keys = np.array(["\x1f".join(parts) for parts in zip(*columns, strict=True)], dtype=object)
    return np.unique(keys, return_inverse=True)


def median_seconds(func: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``func`` over ``repeats`` calls."""
    return statistics.median(timeit.repeat(func, number=1, repeat=repeats))


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    table = local_table(args.rows)
    old = median_seconds(lambda: joined_key_grouping(table), args.repeats)
    new = median_seconds(lambda: group_rows(table, GROUP_KEYS), args.repeats)
    _, old_inverse = joined_key_grouping(table)
    _, new_inverse = group_rows(table, GROUP_KEYS)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "groups": int(new_inverse.max()) + 1,
                "repeats": args.repeats,
                "same_groups": bool(np.array_equal(old_inverse, new_inverse)),
                "joined_key_grouping_median_s": old,
                "group_rows_median_s": new,
                "speedup": old / new,
                "global_effects_table_median_s": median_seconds(lambda: global_effects_table(table), args.repeats),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

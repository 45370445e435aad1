"""Replicate groups: split a model's replicates over actors and merge their results exactly.

When the members of an ensemble (or the passes of MC dropout) are spread over actors, each
group of replicates computes the ISM of a chunk with ``ddof=0``: per group ``g`` of ``n_g``
replicates, the mean ``m_g`` of the paired differences and their standard deviation
``s_g``, so that ``M2_g = n_g * s_g**2`` is the sum of squared deviations. The groups are
merged exactly with the parallel form of Chan, Golub and LeVeque's update
(:func:`dmr_ray.stats.moments.merge`),

    n = sum(n_g),   m = sum(n_g * m_g) / n,   M2 = sum(M2_g + n_g * (m_g - m)**2),

and the job's ``ddof`` is applied last: ``se = sqrt(M2 / (n - ddof))``. The arithmetic is in
float64 on float32 inputs, so merged results match an all-replicates run to float32
rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dmr_ray._checks import is_int
from dmr_ray.errors import InputError
from dmr_ray.ism import ISMResult
from dmr_ray.stats.moments import Moments, merge


def split_replicates(n_replicates: int, n_groups: int) -> list[tuple[int, ...]]:
    """Contiguous replicate index ranges of near-equal size, one per group.

    Parameters
    ----------
    n_replicates
        Number of replicates ``R`` of the model.
    n_groups
        Number of groups, ``1 <= n_groups <= R``; the first ``R % n_groups`` groups get one
        replicate more.

    Returns
    -------
    list of tuple of int
        The replicate indices of each group, in order.
    """
    if not is_int(n_groups) or not 1 <= n_groups <= n_replicates:
        raise InputError(
            f"replicate groups: must be an integer from 1 to the number of replicates ({n_replicates}), "
            f"got {n_groups!r}"
        )
    size, extra = divmod(n_replicates, n_groups)
    groups, start = [], 0
    for g in range(n_groups):
        stop = start + size + (g < extra)
        groups.append(tuple(range(start, stop)))
        start = stop
    return groups


def merge_groups(parts: Sequence[ISMResult], ddof: int, replicate_kind: str) -> ISMResult:
    """Merge the ``ddof=0`` results of disjoint replicate groups into one result.

    Parameters
    ----------
    parts
        One :class:`~dmr_ray.ism.ISMResult` per group, for the same references, each with
        ``ddof == 0``.
    ddof
        Delta degrees of freedom of the merged standard deviations.
    replicate_kind
        ``replicate_kind`` of the merged result (the model's, e.g. ``"ensemble"``; a group
        of one member reports ``"single"``).

    Returns
    -------
    ISMResult
        As if every replicate had been evaluated together.
    """
    if not parts:
        raise InputError("merge_groups: no replicate groups to merge")
    if any(part.ddof != 0 for part in parts):
        raise InputError(f"merge_groups: every group needs ddof=0, got {[part.ddof for part in parts]}")
    counts = [part.n_replicates for part in parts]
    n = sum(counts)
    if not 0 <= ddof < n:
        raise InputError(f"ddof: must be in [0, {n}) for {n} replicates, got {ddof}")
    beta, se = _merge([p.beta for p in parts], [p.se for p in parts], counts, ddof)
    ref_mean, ref_se = _merge([p.ref_mean for p in parts], [p.ref_se for p in parts], counts, ddof)
    return ISMResult(
        beta=beta,
        se=se,
        ref_mean=ref_mean,
        ref_se=ref_se,
        task_names=parts[0].task_names,
        n_replicates=n,
        replicate_kind=replicate_kind,
        ddof=ddof,
    )


def _merge(
    means: Sequence[np.ndarray], sds: Sequence[np.ndarray], counts: Sequence[int], ddof: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merged float32 ``(mean, sd)`` of groups given by their means, ddof-0 SDs and sizes.

    Each group enters as ``Moments(n_g, m_g, n_g * s_g**2)`` in float64; the groups are
    merged by :func:`dmr_ray.stats.moments.merge`.
    """
    merged = merge(
        [
            Moments(c, m.astype(np.float64), c * s.astype(np.float64) ** 2)
            for c, m, s in zip(counts, means, sds, strict=True)
        ]
    )
    return merged.mean.astype(np.float32), np.sqrt(merged.variance(ddof)).astype(np.float32)

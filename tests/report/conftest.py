"""Builders of small synthetic ``global_effects`` / ``local_effects`` tables and report inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pytest

from dmr_ray.deepmr.local import SCHEMA as LOCAL_SCHEMA
from dmr_ray.report import CalibrationCurves, ScatterData

GLOBAL_SCHEMA = pa.schema(
    [(name, pa.string()) for name in ("exposure", "outcome", "method", "meta_method", "test")]
    + [
        (name, pa.float64())
        for name in (
            "estimate",
            "se",
            "ci_low",
            "ci_high",
            "p_value",
            "tau2",
            "tau",
            "q",
            "q_p",
            "i2",
            "h2",
            "pi_low",
            "pi_high",
        )
    ]
    + [("k", pa.int64()), ("n_regions", pa.int64())]
)


def _global_row(exposure: str, outcome: str, method: str, estimate: float, p_value: float, **overrides) -> dict:
    se, tau = 0.1, 0.2
    row = {
        "exposure": exposure,
        "outcome": outcome,
        "method": method,
        "meta_method": "DL",
        "test": "z",
        "estimate": estimate,
        "se": se,
        "ci_low": estimate - 1.96 * se,
        "ci_high": estimate + 1.96 * se,
        "p_value": p_value,
        "tau2": tau**2,
        "tau": tau,
        "q": 12.0,
        "q_p": 0.3,
        "i2": 40.0,
        "h2": 1.7,
        "pi_low": estimate - 2 * tau,
        "pi_high": estimate + 2 * tau,
        "k": 8,
        "n_regions": 10,
    }
    row.update(overrides)
    return row


@pytest.fixture(scope="session")
def global_row() -> Callable[..., dict]:
    """``global_row(exposure, outcome, method, estimate, p_value, **overrides) -> dict``."""
    return _global_row


@pytest.fixture(scope="session")
def global_table() -> Callable[[Sequence[dict]], pa.Table]:
    """``global_table(rows) -> pa.Table`` with the columns of ``global_effects``."""
    return lambda rows: pa.Table.from_pylist(list(rows), schema=GLOBAL_SCHEMA)


def _local_table(
    exposure: str,
    outcome: str,
    method: str,
    estimate: Sequence[float],
    se: Sequence[float],
    reason: Sequence[str] | None = None,
    n_instruments: Sequence[int] | None = None,
) -> pa.Table:
    n = len(estimate)
    estimate, se = np.asarray(estimate, float), np.asarray(se, float)
    reason = (
        list(reason) if reason is not None else ["ok" if np.isfinite(e) else "too_few_instruments" for e in estimate]
    )
    columns = {name: np.full(n, np.nan) for name in LOCAL_SCHEMA.names}
    columns.update(
        {
            "seq_id": [f"seq{i}" for i in range(n)],
            "region": np.zeros(n, np.int32),
            "region_start": np.zeros(n, np.int32),
            "region_end": np.full(n, 100, np.int32),
            "exposure": [exposure] * n,
            "outcome": [outcome] * n,
            "method": [method] * n,
            "estimator": [method] * n,
            "estimate": estimate,
            "se": se,
            "ci_low": estimate - 1.96 * se,
            "ci_high": estimate + 1.96 * se,
            "direction": np.zeros(n, np.int8),
            "n_instruments": np.asarray(n_instruments if n_instruments is not None else np.full(n, 12), np.int32),
            "n_unusable": np.ones(n, np.int32),
            "reason": reason,
            "inference": ["ensemble"] * n,
        }
    )
    return pa.Table.from_pydict(
        {f.name: pa.array(columns[f.name], type=f.type) for f in LOCAL_SCHEMA}, schema=LOCAL_SCHEMA
    )


@pytest.fixture(scope="session")
def local_table() -> Callable[..., pa.Table]:
    """``local_table(exposure, outcome, method, estimate, se, reason=None, n_instruments=None)``."""
    return _local_table


@pytest.fixture(scope="session")
def scatter_data() -> ScatterData:
    """A region with 8 instruments, two with a negative exposure effect."""
    rng = np.random.default_rng(0)
    bx = np.array([0.5, 1.0, -0.8, 1.5, 2.0, -0.3, 0.9, 1.2])
    return ScatterData(
        seq_id="seq7",
        exposure="GATA",
        outcome="TAL1",
        bx=bx,
        bxse=np.full(8, 0.1),
        by=0.6 * bx + rng.normal(0, 0.05, 8),
        byse=np.full(8, 0.08),
        ivw_slope=0.6,
        egger_intercept=0.02,
        egger_slope=0.58,
        region="0-100",
    )


@pytest.fixture(scope="session")
def calibration_curves() -> CalibrationCurves:
    """Three tasks: over-confident before, close to the diagonal after."""
    p = np.linspace(0, 1, 21)
    before = np.stack([np.clip(0.5 + s * (p - 0.5), 0, 1) for s in (1.6, 1.3, 1.1)])
    after = np.stack([np.clip(0.5 + s * (p - 0.5), 0, 1) for s in (1.05, 1.02, 0.98)])
    return CalibrationCurves(
        tasks=("GATA", "TAL1", "CTCF"),
        expected=p,
        observed_before=before,
        observed_after=after,
        error_before=np.abs(before - p).mean(axis=1),
        error_after=np.abs(after - p).mean(axis=1),
        method="isotonic",
    )

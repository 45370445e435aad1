"""``<output>/index.parquet``: one row per cell run, append-only.

The index is a directory of Parquet parts, one written (whole, atomically) per finished cell
run and never rewritten; :func:`read_index` reads them all in name order (names start with
the UTC time). Columns: :data:`SCHEMA`; ``metrics`` holds the audit kind's headline metrics.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from dmr_ray.audit.output import Output

INDEX = "index.parquet"

SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("time", pa.timestamp("ms", tz="UTC")),
        ("plan", pa.string()),
        ("key", pa.string()),
        ("model", pa.string()),
        ("version", pa.string()),
        ("model_digest", pa.string()),
        ("data", pa.string()),
        ("data_digest", pa.string()),
        ("audit", pa.string()),
        ("kind", pa.string()),
        ("status", pa.string()),
        ("seconds", pa.float64()),
        ("reason", pa.string()),
        ("metrics", pa.map_(pa.string(), pa.float64())),
    ]
)


@dataclass(frozen=True)
class IndexRow:
    """One cell run (the columns of :data:`SCHEMA`; ``time`` in Unix seconds)."""

    run_id: str
    plan: str
    key: str
    model: str
    version: str
    model_digest: str
    data: str
    data_digest: str
    audit: str
    kind: str
    status: str
    seconds: float
    reason: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


def append_rows(output: Output, rows: list[IndexRow]) -> str:
    """Write ``rows`` as a new part of the index; returns the part's name."""
    columns = {name: [getattr(row, name) for row in rows] for name in SCHEMA.names}
    columns["time"] = [int(t * 1000) for t in columns["time"]]
    columns["metrics"] = [list(m.items()) for m in columns["metrics"]]
    table = pa.table(columns, schema=SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1e9)) + f".{now % 10**9:09d}"
    name = f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
    output.write_bytes(buffer.getvalue(), INDEX, name)
    return name


def read_index(output: Output) -> pa.Table:
    """Every row of the index, oldest part first (an empty table when there is none)."""
    parts = [n for n in output.list(INDEX) if n.startswith("part-") and n.endswith(".parquet")]
    tables = []
    for name in parts:
        with output.fs.open(output.path(INDEX, name), "rb") as fh:
            tables.append(pq.read_table(fh, schema=SCHEMA))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()

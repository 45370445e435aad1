"""Atomic file writes: the one copy every stage, report and record uses.

A file is written to a temporary sibling (``.<name>.tmp-<pid>-<random>``) and renamed over
its final name only when complete, so readers see the old file or the new one, never half of
one; the temporary is removed whatever happens (an exception, Ctrl-C).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def temporary_sibling(path: Path) -> Path:
    """A hidden, unique temporary name in the directory of ``path``."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it onto ``path``.

    Parameters
    ----------
    path
        The final file (its directory must exist).
    write
        Writes the whole content to the path it is given.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_parquet_atomic(path: str | Path, table: pa.Table) -> None:
    """Write ``table`` as one Parquet file at ``path`` atomically."""
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))

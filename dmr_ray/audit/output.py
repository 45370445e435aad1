"""The plan's output store: a local directory or an fsspec URL (``s3://…``, ``memory://…``).

Plan-level files (completion markers, manifests, leases, index parts) go through fsspec; on a
local directory they are written atomically through :mod:`dmr_ray._atomic`, on an object
store by a single put (objects appear whole). Leases use exclusive creation (``"xb"``), which
local files, fsspec's memory store and S3 (conditional writes) provide.
"""

from __future__ import annotations

from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from dmr_ray._atomic import write_atomic
from dmr_ray.store import normalise_location


class Output:
    """The output store ``location``; paths are ``/``-joined relative to its root."""

    def __init__(self, location: str) -> None:
        self.location = normalise_location(location)
        self.fs, self.root = fsspec.core.url_to_fs(self.location)
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        """The store path of ``parts`` under the root."""
        return "/".join([self.root.rstrip("/"), *parts])

    def url(self, *parts: str) -> str:
        """``parts`` as the user sees them: a local path, or a URL with the store's protocol."""
        path = self.path(*parts)
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def local(self, *parts: str) -> Path:
        """``parts`` as a local path (local outputs only)."""
        assert self.is_local, "not a local output"
        return Path(self.path(*parts))

    def exists(self, *parts: str) -> bool:
        return bool(self.fs.exists(self.path(*parts)))

    def read_text(self, *parts: str) -> str:
        with self.fs.open(self.path(*parts), "rb") as fh:
            return fh.read().decode()

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write ``data`` whole: atomically (local) or as one object put."""
        path = self.path(*parts)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if self.is_local:
            write_atomic(path, lambda tmp: tmp.write_bytes(data))
        else:
            self.fs.pipe_file(path, data)

    def write_text(self, text: str, *parts: str) -> None:
        self.write_bytes(text.encode(), *parts)

    def create_exclusive(self, text: str, *parts: str) -> bool:
        """Create ``parts`` holding ``text`` unless it exists; returns whether this call created it."""
        path = self.path(*parts)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        try:
            with self.fs.open(path, "xb") as fh:
                fh.write(text.encode())
        except FileExistsError:
            return False
        return True

    def list(self, *parts: str) -> list[str]:
        """Names (not paths) in the directory ``parts``, sorted; empty when it does not exist."""
        path = self.path(*parts)
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def put_dir(self, local: Path, *parts: str) -> None:
        """Upload the local directory ``local`` to ``parts`` (non-local outputs)."""
        self.fs.put(str(local), self.path(*parts), recursive=True)

"""Alias of ``jobs/run.py`` kept for earlier commands: ``python jobs/deep_mr.py audit.yaml [--overwrite]``."""

from __future__ import annotations

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).with_name("run.py")), run_name="__main__")

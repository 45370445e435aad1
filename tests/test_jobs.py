"""``jobs/run.py`` (and its alias ``jobs/deep_mr.py``): the ``ray job submit`` entrypoints
dispatch on the configuration's kind and report errors as one line (the real submit is in
tests/deepmr/test_pipeline.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("entrypoint", ["jobs/run.py", "jobs/deep_mr.py"])
def test_entrypoints_dispatch_on_kind_from_any_directory(tmp_path: Path, entrypoint: str) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"kind": "nonesuch", "out": "o"}))
    done = subprocess.run(
        [sys.executable, str(REPO / entrypoint), str(config)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 2
    kinds = "['attribution', 'deep_mr', 'grids']"
    expected = f"dmr-ray: error: {config}: kind: unknown pipeline 'nonesuch'; choose from {kinds}"
    assert done.stderr.strip() == expected
    assert not (tmp_path / "o").exists()

"""A local Ray head with token authentication, started with ``ray start --head`` for tests that
submit real jobs (the README's ``ray job submit`` recipe)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Head:
    """How to reach the head: the job server's ``address``, the ``env`` clients need (token
    mode, token file) and the ``ray`` command."""

    address: str
    env: dict[str, str]
    ray: str

    def submit(self, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        """``ray job submit --address ... <args>``, retried while the job agent is not up yet."""
        deadline = time.monotonic() + 120
        while True:
            cmd = [self.ray, "job", "submit", "--address", self.address, *args]
            done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=600, cwd=cwd)
            if "No available agent" not in done.stderr or time.monotonic() > deadline:
                return done
            time.sleep(3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkout(directory: Path) -> Path:
    """What ``--working-dir .`` uploads from a checkout: the package and the job entrypoints."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("dmr_ray", "jobs"):
        shutil.copytree(REPO / name, directory / name, ignore=ignore)
    return directory


@contextmanager
def ray_head(tmp_path: Path, num_cpus: int = 2) -> Iterator[Head]:
    """A head on 127.0.0.1 whose token lives in a mode-600 file (``RAY_AUTH_TOKEN_PATH``);
    stopped (its process group) on exit."""
    ray_bin = Path(sys.executable).parent / "ray"
    ray_cmd = str(ray_bin) if ray_bin.exists() else shutil.which("ray") or "ray"
    secret = tmp_path / "secrets" / "ray_auth_token"
    secret.parent.mkdir(mode=0o700)
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(secret)}
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(name, None)
    dashboard = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Unix socket paths are capped
    ports = (
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "metrics-export-port",
        "runtime-env-agent-port",
    )
    head = subprocess.Popen(
        [
            ray_cmd,
            "start",
            "--head",
            "--block",
            f"--port={free_port()}",
            f"--num-cpus={num_cpus}",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            "--include-dashboard=true",
            f"--temp-dir={temp_dir}",
            # another Ray instance (the test session's) may hold the default agent ports
            *(f"--{name}={free_port()}" for name in ports),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        address = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run([ray_cmd, "job", "list", "--address", address], env=env, capture_output=True)
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, f"Ray head did not come up: {probe.stderr[-2000:]!r}"
            time.sleep(2)
        yield Head(address, env, ray_cmd)
    finally:
        os.killpg(head.pid, 15)
        head.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)

"""cluster.yaml passes Ray's own launcher checks and keeps the dashboard on loopback."""

from pathlib import Path

import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def _config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_prepare_and_validate() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_config()))


def test_cluster_yaml_has_cpu_head_and_gpu_workers() -> None:
    cfg = _config()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert "GPU" not in head["resources"]
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu and all(t["min_workers"] == 0 for t in gpu)
    assert any("pip install" in c and "dmr_ray" in c for c in cfg["setup_commands"])


def test_dashboard_stays_on_loopback() -> None:
    head_start = " ".join(_config()["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in CLUSTER_YAML.read_text()


def test_every_node_starts_with_token_auth_and_the_token_is_never_inline() -> None:
    cfg = _config()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cfg[key] if "ray start" in c]
        assert starts and all(c.startswith("RAY_AUTH_MODE=token ray start") for c in starts), key
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    text = CLUSTER_YAML.read_text()
    assert "RAY_AUTH_TOKEN=" not in text and "python jobs/run.py" in text

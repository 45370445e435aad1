"""The audit plan: models × data × audits, validated like every configuration.

```yaml
name: weekly-bpnet
output: audits/                    # local path or fsspec URL
schedule: "0 3 * * 1"              # optional cron; used by `dmr-ray audit export`
models:
  - {name: bpnet, version: v1, spec: models/v1/model.yaml}
data:
  - {name: peaks, store: seqs.zarr}
audits:
  - {name: deepmr, kind: deep_mr, config: deepmr.yaml}
cells: all                         # or a list of {model, data, audit} (model: name or name@version)
```

Relative paths are resolved against the plan's directory; an audit's ``config`` is a YAML
file (its own relative paths resolve against its directory) or an inline mapping (they
resolve against the plan's directory). Errors are :class:`~dmr_ray.errors.ConfigError`, one
line naming the plan file and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from dmr_ray.audit.kinds import AUDIT_KINDS
from dmr_ray.config.base import Options, format_error, read_yaml, resolve_path
from dmr_ray.errors import ConfigError

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_CRON_FIELD = r"^[0-9*/,\-A-Za-z?LW#]+$"


class ModelEntry(Options):
    """One model version: a model spec (``docs/models.md``)."""

    name: str = Field(pattern=_NAME)
    version: str = Field(pattern=_NAME)
    spec: Path

    @property
    def label(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


class DataEntry(Options):
    """One data set: a sequence store (or, for GRIDS, a multiome file); path or fsspec URL."""

    name: str = Field(pattern=_NAME)
    store: str


class AuditEntry(Options):
    """One audit: a pipeline ``kind`` and its own configuration (model and data come from the cell)."""

    name: str = Field(pattern=_NAME)
    kind: str
    config: Path | dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in AUDIT_KINDS:
            raise ValueError(f"unknown audit kind {value!r}; choose from {sorted(AUDIT_KINDS)}")
        return value


class CellSelector(Options):
    """One listed cell: ``model`` is a model name (every version) or ``name@version``."""

    model: str
    data: str
    audit: str


class DeployOptions(Options):
    """What ``dmr-ray audit export`` writes into scheduler manifests (see docs/audits.md)."""

    image: str = "rayproject/ray:2.60.0-py311-cpu"
    """Container image holding dmr_ray (KubeRay, CronJob)."""
    working_dir: str = "/home/ray/dmr_ray"
    """Where the checkout (with ``jobs/audit.py``) lives in the image or on the Slurm nodes."""
    plan: str | None = None
    """The plan's path as the job sees it (default: the plan file's name in ``working_dir``)."""
    workers: int = Field(default=1, ge=0)
    """Ray worker nodes (pods, or Slurm nodes besides the head)."""
    worker_cpus: int = Field(default=8, gt=0)
    worker_gpus: int = Field(default=0, ge=0)
    worker_memory: str = "32Gi"
    head_cpus: int = Field(default=4, gt=0)
    head_memory: str = "16Gi"
    address: str = "http://ray-head-svc:8265"
    """The job server of a long-lived cluster (CronJob and Airflow)."""
    token_secret: str = "ray-auth-token"
    """Kubernetes secret (key ``auth_token``) holding the cluster's Ray token."""
    namespace: str = "default"
    slurm_partition: str | None = None
    slurm_time: str = "12:00:00"
    token_path: str = "~/.ray/auth_token"
    """Slurm: the token file (mode 600) on the allocation's nodes."""
    airflow_conn_address: str | None = None
    """Airflow: an address template for ``cluster_address`` (default: ``address``)."""


class AuditPlan(Options):
    """A whole audit plan; see the module docstring."""

    name: str = Field(pattern=_NAME)
    output: str
    schedule: str | None = None
    models: tuple[ModelEntry, ...] = Field(min_length=1)
    data: tuple[DataEntry, ...] = Field(min_length=1)
    audits: tuple[AuditEntry, ...] = Field(min_length=1)
    cells: Literal["all"] | tuple[CellSelector, ...] = "all"
    cell_resources: dict[str, float] | None = None
    """Run each cell as a Ray task in a placement group of these resources (e.g. ``{CPU: 4,
    GPU: 1}``), as many at once as the cluster holds; without it cells run one after another
    in the driver, each pipeline's engine using the whole cluster."""
    work_dir: Path | None = None
    """Local directory where pipelines write when ``output`` is a URL (default:
    ``~/.cache/dmr_ray/audits/<name>``); finished cells are uploaded from it."""
    lease_ttl_s: float = Field(default=600.0, gt=0)
    """A cell's lease expires this long after its last heartbeat (another run then takes it over)."""
    deploy: DeployOptions = DeployOptions()

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        fields = value.split()
        if len(fields) != 5 or not all(re.match(_CRON_FIELD, f) for f in fields):
            raise ValueError(f"{value!r} is not a cron expression of 5 fields (minute hour day month weekday)")
        return value

    @field_validator("cell_resources")
    @classmethod
    def _resources(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and (not value or any(v < 0 for v in value.values())):
            raise ValueError("give at least one resource, none negative (e.g. {CPU: 2, GPU: 1})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AuditPlan:
        _unique("models", [m.label for m in self.models])
        _unique("data", [d.name for d in self.data])
        _unique("audits", [a.name for a in self.audits])
        if self.cells != "all":
            models = {m.name for m in self.models} | {m.label for m in self.models}
            for i, cell in enumerate(self.cells):
                for field, known in (
                    ("model", models),
                    ("data", {d.name for d in self.data}),
                    ("audit", {a.name for a in self.audits}),
                ):
                    value = getattr(cell, field)
                    if value not in known:
                        raise ValueError(f"cells[{i}].{field}: {value!r} is not in the plan's {field}s {sorted(known)}")
        return self


def _unique(field: str, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{field}: {repeated} appear more than once")


def load_plan(path: str | Path) -> AuditPlan:
    """Load and validate an audit plan (safe YAML), resolving its paths against its directory;
    each audit's own configuration is validated too.

    Raises
    ------
    ConfigError
        Naming the file (or the audit) and each invalid field.
    """
    path = Path(path)
    data = read_yaml(path)
    base = path.resolve().parent
    data = dict(data)
    if "output" in data and isinstance(data["output"], str):
        data["output"] = resolve_path(base, data["output"])
    if isinstance(data.get("work_dir"), str):
        data["work_dir"] = resolve_path(base, data["work_dir"])
    data["models"] = _resolve_items(data.get("models"), "spec", base)
    data["data"] = _resolve_items(data.get("data"), "store", base)
    data["audits"] = _resolve_audits(data.get("audits"), base)
    try:
        plan = AuditPlan.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_error(str(path), exc, AuditPlan)) from None
    from dmr_ray.audit.cells import check_audit_configs  # cells builds on this module

    check_audit_configs(plan)
    return plan.model_copy(update={"deploy": _default_deploy_plan(plan.deploy, path)})


def _resolve_items(items: Any, key: str, base: Path) -> Any:
    """``items`` with each mapping's ``key`` (a string path) resolved against ``base``."""
    if not isinstance(items, list):
        return items
    resolved = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get(key), str):
            item = {**item, key: resolve_path(base, item[key])}
        resolved.append(item)
    return resolved


def _resolve_audits(items: Any, base: Path) -> Any:
    """Audit entries with a config file path resolved, and an inline config's own path fields
    (those its pipeline declares) resolved against the plan's directory."""
    from dmr_ray.config.base import resolve_paths
    from dmr_ray.config.registry import PIPELINES, config_class

    items = _resolve_items(items, "config", base)
    if not isinstance(items, list):
        return items
    resolved = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("config"), dict) and item.get("kind") in PIPELINES:
            fields = config_class(item["kind"]).path_fields
            item = {**item, "config": resolve_paths(item["config"], fields, base)}
        resolved.append(item)
    return resolved


def _default_deploy_plan(deploy: DeployOptions, path: Path) -> DeployOptions:
    if deploy.plan is not None:
        return deploy
    return deploy.model_copy(update={"plan": f"{deploy.working_dir.rstrip('/')}/{path.name}"})

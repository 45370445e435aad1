"""``dmr-ray audit export``: manifests that run a plan from the schedulers labs already use.

Every manifest runs the one idempotent entrypoint, ``python jobs/audit.py PLAN`` (complete
cells are skipped, so a rerun or a double fire costs only the check), with the plan's
schedule and the resources of its ``deploy`` section. The Ray token (Ray 2.60 token
authentication, ``RAY_AUTH_MODE=token``) always comes from a secret, never from the manifest:

* ``rayjob``: a KubeRay ``RayJob`` (a cluster per run, deleted after it); KubeRay ≥ 1.5.1
  creates it with ``authOptions`` reading the token from the secret ``deploy.token_secret``.
* ``raycronjob``: a KubeRay ``RayCronJob`` wrapping the same RayJob spec on the schedule
  (KubeRay ≥ 1.6, alpha, behind the operator's ``--feature-gates=RayCronJob=true``).
* ``cronjob``: a Kubernetes ``CronJob`` running ``ray job submit --submission-id
  <plan digest>-<date>`` against a long-lived cluster: Ray refuses a reused submission id, so
  a double fire on the same day does not submit twice.
* ``slurm``: a batch script starting Ray on the allocation, then the entrypoint, and its
  ``scrontab`` line.
* ``airflow``: a DAG with the Google provider's ``RaySubmitJobOperator``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dmr_ray._atomic import write_text_atomic
from dmr_ray.audit.plan import AuditPlan
from dmr_ray.errors import InputError

TOKEN_KEY = "auth_token"
"""The key of the Ray token in the Kubernetes secret (KubeRay's convention)."""
TOKEN_MOUNT = "/etc/ray-auth"
SCHEDULED = ("raycronjob", "cronjob", "slurm", "airflow")
"""Targets that need the plan's ``schedule``."""


def plan_digest(plan_path: Path) -> str:
    """The first 12 hex digits of the SHA-256 of the plan file's bytes."""
    return hashlib.sha256(Path(plan_path).read_bytes()).hexdigest()[:12]


def k8s_name(name: str) -> str:
    """``name`` as a Kubernetes object name (lower case, ``-``), prefixed ``dmr-audit-``."""
    return "dmr-audit-" + re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40]


def entrypoint(plan: AuditPlan) -> str:
    """``python <working_dir>/jobs/audit.py <plan>``."""
    return f"python {plan.deploy.working_dir.rstrip('/')}/jobs/audit.py {plan.deploy.plan}"


def _ray_version() -> str:
    return importlib.metadata.version("ray")


def _container(plan: AuditPlan, name: str, cpus: int, memory: str, gpus: int = 0) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": str(cpus), "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    return {"name": name, "image": plan.deploy.image, "resources": {"limits": limits, "requests": dict(limits)}}


def rayjob_spec(plan: AuditPlan) -> dict[str, Any]:
    """The RayJob spec (also the RayCronJob's ``jobTemplate``)."""
    deploy = plan.deploy
    head = _container(plan, "ray-head", deploy.head_cpus, deploy.head_memory)
    worker = _container(plan, "ray-worker", deploy.worker_cpus, deploy.worker_memory, deploy.worker_gpus)
    cluster: dict[str, Any] = {
        "rayVersion": _ray_version(),
        # KubeRay >= 1.5.1: token authentication; the token is read from this secret (key auth_token).
        "authOptions": {"mode": "token", "secretName": deploy.token_secret},
        "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [head]}}},
        "workerGroupSpecs": [
            {
                "groupName": "workers",
                "replicas": deploy.workers,
                "minReplicas": deploy.workers,
                "maxReplicas": deploy.workers,
                "rayStartParams": {},
                "template": {"spec": {"containers": [worker]}},
            }
        ],
    }
    return {
        "entrypoint": entrypoint(plan),
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": 3600,
        "backoffLimit": 0,
        "rayClusterSpec": cluster,
    }


def _metadata(plan: AuditPlan) -> dict[str, Any]:
    return {
        "name": k8s_name(plan.name),
        "namespace": plan.deploy.namespace,
        "labels": {"app.kubernetes.io/part-of": "dmr-ray", "dmr-ray/plan": k8s_name(plan.name)},
    }


def _header(plan: AuditPlan, plan_path: Path, lines: list[str]) -> str:
    text = [f"dmr_ray audit plan {plan.name!r} ({plan_path.name}, digest {plan_digest(plan_path)})", *lines]
    return "".join(f"# {line}\n" if line else "#\n" for line in text)


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=1000)


def rayjob(plan: AuditPlan, plan_path: Path) -> dict[str, str]:
    """A KubeRay RayJob: a cluster for one run of the plan."""
    header = _header(
        plan,
        plan_path,
        [
            "KubeRay RayJob: a Ray cluster for one run of the plan, deleted when the job ends.",
            f"Token: kubectl create secret generic {plan.deploy.token_secret} --from-file={TOKEN_KEY}=TOKEN_FILE",
            f"Run:   kubectl apply -f {k8s_name(plan.name)}.rayjob.yaml",
        ],
    )
    document = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": _metadata(plan), "spec": rayjob_spec(plan)}
    return {f"{k8s_name(plan.name)}.rayjob.yaml": header + _yaml(document)}


def raycronjob(plan: AuditPlan, plan_path: Path) -> dict[str, str]:
    """A KubeRay RayCronJob: the RayJob on the plan's schedule."""
    header = _header(
        plan,
        plan_path,
        [
            "KubeRay RayCronJob: a new RayJob on the plan's schedule.",
            "ALPHA: needs KubeRay >= 1.6 with the RayCronJob feature gate enabled on the operator",
            "(helm: --set featureGates[0].name=RayCronJob,featureGates[0].enabled=true;",
            " or the operator flag --feature-gates=RayCronJob=true).",
            f"Token: kubectl create secret generic {plan.deploy.token_secret} --from-file={TOKEN_KEY}=TOKEN_FILE",
        ],
    )
    spec = {"schedule": plan.schedule, "jobTemplate": rayjob_spec(plan)}
    document = {"apiVersion": "ray.io/v1", "kind": "RayCronJob", "metadata": _metadata(plan), "spec": spec}
    return {f"{k8s_name(plan.name)}.raycronjob.yaml": header + _yaml(document)}


def submit_command(plan: AuditPlan, submission_id: str) -> str:
    """``ray job submit`` of the entrypoint to ``deploy.address`` with ``submission_id``."""
    return (
        f"ray job submit --address {plan.deploy.address} --submission-id {submission_id} "
        f"--entrypoint-num-cpus 0 -- {entrypoint(plan)}"
    )


def cronjob(plan: AuditPlan, plan_path: Path) -> dict[str, str]:
    """A Kubernetes CronJob submitting the entrypoint to a long-lived Ray cluster."""
    digest = plan_digest(plan_path)
    submission = f"{k8s_name(plan.name)}-{digest}-$(date -u +%Y%m%d)"
    command = submit_command(plan, submission)
    container = {
        "name": "submit",
        "image": plan.deploy.image,
        "command": ["/bin/sh", "-c", command],
        "env": [
            {"name": "RAY_AUTH_MODE", "value": "token"},
            {
                "name": "RAY_AUTH_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": plan.deploy.token_secret, "key": TOKEN_KEY}},
            },
        ],
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
    }
    pod = {"spec": {"restartPolicy": "Never", "containers": [container]}}
    spec = {
        "schedule": plan.schedule,
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": {"backoffLimit": 0, "template": pod}},
    }
    header = _header(
        plan,
        plan_path,
        [
            f"Kubernetes CronJob: submits the plan to the long-lived Ray cluster at {plan.deploy.address}.",
            "The submission id is the plan digest plus the UTC date: Ray refuses a reused id, so a",
            "double fire submits once; the plan's cells are idempotent besides.",
            f"Token: the secret {plan.deploy.token_secret} (key {TOKEN_KEY}) the cluster itself uses.",
        ],
    )
    document = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": _metadata(plan), "spec": spec}
    return {f"{k8s_name(plan.name)}.cronjob.yaml": header + _yaml(document)}


def slurm(plan: AuditPlan, plan_path: Path) -> dict[str, str]:
    """A Slurm batch script starting Ray on the allocation, and its scrontab line."""
    deploy = plan.deploy
    name = k8s_name(plan.name)
    directives = [
        f"--job-name={name}",
        f"--nodes={deploy.workers + 1}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={deploy.worker_cpus}",
        f"--time={deploy.slurm_time}",
        f"--output={name}-%j.log",
    ]
    if deploy.worker_gpus:
        directives.append(f"--gpus-per-node={deploy.worker_gpus}")
    if deploy.slurm_partition:
        directives.append(f"--partition={deploy.slurm_partition}")
    about = [
        "Slurm: starts Ray on the allocation (head on the first node), then the plan's entrypoint.",
        f"Submit once: sbatch {name}.sbatch; on the schedule: scrontab {name}.scrontab",
    ]
    script = f"""#!/bin/bash
{_header(plan, plan_path, about).rstrip()}
{chr(10).join("#SBATCH " + d for d in directives)}
set -euo pipefail

# Token authentication: every Ray process reads the token from a file only its owner can read.
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH="${{RAY_AUTH_TOKEN_PATH:-{deploy.token_path}}}"
export RAY_USAGE_STATS_ENABLED=0

nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head_node=${{nodes[0]}}
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | awk '{{print $1}}')
port=6379

srun --nodes=1 --ntasks=1 -w "$head_node" \\
    ray start --head --node-ip-address="$head_ip" --port=$port \\
    --num-cpus="$SLURM_CPUS_PER_TASK" --dashboard-host=127.0.0.1 --block &
sleep 30
for node in "${{nodes[@]:1}}"; do
    srun --nodes=1 --ntasks=1 -w "$node" \\
        ray start --address="$head_ip:$port" --num-cpus="$SLURM_CPUS_PER_TASK" --block &
done
sleep 30

cd {deploy.working_dir}
RAY_ADDRESS="$head_ip:$port" {entrypoint(plan)}
"""
    script_path = f"{deploy.working_dir.rstrip('/')}/{name}.sbatch"
    crontab = (
        f"# scrontab entry of dmr_ray audit plan {plan.name!r}: install with `scrontab {name}.scrontab`\n"
        f"#SCRON --job-name={name}-cron\n"
        f"#SCRON --time=00:05:00\n"
        f"{plan.schedule} sbatch {script_path}\n"
    )
    return {f"{name}.sbatch": script, f"{name}.scrontab": crontab}


def airflow(plan: AuditPlan, plan_path: Path) -> dict[str, str]:
    """An Airflow DAG submitting the entrypoint with ``RaySubmitJobOperator``."""
    name = k8s_name(plan.name)
    digest = plan_digest(plan_path)
    address = plan.deploy.airflow_conn_address or plan.deploy.address
    dag = f'''"""Airflow DAG of dmr_ray audit plan {plan.name!r} ({plan_path.name}, digest {digest}).

Submits the plan's entrypoint to the Ray cluster at {address} on the plan's schedule with
the Google provider's RaySubmitJobOperator (apache-airflow-providers-google). The submission id
is the plan digest plus the run's logical date, so a rerun of one date is refused by Ray.

Token: the Airflow workers need RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH pointing at the
mounted secret holding the cluster's token (never a DAG argument or an Airflow Variable in
plain text).
"""

from datetime import datetime

from airflow.models.dag import DAG
from airflow.providers.google.cloud.operators.ray import RaySubmitJobOperator

with DAG(
    dag_id={name!r},
    schedule={plan.schedule!r},
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["dmr-ray", "audit"],
) as dag:
    RaySubmitJobOperator(
        task_id="audit",
        cluster_address={address!r},
        entrypoint={entrypoint(plan)!r},
        submission_id={name + "-" + digest + "-{{ ds_nodash }}"!r},
        wait_for_job_done=True,
        get_job_logs=True,
    )
'''
    return {f"{name.replace('-', '_')}_dag.py": dag}


EXPORTERS: dict[str, Callable[[AuditPlan, Path], dict[str, str]]] = {
    "rayjob": rayjob,
    "raycronjob": raycronjob,
    "cronjob": cronjob,
    "slurm": slurm,
    "airflow": airflow,
}


def export_plan(plan: AuditPlan, plan_path: Path, target: str, out: Path) -> list[Path]:
    """Write ``target``'s manifest(s) of ``plan`` into ``out``; returns the files written.

    Raises
    ------
    InputError
        For an unknown target, or a scheduled target when the plan has no ``schedule``
        (checked before anything is written).
    """
    if target not in EXPORTERS:
        raise InputError(f"--to {target!r}: choose from {sorted(EXPORTERS)}")
    if target in SCHEDULED and plan.schedule is None:
        raise InputError(f"schedule: the plan has none, and --to {target} runs on a schedule; add schedule: 'CRON'")
    files = EXPORTERS[target](plan, Path(plan_path))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        write_text_atomic(out / name, text)
        written.append(out / name)
    return written

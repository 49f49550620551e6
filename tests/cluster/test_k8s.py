"""k8s/: the kustomizations render, the built-in kinds validate against the Kubernetes schemas (offline, with
kubernetes-validate), the Kubeflow kinds against the fields we use, the pieces agree with each other (node and GPU
counts, rendezvous address, volume, secret, preemption policy), and k8s/base/torchrun.py maps preemption to 75."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cluster_helpers import FAKE_TRAIN, REPO, fake_config, latest_checkpoint, logged_steps, python_env

from cyclesr_dist.testing import free_port

K8S = REPO / "k8s"
K8S_VERSION = "1.31.0"  # podFailurePolicy is GA from 1.31
PREEMPTED = 75
GPU = "nvidia.com/gpu"
FLAVOURS = ["trainjob", "indexed-job"]
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())


def render(path: Path) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed (the machine image ships it; see .ci/install-cluster-deps.sh)")
    proc = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def validate_builtin(doc: dict) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (.ci/install-cluster-deps.sh)"
    )
    kv.validate(doc, K8S_VERSION, strict=True)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def check_wandb_secret(env: dict[str, dict]) -> None:
    key = env["WANDB_API_KEY"]
    assert "value" not in key, "the W&B key must come from a Secret, never inline"
    ref = key["valueFrom"]["secretKeyRef"]
    assert ref["name"] and ref["key"]


def check_pod_template(pod_spec: dict, container: dict, pvc_names: set[str]) -> None:
    assert pod_spec["restartPolicy"] == "Never"  # podFailurePolicy requires it
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod_spec["volumes"] if "persistentVolumeClaim" in v}
    assert claims and claims <= pvc_names, f"volume claims {claims} not among the PVCs {pvc_names}"
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts <= {v["name"] for v in pod_spec["volumes"]}


def check_pod_failure_policy(policy: dict, container: str, action_on_75: str) -> None:
    rules = policy["rules"]
    exit_rules = [r for r in rules if "onExitCodes" in r]
    assert any(
        r["action"] == action_on_75
        and r["onExitCodes"]["operator"] == "In"
        and PREEMPTED in r["onExitCodes"]["values"]
        and r["onExitCodes"].get("containerName") == container
        for r in exit_rules
    ), rules
    assert any(c["type"] == "DisruptionTarget" for r in rules for c in r.get("onPodConditions", [])), rules


# The fields of the Kubeflow Trainer v1alpha1 kinds these manifests use (pkg/apis/trainer/v1alpha1); unknown fields
# are errors, so a typo fails here rather than in the cluster's admission webhook.
_STR = {"type": "string"}
_INT = {"type": "integer"}
_OBJ = {"type": "object"}
TRAINJOB_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "trainer.kubeflow.org/v1alpha1"},
        "kind": {"const": "TrainJob"},
        "metadata": _OBJ,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["runtimeRef"],
            "properties": {
                "runtimeRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": _STR,
                        "apiGroup": {"const": "trainer.kubeflow.org"},
                        "kind": {"enum": ["TrainingRuntime", "ClusterTrainingRuntime"]},
                    },
                },
                "trainer": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "image": _STR,
                        "command": {"type": "array", "items": _STR},
                        "args": {"type": "array", "items": _STR},
                        "env": {"type": "array", "items": _OBJ},
                        "numNodes": {"type": "integer", "minimum": 1},
                        "numProcPerNode": {"type": "integer", "minimum": 1},
                        "resourcesPerNode": _OBJ,
                    },
                },
                "suspend": {"type": "boolean"},
                "managedBy": _STR,
                "activeDeadlineSeconds": _INT,
                "runtimePatches": {"type": "array"},
                "initializer": _OBJ,
            },
        },
    },
}
RUNTIME_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "trainer.kubeflow.org/v1alpha1"},
        "kind": {"enum": ["TrainingRuntime", "ClusterTrainingRuntime"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["template"],
            "properties": {
                "mlPolicy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "numNodes": {"type": "integer", "minimum": 1},
                        "torch": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"numProcPerNode": {"type": ["integer", "string"]}},
                        },
                    },
                },
                "podGroupPolicy": _OBJ,
                "template": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "metadata": _OBJ,
                        "spec": {  # a JobSet spec (jobset.x-k8s.io/v1alpha2)
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["replicatedJobs"],
                            "properties": {
                                "failurePolicy": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "maxRestarts": {"type": "integer", "minimum": 0},
                                        "restartStrategy": {"enum": ["Recreate", "BlockingRecreate"]},
                                        "rules": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "additionalProperties": False,
                                                "required": ["name", "action"],
                                                "properties": {
                                                    "name": {
                                                        "type": "string",
                                                        "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
                                                    },
                                                    "action": {
                                                        "enum": [
                                                            "FailJobSet",
                                                            "RestartJobSet",
                                                            "RestartJobSetAndIgnoreMaxRestarts",
                                                        ]
                                                    },
                                                    "onJobFailureReasons": {"type": "array", "items": _STR},
                                                    "targetReplicatedJobs": {"type": "array", "items": _STR},
                                                },
                                            },
                                        },
                                    },
                                },
                                "replicatedJobs": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["name", "template"],
                                        "properties": {"name": _STR, "replicas": _INT, "template": _OBJ},
                                    },
                                },
                                "network": _OBJ,
                                "successPolicy": _OBJ,
                                "startupPolicy": _OBJ,
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("name", FLAVOURS + [f"overlays/{o}" for o in OVERLAYS])
def test_renders_and_builtin_kinds_validate(name):
    docs = render(K8S / name)
    kinds = sorted(d["kind"] for d in docs)
    assert "PersistentVolumeClaim" in kinds
    assert "Secret" not in kinds, "no Secret in the manifests: the W&B key secret is created by the user"
    for doc in docs:
        if not doc["apiVersion"].startswith("trainer.kubeflow.org/"):
            validate_builtin(doc)


@pytest.mark.parametrize("name", ["indexed-job"] + [f"overlays/{o}" for o in OVERLAYS if o.startswith("indexed")])
def test_indexed_job_is_consistent(name):
    docs = render(K8S / name)
    (job,) = by_kind(docs, "Job")
    (svc,) = by_kind(docs, "Service")
    pvcs = {p["metadata"]["name"] for p in by_kind(docs, "PersistentVolumeClaim")}
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)

    nodes = int(env["PET_NNODES"]["value"])
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == nodes
    assert "job-completion-index" in env["PET_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    # rank 0's address: pod <job>-0 under the headless Service's subdomain
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert pod["subdomain"] == svc["metadata"]["name"]
    assert env["PET_MASTER_ADDR"]["value"] == f"{job['metadata']['name']}-0.{svc['metadata']['name']}"
    assert svc["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    assert int(env["PET_MASTER_PORT"]["value"]) in {p["port"] for p in svc["spec"]["ports"]}
    gpus = container["resources"].get("limits", {}).get(GPU)
    if gpus is not None:
        assert int(gpus) == int(env["PET_NPROC_PER_NODE"]["value"])
    # preemption: restart pods that saved and exited 75, or were disrupted, without counting them as failures
    check_pod_failure_policy(spec["podFailurePolicy"], container["name"], "Ignore")
    assert int(env["PET_SHUTDOWN_TIMEOUT"]["value"]) < pod["terminationGracePeriodSeconds"]
    assert "checkpoint.resume=auto" in container["args"]
    assert container["command"][:2] == ["python", "k8s/base/torchrun.py"]
    check_pod_template(pod, container, pvcs)
    check_wandb_secret(env)


@pytest.mark.parametrize("name", ["trainjob"] + [f"overlays/{o}" for o in OVERLAYS if o.startswith("trainjob")])
def test_trainjob_is_consistent(name):
    jsonschema = pytest.importorskip("jsonschema")
    docs = render(K8S / name)
    (trainjob,) = by_kind(docs, "TrainJob")
    (runtime,) = by_kind(docs, "TrainingRuntime")
    pvcs = {p["metadata"]["name"] for p in by_kind(docs, "PersistentVolumeClaim")}
    jsonschema.validate(trainjob, TRAINJOB_SCHEMA)
    jsonschema.validate(runtime, RUNTIME_SCHEMA)

    ref = trainjob["spec"]["runtimeRef"]
    assert (ref["kind"], ref["name"]) == (runtime["kind"], runtime["metadata"]["name"])
    trainer = trainjob["spec"]["trainer"]
    limits = trainer["resourcesPerNode"]["limits"]
    assert int(limits[GPU]) == trainer["numProcPerNode"] and trainer["numNodes"] >= 1
    assert "checkpoint.resume=auto" in trainer["args"]
    assert trainer["command"][:2] == ["python", "k8s/base/torchrun.py"]
    env = {e["name"]: e for e in trainer["env"]}
    check_wandb_secret(env)
    # The trainer's container as the Trainer will build it: validate its fields as a Pod's container.
    container = {"name": "node", "image": trainer["image"], "command": trainer["command"], "args": trainer["args"]}
    container |= {"env": trainer["env"], "resources": trainer["resourcesPerNode"]}
    validate_builtin(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": [container]}}
    )

    jobset = runtime["spec"]["template"]["spec"]
    rules = jobset["failurePolicy"]["rules"]
    assert any(
        r["action"] == "RestartJobSetAndIgnoreMaxRestarts" and r["onJobFailureReasons"] == ["PodFailurePolicy"]
        for r in rules
    ), rules
    (node,) = [r for r in jobset["replicatedJobs"] if r["name"] == "node"]  # the Trainer's torch runtime names
    job_template = node["template"]
    validate_builtin(
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "node"}, "spec": job_template["spec"]}
    )
    job_spec = job_template["spec"]
    assert job_spec["backoffLimit"] == 0
    check_pod_failure_policy(job_spec["podFailurePolicy"], "node", "FailJob")
    pod = job_spec["template"]["spec"]
    (runtime_container,) = pod["containers"]
    assert runtime_container["name"] == "node"
    assert int(env["PET_SHUTDOWN_TIMEOUT"]["value"]) < pod["terminationGracePeriodSeconds"]
    check_pod_template(pod, runtime_container, pvcs)


def test_overlays_set_node_and_gpu_counts():
    trainjob = by_kind(render(K8S / "overlays" / "trainjob-2x8"), "TrainJob")[0]["spec"]["trainer"]
    assert (trainjob["numNodes"], trainjob["numProcPerNode"], int(trainjob["resourcesPerNode"]["limits"][GPU])) == (
        2,
        8,
        8,
    )
    job = by_kind(render(K8S / "overlays" / "indexed-job-2x8"), "Job")[0]
    assert job["spec"]["parallelism"] == 2
    assert int(job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][GPU]) == 8
    cpu = by_kind(render(K8S / "overlays" / "indexed-job-cpu"), "Job")[0]["spec"]["template"]["spec"]["containers"][0]
    assert GPU not in cpu["resources"]["limits"] and env_of(cpu)["PET_NPROC_PER_NODE"]["value"] == "2"


def _torchrun(run_dir: Path, config: Path) -> subprocess.Popen[str]:
    env = python_env(
        {
            "PET_NNODES": "1",
            "PET_NPROC_PER_NODE": "2",
            "PET_NODE_RANK": "0",
            "PET_MASTER_ADDR": "127.0.0.1",
            "PET_MASTER_PORT": str(free_port()),
            "PET_SHUTDOWN_TIMEOUT": "30",
        }
    )
    cmd = [sys.executable, str(K8S / "base" / "torchrun.py"), str(FAKE_TRAIN), "--config", str(config)]
    cmd += [f"output_dir={run_dir}", "checkpoint.resume=auto"]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_torchrun_wrapper_exits_75_on_preemption_and_resumes(tmp_path):
    """What a pod does: SIGTERM -> the ranks save -> exit 75; the next pod resumes; a worker's own 75 -> 75."""
    run_dir = tmp_path / "run"
    config = fake_config(
        tmp_path / "fake.yaml", max_steps=40, checkpoint={"every_steps": 1000}, fake={"step_s": 0.1, "stop_at": 25}
    )
    # 1. the pod is told to stop (kubelet sends SIGTERM to the container's main process)
    proc = _torchrun(run_dir, config)
    deadline = time.monotonic() + 60
    while max(logged_steps(run_dir), default=0) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == PREEMPTED, out
    stopped_at = int(latest_checkpoint(run_dir).split("-")[1])
    assert 5 <= stopped_at < 25, out
    # 2. the replacement pod resumes; a rank then exits 75 on its own (as after a peer's preemption at step 25)
    proc = _torchrun(run_dir, config)
    out = proc.communicate(timeout=90)[0]
    assert proc.returncode == PREEMPTED, out
    assert latest_checkpoint(run_dir) == "step-00000025", out
    assert logged_steps(run_dir) == list(range(1, 26)), out  # resumed where it stopped: no step twice

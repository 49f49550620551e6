"""DeepSpeed backend: settings checks (fast), and real multi-process runs of tests/ds_driver.py (slow).

The slow tests launch `accelerate launch --config_file configs/accelerate/deepspeed_zero{1,2}.yaml
--num_processes 2` on CPU (gloo), i.e. the same launch path as production, with tiny networks. ~10 s per launch
on 2 cores; the 2-process ZeRO-2 run is shared by the resume-at-world-size-1 test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cyclesr_dist.engine.backends.deepspeed.checkpoint import DS_SUBDIR, TAG
from cyclesr_dist.engine.backends.deepspeed.settings import bucket_elements, deepspeed_requested, resolve_settings
from cyclesr_dist.engine.backends.deepspeed.universal import convert_to_universal
from cyclesr_dist.testing import free_port, tiny_config

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "ds_driver.py"
ACCEL_ENV = [
    "ACCELERATE_USE_DEEPSPEED",
    "ACCELERATE_DEEPSPEED_ZERO_STAGE",
    "ACCELERATE_GRADIENT_CLIPPING",
    "ACCELERATE_GRADIENT_ACCUMULATION_STEPS",
    "ACCELERATE_MIXED_PRECISION",
    "ACCELERATE_DEEPSPEED_CONFIG_FILE",
    "ACCELERATE_CONFIG_DS_FIELDS",
]


# ------------------------------------------------------------------------------------------ settings (fast)
@pytest.fixture
def clean_env(monkeypatch):
    for name in ACCEL_ENV + ["WORLD_SIZE"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_selected_by_the_accelerate_environment(clean_env):
    assert not deepspeed_requested()
    clean_env.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert deepspeed_requested()


def test_engine_config_is_explicit(clean_env):
    clean_env.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "1")
    clean_env.setenv("ACCELERATE_GRADIENT_CLIPPING", "50.0")
    clean_env.setenv("WORLD_SIZE", "4")
    cfg = resolve_settings(tiny_config(**{"data.batch_size": "64"})).engine_config(group_params=1000)
    assert cfg["zero_optimization"]["stage"] == 1
    assert cfg["gradient_clipping"] == 50.0
    assert cfg["train_micro_batch_size_per_gpu"] == 16 and cfg["train_batch_size"] == 64
    assert cfg["gradient_accumulation_steps"] == 1
    assert cfg["torch_autocast"]["enabled"] is False and cfg["bf16"] == {"enabled": False}


def test_buckets_fit_the_group_and_a_base_config_file_wins(clean_env, tmp_path):
    cfg = resolve_settings(tiny_config()).engine_config(group_params=3 * 2**20 + 1)
    assert cfg["zero_optimization"]["reduce_bucket_size"] == 4 * 2**20
    assert cfg["zero_optimization"]["allgather_bucket_size"] == 4 * 2**20
    assert bucket_elements(10) == 2**20 and bucket_elements(2**20) == 2**20
    base = tmp_path / "ds.json"
    base.write_text(json.dumps({"zero_optimization": {"reduce_bucket_size": 12345678}}))
    clean_env.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(base))
    cfg = resolve_settings(tiny_config()).engine_config(group_params=10)
    assert cfg["zero_optimization"]["reduce_bucket_size"] == 12345678
    assert cfg["zero_optimization"]["allgather_bucket_size"] == 2**20


def test_clipping_off_stays_off(clean_env):
    # A missing/"auto" gradient_clipping becomes 1.0 in Accelerate; 0 must be written out.
    cfg = resolve_settings(tiny_config(**{"optim.grad_clip": "0"})).engine_config(group_params=1000)
    assert cfg["gradient_clipping"] == 0.0


def test_bf16_becomes_torch_autocast(clean_env):
    clean_env.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    cfg = resolve_settings(tiny_config()).engine_config(group_params=1000)
    assert cfg["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"} and cfg["bf16"] == {"enabled": False}


@pytest.mark.parametrize(
    "env, overrides, message",
    [
        ({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "0"}, {}, "ZeRO stage 0 cannot train CycleSR"),
        ({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, {}, "stage 3 is not supported"),
        ({"ACCELERATE_GRADIENT_CLIPPING": "1.0"}, {}, "must agree"),
        ({"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "2"}, {}, "gradient_accumulation_steps 1"),
        ({}, {"train.gradient_accumulation_steps": "2"}, "gradient_accumulation_steps 1"),
        ({"ACCELERATE_MIXED_PRECISION": "fp16"}, {}, "not supported with DeepSpeed"),
        ({"ACCELERATE_MIXED_PRECISION": "bf16"}, {"train.mixed_precision": "fp16"}, "contradicts"),
        ({"WORLD_SIZE": "3"}, {"data.batch_size": "4"}, "divisible"),
        ({}, {"optim.clip_per_network": "true"}, "clip_per_network needs the DDP backend"),
    ],
)
def test_refused_settings(clean_env, env, overrides, message):
    for k, v in env.items():
        clean_env.setenv(k, v)
    with pytest.raises(ValueError, match=message):
        resolve_settings(tiny_config(**overrides))


# ------------------------------------------------------------------------------------------ real runs (slow)
def _launch(zero_stage: int, num_processes: int, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ACCEL_ENV and not k.startswith(("RANK", "LOCAL_RANK"))}
    env.pop("WORLD_SIZE", None)
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / f"deepspeed_zero{zero_stage}.yaml"),
        "--num_processes",
        str(num_processes),
        "--main_process_port",
        str(free_port()),
        str(DRIVER),
        *args,
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if "rank0" in ln or "Error" in ln]
        pytest.fail(f"driver failed (rc {result.returncode}):\n" + "\n".join(lines[-40:]))
    return result


@pytest.fixture(scope="module")
def train_runs(tmp_path_factory):
    """{zero_stage: output dir} of 2-process `train` runs, made on first use."""
    runs: dict[int, Path] = {}

    def get(zero_stage: int) -> Path:
        if zero_stage not in runs:
            out = tmp_path_factory.mktemp(f"zero{zero_stage}")
            _launch(zero_stage, 2, "--scenario", "train", "--out", str(out))
            runs[zero_stage] = out
        return runs[zero_stage]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [1, 2])
def test_joint_training_two_ranks(train_runs, zero_stage):
    """All checks run inside the driver (it fails the launch); here: the report says they ran."""
    report = json.loads((train_runs(zero_stage) / "train.json").read_text())
    assert report["world_size"] == 2
    assert set(report["zero_stage"].values()) == {zero_stage}
    assert set(report["gradient_clipping"].values()) == {50.0}
    # Each engine reduces its group in one bucket of the group's size, not DeepSpeed's 5e8-element default.
    assert report["reduce_bucket_size"] == {
        group: bucket_elements(params) for group, params in report["group_params"].items()
    }
    stages = [s["stage"] for s in report["steps"]]
    assert stages == ["translation", "translation", "sr_pretrain", "joint", "joint", "joint"]
    joint = report["steps"][3]
    assert joint["reached"] == [["D_X", "D_Y"], ["G", "SR"]]  # all four engines, two per backward
    assert all(joint["replicas_identical"].values())
    assert report["max_abs_diff_vs_reference"] < 1e-6
    assert max(report["resume_max_abs_diff"].values()) == 0.0
    # The checkpoint: one directory per engine, one optimizer shard per rank.
    ckpt = train_runs(zero_stage) / "ckpt" / "step-00000004" / DS_SUBDIR
    for group in ("G", "D_X", "D_Y", "SR"):
        assert (ckpt / group / "latest").read_text().strip() == TAG
        assert len(list((ckpt / group / TAG).glob("*zero_pp_rank_*_optim_states.pt"))) == 2


@pytest.mark.slow
def test_resume_at_world_size_one_through_universal_checkpoint(train_runs, tmp_path):
    source = train_runs(2)
    step_dir = tmp_path / "step-00000004"
    shutil.copytree(source / "ckpt" / "step-00000004", step_dir)
    converted = convert_to_universal(step_dir)
    assert sorted(p.parent.name for p in converted) == ["D_X", "D_Y", "G", "SR"]
    out = tmp_path / "out"
    out.mkdir()
    _launch(2, 1, "--scenario", "universal", "--out", str(out), "--ckpt", str(step_dir), "--ckpt-out", str(source))
    report = json.loads((out / "universal.json").read_text())
    assert report["world_size"] == 1
    assert "world size" in report["refused_without_conversion"]
    assert max(report["weights_max_abs_diff"].values()) == 0.0
    assert len(report["continued_losses"]) == 2

"""DeepSpeed settings: what the accelerate launcher exported, checked against the job config, turned into one
engine config per optimizer group."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ....config import Config
from ....errors import BadInput


def deepspeed_requested() -> bool:
    """True when launched with a DeepSpeed accelerate config (`accelerate launch` exports this)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


@dataclass(frozen=True)
class DeepSpeedSettings:
    zero_stage: int
    grad_clip: float
    micro_batch: int
    world_size: int
    mixed_precision: str  # "no" | "bf16"
    base_config: dict[str, Any] = field(default_factory=dict)

    def engine_config(self, group_params: int) -> dict[str, Any]:
        """One engine's DeepSpeed config (every group gets its own copy) for a group of `group_params` parameters."""
        cfg = copy.deepcopy(self.base_config)
        cfg["train_micro_batch_size_per_gpu"] = self.micro_batch
        cfg["train_batch_size"] = self.micro_batch * self.world_size
        cfg["gradient_accumulation_steps"] = 1
        # Explicit, also when 0: Accelerate fills a missing/"auto" value with 1.0 (measured: a plugin built with
        # gradient_clipping=0.0 ends up clipping at 1.0).
        cfg["gradient_clipping"] = float(self.grad_clip)
        zero = cfg.setdefault("zero_optimization", {})
        zero["stage"] = self.zero_stage
        # DeepSpeed's default buckets hold 5e8 elements (2 GB in fp32), and ZeRO allocates the reduce bucket anew
        # for every engine at every step: on the CPU the kernel zeroes its fresh pages each step, on a GPU it
        # reserves gigabytes per engine. A bucket the size of the group's parameters reduces the same gradients
        # in one call. A base config file's own sizes win.
        bucket = bucket_elements(group_params)
        zero.setdefault("reduce_bucket_size", bucket)
        zero.setdefault("allgather_bucket_size", bucket)
        # bf16: autocast forward with fp32 master weights and fp32 gradients, like DDP + AMP. DeepSpeed's
        # "bf16" mode would cast the modules themselves. Keep "bf16"/"fp16" present and off, so that
        # Accelerate's set_mixed_precision leaves them alone.
        cfg["bf16"] = {"enabled": False}
        cfg["fp16"] = {"enabled": False}
        cfg["torch_autocast"] = {"enabled": self.mixed_precision == "bf16", "dtype": "bfloat16"}
        cfg["steps_per_print"] = 2**31 - 1
        return cfg


def bucket_elements(group_params: int) -> int:
    """Elements of a bucket that holds all of a group's gradients: rounded up to a multiple of 2**20 (the
    all-gather bucket must be a multiple of DeepSpeed's start alignment), at least 2**20."""
    step = 2**20
    return max(step, -(-group_params // step) * step)


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value in (None, "", "auto", "none") else value


def resolve_settings(config: Config, world_size: int | None = None) -> DeepSpeedSettings:
    """Settings from the job config and the accelerate environment; any contradiction is an error."""
    stage = int(_env("ACCELERATE_DEEPSPEED_ZERO_STAGE") or 2)
    if stage == 0:
        raise BadInput(
            "DeepSpeed ZeRO stage 0 cannot train CycleSR: one loss runs through several trainable engines "
            "(G + SR, D_X + D_Y), and DeepSpeed 0.19 refuses a backward that is not engine.backward at stage 0 "
            "('Direct calls to tensor.backward() are not supported'). Use zero_stage 1 or 2, or the DDP backend."
        )
    if stage not in (1, 2):
        raise BadInput(
            f"DeepSpeed ZeRO stage {stage} is not supported by this backend (parameters must stay whole on every "
            "rank for the frozen raw-module forwards); use zero_stage 1 or 2."
        )

    clip = float(config.optim.grad_clip)
    if config.optim.clip_per_network and clip > 0:
        raise BadInput(
            "optim.clip_per_network needs the DDP backend: a DeepSpeed engine clips its whole group at once "
            "(set optim.clip_per_network=false, or train without DeepSpeed)"
        )
    env_clip = _env("ACCELERATE_GRADIENT_CLIPPING")
    if env_clip is not None and abs(float(env_clip) - clip) > 1e-12:
        raise BadInput(
            f"accelerate config gradient_clipping={env_clip} but optim.grad_clip={clip}; they must agree "
            "(every engine clips its group at optim.grad_clip)"
        )

    gas_env = _env("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    if config.train.gradient_accumulation_steps != 1 or (gas_env is not None and int(gas_env) != 1):
        raise BadInput(
            "the DeepSpeed backend needs gradient_accumulation_steps 1: DeepSpeed's output hooks divide every "
            "gradient that crosses an engine output by that engine's accumulation steps"
        )

    mp_env = (_env("ACCELERATE_MIXED_PRECISION") or "no").lower()
    mp_cfg = config.train.mixed_precision
    if "no" not in (mp_env, mp_cfg) and mp_env != mp_cfg:
        raise BadInput(f"ACCELERATE_MIXED_PRECISION={mp_env} contradicts train.mixed_precision={mp_cfg}")
    mixed = mp_cfg if mp_cfg != "no" else mp_env
    if mixed not in ("no", "bf16"):
        raise BadInput(
            f"mixed precision {mixed!r} is not supported with DeepSpeed here: use bf16 (DeepSpeed torch_autocast) "
            "or no. fp16 would need one loss scaler shared by engines that one loss runs through."
        )

    world = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    if config.data.batch_size % world:
        raise BadInput(f"data.batch_size={config.data.batch_size} is global and must be divisible by {world}")

    base: dict[str, Any] = {}
    config_file = _env("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if config_file is not None:
        base = json.loads(Path(config_file).read_text())
        for key in ("optimizer", "scheduler"):
            if key in base:
                raise BadInput(f"{config_file}: remove {key!r}; the job config owns optimizers and learning rates")
    return DeepSpeedSettings(stage, clip, config.data.batch_size // world, world, mixed, base)


def make_plugin(settings: DeepSpeedSettings, group_params: int):  # noqa: ANN201 - accelerate is imported lazily
    """A DeepSpeedPlugin holding exactly `settings.engine_config(group_params)`.

    Built from keyword arguments and then completed in place, not from `hf_ds_config=`: under `accelerate
    launch`, ACCELERATE_CONFIG_DS_FIELDS names the accelerate config's DeepSpeed keys, and a plugin built from a
    config dict refuses to start while those are set (`_deepspeed_config_checks`).
    """
    from accelerate import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(
        hf_ds_config="none",
        zero_stage=settings.zero_stage,
        gradient_clipping=settings.grad_clip,
        gradient_accumulation_steps=1,
        offload_optimizer_device="none",
        offload_param_device="none",
        zero3_init_flag=False,
    )
    cfg = settings.engine_config(group_params)
    plugin.deepspeed_config.clear()  # the same dict object the plugin's HfDeepSpeedConfig holds
    plugin.deepspeed_config.update(cfg)
    return plugin

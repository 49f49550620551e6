"""Typed configuration: YAML -> nested dataclasses, with `key.sub=value` overrides.

Every key is checked before anything starts: an unknown key names itself and the valid ones, a value of the
wrong type names the key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .config_parse import ConfigError, build, deep_copy, parse_override, set_path


@dataclass
class NetworkConfig:
    """A registry entry: `name` picks the class, `args` are its constructor arguments (checked when built)."""

    name: str = ""
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """The registered classes' own defaults are the reference hyper-parameters; `args` overrides them."""

    generator: NetworkConfig = field(default_factory=lambda: NetworkConfig("resnet"))
    discriminator: NetworkConfig = field(default_factory=lambda: NetworkConfig("patchgan"))
    sr: NetworkConfig = field(default_factory=lambda: NetworkConfig("vdsr_lr"))


@dataclass
class LossConfig:
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # identity weight = lambda_cycle * lambda_identity
    sr_lam: float = 1000.0  # SR net's own MSE weight
    cycle_sr_lam: float = 1000.0  # weight of the SR MSE in the generator update (joint stage)
    # Not in the reference: set, the weight above moves geometrically over the joint stage's epochs from
    # cycle_sr_lam (its first) to this (the last epoch, n_epoch + n_epoch_decay); None = constant (the reference).
    cycle_sr_lam_final: float | None = None
    # Not in the reference: a Gaussian σ (LR px) > 0 passes G only the low band of the SR term's gradient (blur_σ of
    # ∂loss/∂G(x)): the term can still make G blur or tint less, but not add fine-band energy the real LR lacks
    # (noise-like detail that survives G's JPEG and that the SR net learns to read); 0 = full band (the reference).
    cycle_sr_low_pass: float = 0.0
    # Not in the reference: set (dB), the SR term's weight in G's update is cut tenfold per dB by which G's output
    # exceeds the real LR's fine-band energy beyond this (running means over the joint stage's batches; no pairs
    # needed): the term may sharpen G up to the real LR's fine band, not push noise-like detail past it. None = off.
    cycle_sr_fine_cap: float | None = None
    # Not in the reference: weight of the real LR's cycle through the SR net in the joint stage's SR update, the
    # cycle terms' L1 between G(clean LR of SR(real LR)) and the real LR with G frozen: the SR net's only loss on
    # the user's real photos themselves; 0 = off (the reference). Acts only where the SR net trains (sr_lam > 0).
    sr_real_cycle_lam: float = 0.0
    # SR pre-training stage's MSE weight; None = sr_lam (this project's default). vega passes 1 there.
    sr_pretrain_lam: float | None = None
    pool_size: int = 50
    # Not in the reference: weight of `spectrum_loss` (G's batch-mean log spectrum vs. the real LR's) in the
    # generator update, every stage; 0 disables.
    lambda_spectral: float = 0.0
    # Not in the reference: a Gaussian σ (LR px) > 0 makes the cycle and identity L1s compare only the images' low
    # band, blur_σ(a) vs blur_σ(b), leaving the fine band (noise, JPEG, sharpening) to the discriminators alone; 0 =
    # full band (the reference).
    content_low_pass: float = 0.0


@dataclass
class OptimConfig:
    cyc_lr: float = 2e-4  # generators and discriminators
    sr_lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    grad_clip: float = 50.0  # per network group; 0 disables
    # Clip each network of a group on its own (vega clips G and F separately) instead of the group as one.
    clip_per_network: bool = False
    n_epoch: int = 100  # epochs at the initial learning rate
    n_epoch_decay: int = 100  # epochs of linear decay to zero after that
    # The decay's step: "cyclegan" lr·(1 - k/(n_epoch_decay + 1)) in decay epoch k (the last epoch keeps a small
    # rate); "vega" lr·(1 - k/n_epoch_decay) (the last epoch runs at 0).
    lr_rule: Literal["cyclegan", "vega"] = "cyclegan"
    foreach: bool = True
    fused: bool = False  # torch's fused Adam kernel (CPU and CUDA); overrides foreach


@dataclass
class StageConfig:
    """Epoch boundaries (epochs count from 1, as in the reference)."""

    sr_pretrain_epoch: int = 6  # epochs before this train the translation networks only
    joint_epoch: int = 7  # epochs in [sr_pretrain_epoch, joint_epoch) pre-train SR on (clean LR, HR)
    # What the SR net pre-trains on: "clean_lr" (the reference: the HR's clean LR) or "translated" (not in the
    # reference: G(clean LR) from the frozen translation network, the inputs the joint stage will give it).
    sr_pretrain_input: Literal["clean_lr", "translated"] = "clean_lr"


@dataclass
class DataConfig:
    kind: Literal["folder", "webdataset"] = "folder"
    root: str = "data/demo"  # folder kind: root/hr, root/real_lr, root/val/{hr,lr}
    hr_shards: str = ""  # webdataset kind: URLs/brace pattern of HR crop shards
    lr_shards: str = ""  # webdataset kind: URLs/brace pattern of real-LR crop shards
    val_shards: str = ""  # webdataset kind: paired validation shards (optional)
    scale: int = 4
    hr_patch: int = 480  # HR training patch; the LR patch is hr_patch // scale
    batch_size: int = 64  # global, split over processes
    num_workers: int = 2
    steps_per_epoch: int = 100  # 0: one pass over the HR images, ⌊count / batch_size⌋ (vega's epoch)
    # Batches in page-locked memory, so the copy to a CUDA device runs without the host waiting for it (the
    # step copies with non_blocking). Only where CUDA is available; no effect on a CPU run.
    pin_memory: bool = True
    val_max_images: int = 0  # 0 = all
    # How the LR input of an HR crop is made: `bicubic` or `sampled` (CycleSR's clean domain X, `images.CLEAN_LR`)
    # or a `data.degrade` operator name (supervised training on synthetic pairs, e.g. `realesrgan`: the blind
    # recipe). See data/augment.py.
    hr_to_lr: str = "bicubic"
    hr_augment: Literal["dihedral", "flips", "none"] = "dihedral"  # random transform of HR crops
    lr_augment: Literal["dihedral", "flips", "none"] = "dihedral"  # ... and of real-LR crops
    # The range the networks train in: batches arrive in [-1, 1] and are mapped to it at the step, so every loss
    # weight means what it means in that range (vega: [0, 1], its `to_tensor`). Stored with each network in the
    # checkpoint and the export, so upscaling maps its input and output the same way.
    value_range: tuple[float, float] = (-1.0, 1.0)


@dataclass
class TrainConfig:
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step (data.batch_size is per step)
    log_every: int = 10
    image_every: int = 500  # sample grids to the tracker
    val_every_epochs: int = 5
    val_max_shift: int = 0  # also report the best PSNR over shifts within ±K px (the reference's val_ps_offset: 10)
    deterministic: bool = False
    channels_last: bool = False
    compile: bool = False  # each network through torch.compile (DDP backend)
    # torch.compile's mode: "max-autotune-no-cudagraphs" searches conv/matmul kernels; "reduce-overhead" and
    # "max-autotune" also replay CUDA graphs (GPU only; a CPU run compiles without them)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    # Fewer, larger G/F/D calls per step: the same maths, faster (BENCHMARKS.md). auto: on unless G, F or a D holds
    # BatchNorm (whose batch statistics would mix the images); true with BatchNorm there is refused.
    batched_calls: bool | Literal["auto"] = "auto"
    # "vega": also run the SR net where vega does, on G(x) in every translation step and a second time in a joint
    # step. The outputs are unused; what changes is the SR BatchNorm running statistics (the eval-mode SR net).
    # "needed": only the forwards the losses need.
    sr_forwards: Literal["needed", "vega"] = "needed"


@dataclass
class CheckpointConfig:
    every_steps: int = 1000
    keep: int = 3  # newest K complete checkpoints are kept
    resume: str = "auto"  # auto | none | path to a step-N directory


@dataclass
class DistConfig:
    # A rank that waits longer than this for its peers in any collective (a peer died, was cut off or stalled)
    # stops with one line and exit status PEER_FAILED, and the launcher restarts the job. It must exceed the
    # longest work one rank does while the others wait: validation and sample grids on rank 0, a checkpoint save.
    timeout_s: float = 600.0
    # A rank that completes no step for this long writes its threads' Python stacks to
    # <output_dir>/heartbeat/stacks-rank-<r>.txt, names the rank that is behind (heartbeat files there) and exits
    # 76 too. Below timeout_s, so that the names and stacks come before the collective gives up; 0 = off. Must
    # exceed the longest gap between two steps: validation on rank 0, a save, the first step's compilation.
    stall_timeout_s: float = 480.0


@dataclass
class WandbConfig:
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"  # auto: online with WANDB_API_KEY, else offline
    project: str = "cyclesr-dist"
    entity: str = ""
    name: str = ""


@dataclass
class Config:
    output_dir: str = "runs/cyclesr"
    seed: int = 0
    max_steps: int = 0  # 0 = (n_epoch + n_epoch_decay) * steps_per_epoch
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stages: StageConfig = field(default_factory=StageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    @property
    def total_steps(self) -> int:
        if self.max_steps > 0:
            return self.max_steps
        return (self.optim.n_epoch + self.optim.n_epoch_decay) * self.data.steps_per_epoch


def config_from_dict(raw: dict[str, Any], overrides: list[str] | None = None) -> Config:
    raw = deep_copy(raw)
    for text in overrides or []:
        key, value = parse_override(text)
        set_path(raw, key, value)
    return check_config(build(Config, raw))


def check_config(config: Config) -> Config:
    """Ranges and relations between keys, so a wrong value stops the job before anything starts."""
    d, t, c = config.data, config.train, config.checkpoint
    at_least = {
        "max_steps": (config.max_steps, 0),
        "data.scale": (d.scale, 1),
        "data.batch_size": (d.batch_size, 1),
        "data.num_workers": (d.num_workers, 0),
        "data.steps_per_epoch": (d.steps_per_epoch, 0),
        "data.val_max_images": (d.val_max_images, 0),
        "optim.n_epoch": (config.optim.n_epoch, 0),
        "optim.n_epoch_decay": (config.optim.n_epoch_decay, 0),
        "optim.grad_clip": (config.optim.grad_clip, 0),
        "loss.pool_size": (config.loss.pool_size, 0),
        "loss.lambda_spectral": (config.loss.lambda_spectral, 0),
        "loss.content_low_pass": (config.loss.content_low_pass, 0),
        "loss.cycle_sr_low_pass": (config.loss.cycle_sr_low_pass, 0),
        "loss.sr_real_cycle_lam": (config.loss.sr_real_cycle_lam, 0),
        "train.gradient_accumulation_steps": (t.gradient_accumulation_steps, 1),
        "train.log_every": (t.log_every, 1),
        "train.image_every": (t.image_every, 0),
        "train.val_every_epochs": (t.val_every_epochs, 1),
        "train.val_max_shift": (t.val_max_shift, 0),
        "checkpoint.every_steps": (c.every_steps, 0),
        "checkpoint.keep": (c.keep, 1),
    }
    for key, (value, low) in at_least.items():
        if value < low:
            raise ConfigError(f"{key}={value} must be at least {low}")
    if config.dist.stall_timeout_s < 0:
        raise ConfigError(f"dist.stall_timeout_s={config.dist.stall_timeout_s} must be 0 (off) or a number of seconds")
    if not config.dist.timeout_s > 0:
        raise ConfigError(f"dist.timeout_s={config.dist.timeout_s} must be a positive number of seconds")
    if d.hr_patch < d.scale or d.hr_patch % d.scale:
        raise ConfigError(f"data.hr_patch={d.hr_patch} must be a positive multiple of data.scale={d.scale}")
    if not d.value_range[0] < d.value_range[1]:
        raise ConfigError(f"data.value_range={list(d.value_range)} must be [low, high] with low < high, e.g. [0, 1]")
    if config.model.generator.args.get("jpeg_quality") and tuple(d.value_range) != (-1.0, 1.0):
        raise ConfigError(
            f"model.generator.args.jpeg_quality works on 8-bit values mapped to [-1, 1], but data.value_range is "
            f"{list(d.value_range)}: leave data.value_range at [-1, 1] or drop jpeg_quality"
        )
    final = config.loss.cycle_sr_lam_final
    if final is not None and not (final > 0 and config.loss.cycle_sr_lam > 0):
        raise ConfigError(
            f"loss.cycle_sr_lam_final={final} moves the weight geometrically from loss.cycle_sr_lam="
            f"{config.loss.cycle_sr_lam}: both must be positive (leave cycle_sr_lam_final unset for a constant weight)"
        )
    if config.stages.joint_epoch < config.stages.sr_pretrain_epoch:
        raise ConfigError(
            f"stages.joint_epoch={config.stages.joint_epoch} comes before "
            f"stages.sr_pretrain_epoch={config.stages.sr_pretrain_epoch}"
        )
    return config


def yaml_error_place(err: yaml.YAMLError) -> str:
    """ "at line L, column C (what the parser says)" for a YAML syntax error, 1-based as editors count."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"at line {mark.line + 1}, column {mark.column + 1} ({problem})" if mark is not None else f"({problem})"


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the reference defaults when `path` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML {yaml_error_place(err)}: fix the file") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        raw = loaded or {}
    return config_from_dict(raw, overrides)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain-types view (tuples as lists) for YAML dumps, trackers and checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(config))


def dump_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))

"""Typed configuration: YAML -> nested dataclasses, with `key.sub=value` overrides.

Every key is checked before anything starts: an unknown key names itself and the valid ones, a value of the
wrong type names the key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import UserError


class ConfigError(UserError, ValueError):
    """A config file or override is wrong; the message names the key."""


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
    pool_size: int = 50


@dataclass
class OptimConfig:
    cyc_lr: float = 2e-4  # generators and discriminators
    sr_lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    grad_clip: float = 50.0  # per network group; 0 disables
    n_epoch: int = 100  # epochs at the initial learning rate
    n_epoch_decay: int = 100  # epochs of linear decay to zero after that
    foreach: bool = True
    fused: bool = False  # torch's fused Adam kernel (CPU and CUDA); overrides foreach


@dataclass
class StageConfig:
    """Epoch boundaries (epochs count from 1, as in the reference)."""

    sr_pretrain_epoch: int = 6  # epochs before this train the translation networks only
    joint_epoch: int = 7  # epochs in [sr_pretrain_epoch, joint_epoch) pre-train SR on (clean LR, HR)


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
    steps_per_epoch: int = 100
    pin_memory: bool = False
    val_max_images: int = 0  # 0 = all
    # How the LR input of an HR crop is made: `bicubic` (CycleSR's clean domain X) or a `data.degrade` operator
    # name (supervised training on synthetic pairs, e.g. `realesrgan`: the blind recipe). See data/augment.py.
    hr_to_lr: str = "bicubic"
    hr_augment: Literal["dihedral", "flips", "none"] = "dihedral"  # random transform of HR crops
    lr_augment: Literal["dihedral", "flips", "none"] = "dihedral"  # ... and of real-LR crops


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
    compile: bool = False
    batched_calls: bool = False  # fewer, larger G/F/D calls per step (same maths; refused with BatchNorm)


@dataclass
class CheckpointConfig:
    every_steps: int = 1000
    keep: int = 3  # newest K complete checkpoints are kept
    resume: str = "auto"  # auto | none | path to a step-N directory


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
    wandb: WandbConfig = field(default_factory=WandbConfig)

    @property
    def total_steps(self) -> int:
        if self.max_steps > 0:
            return self.max_steps
        return (self.optim.n_epoch + self.optim.n_epoch_decay) * self.data.steps_per_epoch


# ---------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert `value` to the annotated type `tp`; raise ConfigError naming `key` otherwise."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} matches none of {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def _build(cls: type, raw: dict[str, Any], prefix: str = "", base: Any = None) -> Any:
    """A `cls` instance: `base` (or the class defaults) with `raw` applied on top."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown config key {key!r}; valid keys here: {', '.join(names)}")
    obj = dataclasses.replace(base) if base is not None else cls()
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            # Sub-sections start from their defaults, so a file may set only some sub-keys.
            setattr(obj, name, _build(type(current), value, key, base=current))
        else:
            setattr(obj, name, _coerce(value, hints[name], key))
    return obj


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, _, value = text.partition("=")
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    return key.strip(), yaml.safe_load(value) if value != "" else ""


def config_from_dict(raw: dict[str, Any], overrides: list[str] | None = None) -> Config:
    raw = _deep_copy(raw)
    for text in overrides or []:
        key, value = parse_override(text)
        _set_path(raw, key, value)
    return _build(Config, raw)


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the reference defaults when `path` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text())
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

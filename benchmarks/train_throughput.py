"""Training-step throughput of the CycleSR joint step against a bare loop and the reference's update structure.

    python benchmarks/train_throughput.py                  # tiny + demo + reference configs, CPU: about 10 min
    python benchmarks/train_throughput.py --reps 9         # more repetitions on a noisy machine
    python benchmarks/train_throughput.py --configs demo reference --variants bare ours compile --no-memory
                                                           # torch.compile (about 1-2 min to compile on 2 cores)
    python benchmarks/train_throughput.py --configs --no-memory --no-scaling --launch --launch-rounds 2
                                                           # the real trainer, 1 vs 2 processes (accelerate launch)
    python benchmarks/train_throughput.py --device cuda --peak-tflops 989   # GPU: bf16 autocast, MFU column

What is timed (one process, `--threads` intra-op threads, batches of random images in [-1, 1] as in
tests/conftest.py `random_batch`, already on the device), per config and per stage (translation, joint).
Configs: `tiny` (tests/conftest.py `tiny_config`: compute is negligible, so ours − bare is the absolute per-step
overhead), `demo` (configs/demo.yaml at its patch and batch), `reference` (configs/cyclesr.yaml; on CPU at LR
32×32, batch 2 unless --ref-lr/--ref-batch say otherwise; on CUDA at the config's LR 120, batch 64).

- `bare`: a hand-inlined loop doing exactly the maths of `CycleSR.optimize_parameters`: the same five networks,
  the same image pools, one backward for both discriminators, one backward for G (+ SR in the joint stage, the
  SR gradient into G scaled with `scale_grad`), per-group `clip_grad_norm_(foreach=True)` + Adam step + zero_grad.
  No `CycleSR`, no `OptimizerOps`, parameter lists hoisted out of the step. This is the yardstick for overhead.
- `ours`: `CycleSR.optimize_parameters` with a bare-loop `OptimizerOps` (what the trainer runs).
- `reference`: `reference.reference_optimize_parameters` (separate D backwards, SR weight gradients computed and
  discarded in the G step, SR forward+backward run again for the SR step).
- `trainer`: the trainer's per-step machinery without data loading or log/checkpoint I/O: the backend
  `engine.backend.prepare_backend` builds (Accelerator, `accelerator.prepare` of the five networks and four
  optimizers, `OptimizerOps(backward=accelerator.backward, unwrap=...)`), `set_learning_rates`, the batch
  `.to(device)`, `backend.autocast()`, the loss dict to floats every `log_every` steps and the preemption check,
  as in `engine/trainer.py`.
- fast-path switches, each applied to `ours` alone: `channels_last` (networks and batch), `forloop_adam`
  (Adam foreach=False), `fused_adam` (`optim.fused=true`: Adam fused=True), `amp`
  (bf16 autocast on when the base precision is fp32, off when it is bf16; on CPU a fifth of the steps, and not
  for the reference config unless --cpu-bf16-reference), `compile` (each network through `torch.compile`, as
  `train.compile=true` does; compile time is reported separately), `batched` (`train.batched_calls=true`: the same
  maths in 3 generator calls instead of 6 and 2 discriminator calls instead of 4), `batched_fused` (both).

Every variant starts from the same initial weights and pool seeds; after the first step their weights are
compared with the first variant's (the bare loop) to show they do the same maths. Repetitions are interleaved:
every repetition runs the same number of steps (`--steps`, or enough for about `--rep-seconds`) of every
variant, in an order rotated per repetition, so a load spike from other jobs hits all variants alike. Reported:
median step time over repetitions, its min-max, samples/s, and ratios as the median of the per-repetition
(paired) ratios, of wall time and of process CPU time. The 1-minute load average is printed with every table.

Peak memory: one fresh child process per (config, stage, variant): on CPU the peak RSS during the steps (VmHWM,
reset through /proc/self/clear_refs just before the first step) minus the RSS at that moment, with
MALLOC_MMAP_THRESHOLD_ set so that freed activations go back to the OS and do not hide in malloc's heap; on CUDA
`torch.cuda.max_memory_allocated` minus the allocation before the first step. Both therefore include gradients
and Adam state (allocated at the first step), activations and temporaries, not the weights.

FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one step run on the meta device (convolutions and
matmuls, forward and backward; norms, pads and the optimizer are not counted). With `--peak-tflops`, MFU =
(FLOPs of the optimised step, i.e. the useful work) / step time / peak; the same numerator for every variant.

The scaling section works out gradient all-reduce volumes and ring all-reduce times at the reference config
against the compute per step, from the parameter and FLOP counts measured here. `--launch` runs the real
trainer (train.py, demo config, data.num_workers=0) as 1 process × 2 threads, 2 processes × 1 thread and
2 processes × 2 threads under `accelerate launch` (gloo) and reads samples/s from its train_log.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import gc
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# libgomp (the CPU wheel's OpenMP) spin-waits at every parallel region's barrier by default. On a machine whose
# cores other jobs also use, a 2-thread step then takes 10-30x longer (a spinning thread holds a core while its
# partner waits to be scheduled). Passive waiting is set before torch loads libgomp unless the caller chose.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cyclesr_dist.config import Config, load_config  # noqa: E402
from cyclesr_dist.cyclesr import (  # noqa: E402
    CycleSR,
    ImagePool,
    Stage,
    build_networks,
    build_optimizers,
    network_groups,
    scale_grad,
)
from cyclesr_dist.engine.ops import OptimizerOps, set_learning_rates  # noqa: E402
from cyclesr_dist.reference import reference_optimize_parameters  # noqa: E402

NETS = ("gen_clean_to_real", "gen_real_to_clean", "disc_clean", "disc_real", "sr")
CONFIGS = {"tiny": None, "demo": ROOT / "configs" / "demo.yaml", "reference": ROOT / "configs" / "cyclesr.yaml"}
# tests/conftest.py `tiny_config`: compute is negligible, so the step time is mostly per-step Python/dispatch work
# and ours − bare there is the absolute overhead of CycleSR + OptimizerOps (+ the trainer's per-step work).
TINY_OVERRIDES = [
    "model.generator.args={ngf: 8, n_blocks: 2}",
    "model.discriminator.args={ndf: 8, n_layers: 2}",
    "model.sr.args={nf: 8, nb: 2}",
    "loss.pool_size=4",
]
STAGES = {"translation": Stage.TRANSLATION, "joint": Stage.JOINT}


# ---------------------------------------------------------------------------------------------------- variants


@dataclasses.dataclass(frozen=True)
class Variant:
    key: str
    structure: str  # bare | ours | batched | reference | trainer
    cached_unwrap: bool = False  # trainer only: the proposed unwrap cache in engine/backend.py
    channels_last: bool = False
    adam: str = "foreach"  # foreach | forloop | fused
    amp_toggle: bool = False  # flip the base precision (fp32 <-> bf16 autocast)
    compile: bool = False


VARIANTS = {
    v.key: v
    for v in (
        Variant("bare", "bare"),
        Variant("ours", "ours"),
        Variant("reference", "reference"),
        Variant("trainer", "trainer"),
        Variant("trainer_cached", "trainer", cached_unwrap=True),
        Variant("channels_last", "ours", channels_last=True),
        Variant("forloop_adam", "ours", adam="forloop"),
        Variant("fused_adam", "ours", adam="fused"),
        Variant("amp", "ours", amp_toggle=True),
        Variant("compile", "ours", compile=True),
        Variant("batched", "batched"),
        Variant("batched_fused", "batched", adam="fused"),
    )
}
# The tiny config measures overhead only; trainer_cached (a few ms per step) only shows there, so by default it
# runs for the tiny config alone.
TINY_VARIANTS = ["bare", "ours", "reference", "trainer", "trainer_cached", "batched"]
TINY_ONLY = {"trainer_cached"}
DEFAULT_VARIANTS = [
    "bare",
    "ours",
    "reference",
    "trainer",
    "channels_last",
    "forloop_adam",
    "fused_adam",
    "amp",
    "batched",
    "batched_fused",
]
MEMORY_VARIANTS = ["ours", "reference"]


def variant_label(v: Variant, base_bf16: bool) -> str:
    if v.key == "amp":
        return "ours + fp32" if base_bf16 else "ours + bf16 autocast"
    return {
        "bare": "bare loop (same maths)",
        "ours": "ours (CycleSR + OptimizerOps)",
        "reference": "reference update structure",
        "trainer": "trainer step (Accelerate)",
        "trainer_cached": "trainer step, unwrap cached",
        "channels_last": "ours + channels_last",
        "forloop_adam": "ours + for-loop Adam",
        "fused_adam": "ours + fused Adam",
        "compile": "ours + torch.compile",
        "batched": "ours + batched G/F/D calls",
        "batched_fused": "ours + batched calls + fused Adam",
    }[v.key]


@dataclasses.dataclass
class Setup:
    """Everything a variant needs: the config, shapes, device, initial weights and precision."""

    name: str
    config: Config
    lr_size: int
    batch_size: int
    device: torch.device
    base_bf16: bool
    init_state: dict[str, dict[str, torch.Tensor]]

    def batch(self, channels_last: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
        b = random_batch(self.batch_size, self.lr_size, self.config.data.scale, seed)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return {k: v.to(self.device).contiguous(memory_format=fmt) for k, v in b.items()}


def random_batch(batch: int = 2, lr: int = 16, scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Same as tests/conftest.py `random_batch` (not imported: conftest imports pytest)."""
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(batch, 3, lr * scale, lr * scale, generator=g) * 2 - 1
    return {
        "hr": hr,
        "clean_lr": F.avg_pool2d(hr, scale),
        "real_lr": torch.rand(batch, 3, lr, lr, generator=g) * 2 - 1,
    }


def make_setup(name: str, args: argparse.Namespace, device: torch.device) -> Setup:
    config = load_config(CONFIGS[name], None if CONFIGS[name] else TINY_OVERRIDES)
    on_cpu = device.type == "cpu"
    if name == "tiny":
        lr_size, batch_size = 16, 2  # random_batch's defaults
    elif name == "demo":
        lr_size = args.demo_lr or config.data.hr_patch // config.data.scale
        batch_size = args.demo_batch or config.data.batch_size
    else:  # the reference networks are big: small patch and batch on CPU unless asked otherwise
        lr_size = args.ref_lr or (32 if on_cpu else config.data.hr_patch // config.data.scale)
        batch_size = args.ref_batch or (2 if on_cpu else config.data.batch_size)
    torch.manual_seed(0)
    nets = build_networks(config)
    init_state = {n: {k: v.clone() for k, v in nets[n].state_dict().items()} for n in NETS}
    return Setup(name, config, lr_size, batch_size, device, args.precision == "bf16", init_state)


def fresh_networks(setup: Setup, channels_last: bool) -> torch.nn.ModuleDict:
    nets = build_networks(setup.config)
    for n in NETS:
        nets[n].load_state_dict(setup.init_state[n])
    nets = nets.to(setup.device)
    if channels_last:
        nets = nets.to(memory_format=torch.channels_last)
    return nets


def make_optimizers(nets: torch.nn.ModuleDict, config: Config, adam: str) -> dict[str, torch.optim.Optimizer]:
    """`build_optimizers` with `optim.foreach` / `optim.fused` set for the variant."""
    optim = dataclasses.replace(config.optim, foreach=adam == "foreach", fused=adam == "fused")
    return build_optimizers(nets, optim)


def autocast_ctx(device: torch.device, bf16: bool) -> Callable[[], contextlib.AbstractContextManager]:
    if bf16:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


class Built:
    """A variant ready to step: `step()` runs one training step; `nets` are the raw (unwrapped) networks."""

    def __init__(self, step: Callable[[], None], nets: torch.nn.ModuleDict, cleanup: Callable[[], None] | None = None):
        self.step = step
        self.nets = nets
        self.cleanup = cleanup or (lambda: None)


def build_variant(v: Variant, setup: Setup, stage: Stage) -> Built:
    config, device = setup.config, setup.device
    bf16 = setup.base_bf16 != v.amp_toggle
    amp = autocast_ctx(device, bf16)
    nets = fresh_networks(setup, v.channels_last)
    # the trainer's backend builds its own optimizers from the config (foreach Adam)
    optimizers = make_optimizers(nets, config, v.adam) if v.structure != "trainer" else {}
    batch = setup.batch(v.channels_last)
    clip = config.optim.grad_clip

    if v.structure == "bare":
        return Built(make_bare_step(nets, optimizers, config, batch, stage, amp), nets)

    if v.structure == "reference":
        model = CycleSR(nets, config.loss, pool_seed=0)

        def ref_step() -> None:
            with amp():
                reference_optimize_parameters(model, batch, stage, optimizers, clip)

        return Built(ref_step, nets)

    if v.structure == "batched":
        model = CycleSR(nets, config.loss, pool_seed=0, batched_calls=True)
        ops = OptimizerOps(optimizers, clip)

        def batched_step() -> None:
            with amp():
                model.optimize_parameters(batch, stage, ops)

        return Built(batched_step, nets)

    if v.structure == "ours":
        if v.compile:
            # Dynamo's cache is per code object, shared by every instance of a network class: without a reset, a
            # second input shape (another config) triggers an automatic-dynamic recompile, which Inductor fails on
            # ("cannot determine truth value of Relational"). The trainer sees one shape per run.
            torch._dynamo.reset()
        called = torch.nn.ModuleDict({n: torch.compile(nets[n]) for n in NETS}) if v.compile else nets
        model = CycleSR(called, config.loss, pool_seed=0)
        ops = OptimizerOps(optimizers, clip)

        def ours_step() -> None:
            with amp():
                model.optimize_parameters(batch, stage, ops)

        return Built(ours_step, nets)

    # trainer: what `engine.trainer.train` builds (`prepare_backend`: Accelerate, DDP when several processes) and
    # its per-step work, minus data loading and log/checkpoint I/O.
    from cyclesr_dist.engine.backend import prepare_backend
    from cyclesr_dist.engine.preemption import PreemptionFlag

    cfg = dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, mixed_precision="bf16" if bf16 else "no"),
        wandb=dataclasses.replace(config.wandb, mode="disabled"),
    )
    backend = prepare_backend(nets, cfg)
    if v.cached_unwrap:
        # Proposed in engine/backend.py: `accelerator.unwrap_model` calls accelerate's `is_deepspeed_available()`,
        # an importlib.metadata lookup (~2 ms on this machine), and `OptimizerOps.frozen` calls it twice a step.
        raw = {id(w): backend.unwrap(w) for w in backend.nets.values()}
        slow_unwrap = backend.unwrap
        backend.ops._unwrap = lambda net: raw.get(id(net)) or slow_unwrap(net)
    model = CycleSR(backend.nets, config.loss, pool_seed=0)
    groups = network_groups(config.optim)
    preemption = PreemptionFlag()
    epoch = {Stage.TRANSLATION: 1, Stage.JOINT: config.stages.joint_epoch}[stage]
    takes_list = "list" in str(inspect.signature(CycleSR.optimize_parameters).parameters["batch"].annotation)
    memory_format = torch.channels_last if v.channels_last else torch.contiguous_format
    counter = [0]

    def trainer_step() -> None:
        lrs = {g.name: g.lr(epoch, config.stages, config.optim) for g in groups}
        set_learning_rates(backend.optimizers, lrs)
        b = {k: t.to(device, non_blocking=True).contiguous(memory_format=memory_format) for k, t in batch.items()}
        backend.ops.grad_norms.clear()
        with backend.autocast():
            losses = model.optimize_parameters([b] if takes_list else b, stage, backend.ops)
        counter[0] += 1
        if counter[0] % config.train.log_every == 0:
            values = {k: float(t) for k, t in losses.items()}
            values |= {f"grad_norm/{k}": float(t) for k, t in backend.ops.grad_norms.items()}
        preemption.should_stop(device)

    unwrapped = torch.nn.ModuleDict({n: backend.unwrap(backend.nets[n]) for n in NETS})
    return Built(trainer_step, unwrapped, preemption.restore)


def make_bare_step(
    nets: torch.nn.ModuleDict,
    optimizers: dict[str, torch.optim.Optimizer],
    config: Config,
    batch: dict[str, torch.Tensor],
    stage: Stage,
    amp: Callable[[], contextlib.AbstractContextManager],
) -> Callable[[], None]:
    """The joint step's maths, inlined: no CycleSR, no OptimizerOps, everything loop-invariant hoisted."""
    lam, clip = config.loss, config.optim.grad_clip
    if lam.sr_lam <= 0:
        raise ValueError("the bare loop covers sr_lam > 0 (the configs benchmarked here)")
    gen_xy, gen_yx = nets["gen_clean_to_real"], nets["gen_real_to_clean"]
    d_x, d_y, sr = nets["disc_clean"], nets["disc_real"], nets["sr"]
    pool_x, pool_y = ImagePool(lam.pool_size, seed=0), ImagePool(lam.pool_size, seed=1)  # CycleSR's, pool_seed=0
    d_params = [*d_x.parameters(), *d_y.parameters()]
    params = {name: [p for g in opt.param_groups for p in g["params"]] for name, opt in optimizers.items()}
    w_cycle, w_idt = lam.lambda_cycle, lam.lambda_cycle * lam.lambda_identity
    joint = stage is Stage.JOINT
    x, y, hr = batch["clean_lr"], batch["real_lr"], batch["hr"]

    def update(name: str) -> None:
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params[name], clip, foreach=True)
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)

    def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
        return F.mse_loss(pred, torch.ones_like(pred) if real else torch.zeros_like(pred))

    def step() -> None:
        with amp():
            fake_y = gen_xy(x)
            rec_x = gen_yx(fake_y)
            fake_x = gen_yx(y)
            rec_y = gen_xy(fake_x)
            loss_d = 0.5 * (lsgan(d_x(x), True) + lsgan(d_x(pool_x.query(fake_x)), False)) + 0.5 * (
                lsgan(d_y(y), True) + lsgan(d_y(pool_y.query(fake_y)), False)
            )
            loss_d.backward()
            update("D_X")
            update("D_Y")
            for p in d_params:
                p.requires_grad_(False)
            loss = (
                lsgan(d_y(fake_y), True)
                + lsgan(d_x(fake_x), True)
                + w_cycle * (F.l1_loss(rec_x, x) + F.l1_loss(rec_y, y))
                + w_idt * (F.l1_loss(gen_xy(y), y) + F.l1_loss(gen_yx(x), x))
            )
            if joint:
                loss = loss + lam.sr_lam * F.mse_loss(sr(scale_grad(fake_y, lam.cycle_sr_lam / lam.sr_lam)), hr)
            loss.backward()
            for p in d_params:
                p.requires_grad_(True)
            update("G")
            if joint:
                update("SR")

    return step


# ---------------------------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def weight_diff(a: torch.nn.ModuleDict, b: torch.nn.ModuleDict, init: dict[str, dict]) -> tuple[float, float]:
    """max |w_a − w_b| and ‖w_a − w_b‖ / ‖w_a − w_init‖ (the difference relative to the update itself)."""
    max_diff, diff_sq, update_sq = 0.0, 0.0, 0.0
    for n in NETS:
        for (name, p), q in zip(a[n].named_parameters(), b[n].parameters(), strict=True):
            pa, pb = p.detach().float().cpu(), q.detach().float().cpu()
            d = pa - pb
            max_diff = max(max_diff, d.abs().max().item())
            diff_sq += d.double().square().sum().item()
            update_sq += (pa - init[n][name].float()).double().square().sum().item()
    return max_diff, (diff_sq / update_sq) ** 0.5 if update_sq else 0.0


def time_stage(setup: Setup, stage: Stage, keys: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Build every variant, check they compute the same first update, then interleaved timed repetitions."""
    device = setup.device
    built: dict[str, Built] = {}
    first_steps: dict[str, list[float]] = {}
    same_maths: dict[str, tuple[float, float]] = {}
    reference_weights: torch.nn.ModuleDict | None = None
    for key in keys:
        built[key] = build_variant(VARIANTS[key], setup, stage)
        times = []
        warmup = 1 if steps_for(key, 5, device, args) == 1 else max(1, args.warmup)  # bf16 on CPU: one is plenty
        for i in range(warmup + (args.compile_warmup if key == "compile" else 0)):
            sync(device)
            t0 = time.perf_counter()
            built[key].step()
            sync(device)
            times.append(time.perf_counter() - t0)
            if i == 0:  # same maths: weights after one step from the same start, against the first variant's
                if reference_weights is None:
                    reference_weights = copy.deepcopy(built[key].nets)
                same_maths[key] = weight_diff(reference_weights, built[key].nets, setup.init_state)
        first_steps[key] = times
    del reference_weights
    if args.steps:
        steps = args.steps
    else:  # enough steps for about --rep-seconds per variant and repetition
        typical = statistics.median(first_steps[k][-1] for k in keys if k not in ("amp", "compile"))
        steps = max(1, min(50, round(args.rep_seconds / typical)))

    per_rep: dict[str, list[float]] = {k: [] for k in keys}
    cpu_rep: dict[str, list[float]] = {k: [] for k in keys}
    load_before = os.getloadavg()[0]
    for rep in range(args.reps):
        order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        for key in order:
            n = steps_for(key, steps, device, args)
            gc.collect()
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                built[key].step()
            sync(device)
            per_rep[key].append((time.perf_counter() - t0) / n)
            cpu_rep[key].append((time.process_time() - c0) / n)
    load_after = os.getloadavg()[0]
    for b in built.values():
        b.cleanup()
    del built
    gc.collect()
    return {
        "per_rep": per_rep,
        "cpu_rep": cpu_rep,
        "first_steps": first_steps,
        "same_maths": same_maths,
        "load": (load_before, load_after),
        "steps": steps,
    }


def steps_for(key: str, steps: int, device: torch.device, args: argparse.Namespace) -> int:
    """bf16 autocast on a CPU without bf16 units is many times slower: a fifth of the steps (at least one)."""
    return max(1, steps // 5) if key == "amp" and device.type == "cpu" and args.precision == "fp32" else steps


def paired_diff_ms(a: list[float], b: list[float]) -> tuple[float, float, float]:
    d = [(x - y) * 1e3 for x, y in zip(a, b, strict=True)]
    return statistics.median(d), min(d), max(d)


def paired_ratio(num: list[float], den: list[float]) -> tuple[float, float, float]:
    r = [a / b for a, b in zip(num, den, strict=True)]
    return statistics.median(r), min(r), max(r)


# ---------------------------------------------------------------------------------------------------- FLOPs


class _NoOptimizer:
    """Stands in for Adam when counting FLOPs on the meta device (the optimizer does no conv/matmul)."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params
        self.param_groups = [{"params": params}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        pass


def count_step_flops(config: Config, lr_size: int, batch_size: int, stage: Stage, structure: str) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        nets = build_networks(config)
    opts = {
        g.name: _NoOptimizer([p for n in g.networks for p in nets[n].parameters()])
        for g in network_groups(config.optim)
    }
    s = config.data.scale
    batch = {
        "hr": torch.empty(batch_size, 3, lr_size * s, lr_size * s, device="meta"),
        "clean_lr": torch.empty(batch_size, 3, lr_size, lr_size, device="meta"),
        "real_lr": torch.empty(batch_size, 3, lr_size, lr_size, device="meta"),
    }
    model = CycleSR(nets, config.loss, pool_seed=0)
    with FlopCounterMode(display=False) as counter:
        if structure == "reference":
            reference_optimize_parameters(model, batch, stage, opts, 0.0)
        else:
            model.optimize_parameters(batch, stage, OptimizerOps(opts, 0.0))
    return counter.get_total_flops()


def count_forward_flops(config: Config, lr_size: int) -> dict[str, int]:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        nets = build_networks(config)
    out = {}
    for n in NETS:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            nets[n](torch.empty(1, 3, lr_size, lr_size, device="meta"))
        out[n] = counter.get_total_flops()
    return out


# ---------------------------------------------------------------------------------------------------- memory


def proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset VmHWM (the peak RSS) to the current RSS (Linux >= 4.0), so it measures only what follows."""
    Path("/proc/self/clear_refs").write_text("5")


def child_memory(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    """Runs in a fresh process: build one variant, step it, report peak memory above the pre-step level."""
    device = torch.device(spec["device"])
    setup = make_setup(spec["config"], args, device)
    built = build_variant(VARIANTS[spec["variant"]], setup, STAGES[spec["stage"]])
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        base = proc_status_bytes("VmRSS")
    for _ in range(spec["steps"]):
        built.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = proc_status_bytes("VmHWM")
    built.cleanup()
    return {"peak_delta_mib": (peak - base) / 2**20, "base_mib": base / 2**20}


def measure_memory(config: str, stage: str, variant: str, args: argparse.Namespace, device: torch.device) -> float:
    spec = {"config": config, "stage": stage, "variant": variant, "device": str(device), "steps": args.memory_steps}
    cmd = [sys.executable, __file__, "--child-memory", json.dumps(spec), "--precision", args.precision]
    for flag in ("demo_lr", "demo_batch", "ref_lr", "ref_batch"):
        if getattr(args, flag):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        print(f"  memory child failed for {config}/{stage}/{variant}: {out.stderr.strip()[-400:]}", file=sys.stderr)
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_delta_mib"]


# ---------------------------------------------------------------------------------------------------- launch


def launch_one(args, data: Path, out: Path, stage: str, nproc: int, threads: int, port: int) -> dict[str, Any] | None:
    """One run of the real trainer (train.py) on the demo config; samples/s from its train_log.jsonl."""
    if nproc > 1:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(nproc),
               "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no",
               "--dynamo_backend", "no", "train.py"]  # fmt: skip
    else:
        cmd = [sys.executable, "train.py"]
    stage_overrides = (
        ["stages.sr_pretrain_epoch=1000", "stages.joint_epoch=1000"]
        if stage == "translation"
        else ["stages.sr_pretrain_epoch=1", "stages.joint_epoch=1"]
    )
    cmd += ["--config", "configs/demo.yaml", f"data.root={data}", f"output_dir={out}",
            f"max_steps={args.launch_steps}", "data.steps_per_epoch=100000", "data.num_workers=0",
            f"train.log_every={args.launch_log_every}", "train.image_every=0", "train.val_every_epochs=100000",
            "checkpoint.every_steps=100000", "checkpoint.resume=none", "wandb.mode=disabled",
            *stage_overrides]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"  launch {stage} {nproc}p failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
        return None
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in log if "samples_per_s" in r][1:]  # the first interval is warm-up
    print(f"  launch {stage} {nproc}p×{threads}t: {statistics.median(rates):.2f} samples/s", flush=True)
    return {"stage": stage, "processes": nproc, "threads": threads, "rates": rates, "wall_s": wall, "load": load}


def launch_scaling(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The real trainer under `accelerate launch` (gloo) with 1 and 2 CPU processes, in alternating rounds."""
    from cyclesr_dist.data.demo import build_demo_data

    results: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data_root) if args.data_root else Path(tmp) / "demo"
        if not args.data_root:
            build_demo_data(data)
        port = 29600 + os.getpid() % 300
        runs = [(stage, n, t) for stage in args.stages for n, t in ((1, 2), (2, 1), (2, 2))]
        for round_ in range(args.launch_rounds):
            for i, (stage, nproc, threads) in enumerate(runs if round_ % 2 == 0 else runs[::-1]):
                port += 1
                out = Path(tmp) / f"run_{round_}_{i}"
                r = launch_one(args, data, out, stage, nproc, threads, port)
                if r is not None:
                    results.setdefault((stage, nproc, threads), []).append(r)
    rows = []
    for (stage, nproc, threads), rs in results.items():
        rates = [x for r in rs for x in r["rates"]]
        rows.append(
            {
                "stage": stage,
                "processes": nproc,
                "threads": threads,
                "samples_per_s": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
                "wall_s": statistics.median(r["wall_s"] for r in rs),
                "load": statistics.median(r["load"] for r in rs),
                "runs": len(rs),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------- report


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:.0f}" if s >= 0.1 else f"{s * 1e3:.1f}"


def print_stage_table(setup: Setup, stage: str, res: dict[str, Any], flops: dict[str, int], args) -> list[dict]:
    keys = list(res["per_rep"])
    wall, cpu = res["per_rep"], res["cpu_rep"]
    lb, la = res["load"]
    print(
        f"\n#### {setup.name}: {stage} stage (load avg 1-min {lb:.2f} → {la:.2f}; {len(wall[keys[0]])} repetitions "
        f"× {res['steps']} steps)\n"
    )
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    nan3 = (float("nan"),) * 3
    print(
        "| variant | step ms (median) | min–max ms | samples/s | wall ÷ bare | CPU-time ÷ bare | CPU ms − bare "
        "| wall ÷ ours " + ("| GFLOP/s | MFU |" if peak else "| GFLOP/s |")
    )
    print("|" + "---|" * (10 if peak else 9))
    rows = []
    useful = flops["ours"]  # the optimised step's FLOPs: useful work, the same numerator for every variant
    for key in keys:
        t = wall[key]
        med = statistics.median(t)
        row = {
            "variant": key,
            "label": variant_label(VARIANTS[key], setup.base_bf16),
            "median_s": med,
            "min_s": min(t),
            "max_s": max(t),
            "cpu_median_s": statistics.median(cpu[key]),
            "samples_per_s": setup.batch_size / med,
            "wall_over_bare": paired_ratio(t, wall["bare"]) if "bare" in wall else nan3,
            "cpu_over_bare": paired_ratio(cpu[key], cpu["bare"]) if "bare" in cpu else nan3,
            "cpu_minus_bare_ms": paired_diff_ms(cpu[key], cpu["bare"]) if "bare" in cpu else nan3,
            "wall_over_ours": paired_ratio(t, wall["ours"]) if "ours" in wall else nan3,
            "cpu_over_ours": paired_ratio(cpu[key], cpu["ours"]) if "ours" in cpu else nan3,
            "gflops": useful / med / 1e9,
            "same_maths": res["same_maths"][key],
            "wall_reps": t,
        }
        rows.append(row)
        r3 = lambda r: f"{r[0]:.3f} ({r[1]:.2f}–{r[2]:.2f})"  # noqa: E731
        d3 = lambda r: f"{r[0]:+.1f} ({r[1]:+.1f}…{r[2]:+.1f})"  # noqa: E731
        line = (
            f"| {variant_label(VARIANTS[key], setup.base_bf16)} | {fmt_ms(med)} | {fmt_ms(min(t))}–{fmt_ms(max(t))} "
            f"| {row['samples_per_s']:.2f} | {r3(row['wall_over_bare'])} | {r3(row['cpu_over_bare'])} "
            f"| {d3(row['cpu_minus_bare_ms'])} "
            f"| {r3(row['wall_over_ours'])} | {row['gflops']:.1f} |"
        )
        if peak:
            line += f" {useful / med / peak:.1%} |"
        print(line)
    print(
        "\nRatios: median over repetitions of the per-repetition ratio (min–max in brackets); CPU time = process "
        "time of all threads, less sensitive to other jobs than wall time."
    )
    diffs = ", ".join(
        f"{k} {res['same_maths'][k][0]:.1e} / {res['same_maths'][k][1]:.1e}" for k in keys if k != keys[0]
    )
    print(
        f"Same maths, weights after one step from the same start vs {keys[0]} (max |Δw| / ‖Δw‖ ÷ ‖update‖): {diffs}. "
        "A max |Δw| of ≈ 2×lr comes from conv biases feeding an InstanceNorm: their true gradient is 0, and Adam's "
        "first step turns rounding noise of either sign into ±lr."
    )
    if "compile" in res["first_steps"]:
        fs = res["first_steps"]["compile"]
        steady = statistics.median(wall["compile"])
        print(
            f"torch.compile: warm-up step times {', '.join(f'{x:.2f}' for x in fs)} s; "
            f"compile time ≈ {sum(fs) - len(fs) * steady:.1f} s (warm-up total minus steady-state steps)"
        )
    return rows


def print_targets(all_rows: dict[str, dict[str, list[dict]]]) -> list[str]:
    needed = {"ours", "bare", "reference"}
    if not any(needed <= {r["variant"] for r in stages.get("joint", [])} for stages in all_rows.values()):
        return []
    print("\n### Targets (joint stage)\n")
    print("| config | ours ÷ bare, wall (≤ 1.05) | ours ÷ bare, CPU time | reference ÷ ours, wall (≥ 1.3) "
          "| reference ÷ ours, CPU time |")  # fmt: skip
    print("|---|---|---|---|---|")
    verdicts: list[str] = []
    fast: list[str] = []
    for name, stages in all_rows.items():
        rows = {r["variant"]: r for r in stages.get("joint", [])}
        if not {"ours", "bare", "reference"} <= set(rows):
            continue
        ob, obc = rows["ours"]["wall_over_bare"], rows["ours"]["cpu_over_bare"]
        ro = rows["reference"]["wall_over_ours"]
        roc = rows["reference"]["cpu_over_ours"]
        ok1 = "met" if ob[0] <= 1.05 else "NOT met"
        ok2 = "met" if ro[0] >= 1.3 else "NOT met"
        print(
            f"| {name} | {ob[0]:.3f} ({ob[1]:.2f}–{ob[2]:.2f}): {ok1} | {obc[0]:.3f} ({obc[1]:.2f}–{obc[2]:.2f}) "
            f"| {ro[0]:.2f} ({ro[1]:.2f}–{ro[2]:.2f}): {ok2} | {roc[0]:.2f} ({roc[1]:.2f}–{roc[2]:.2f}) |"
        )
        verdicts.append(f"{name}: overhead {ok1} ({ob[0]:.3f}), speed-up {ok2} ({ro[0]:.2f})")
        for key in ("channels_last", "forloop_adam", "fused_adam", "amp", "compile", "batched", "batched_fused"):
            if key in rows:  # reference ÷ (ours + switch), paired per repetition
                r = paired_ratio(rows["reference"]["wall_reps"], rows[key]["wall_reps"])
                fast.append(f"| {name} | {rows[key]['label']} | {r[0]:.2f} ({r[1]:.2f}–{r[2]:.2f}) |")
    if fast:
        print("\n| config | our step with | reference ÷ this, wall (≥ 1.3) |\n|---|---|---|")
        print("\n".join(fast))
    return verdicts


def scaling_section(args: argparse.Namespace, cpu_rows: dict[str, dict[str, list[dict]]]) -> dict[str, Any]:
    """Paper numbers for data parallelism at the reference config, from counted parameters and FLOPs."""
    config = load_config(CONFIGS["reference"])
    lr = config.data.hr_patch // config.data.scale
    gbatch = config.data.batch_size
    with torch.device("meta"):
        nets = build_networks(config)
    counts = {n: sum(p.numel() for p in nets[n].parameters()) for n in NETS}
    fwd = count_forward_flops(config, lr)
    print(f"\n### Scaling at the reference config (LR {lr}×{lr}, global batch {gbatch})\n")
    print("| network | parameters | grad MB fp32 | grad MB bf16 | forward GFLOP/sample |")
    print("|---|---|---|---|---|")
    for n in NETS:
        print(f"| {n} | {counts[n]:,} | {counts[n] * 4 / 1e6:.1f} | {counts[n] * 2 / 1e6:.1f} | {fwd[n] / 1e9:.2f} |")

    # Gradients all-reduced per step: DDP reduces a network's gradients when its forward ran with grad enabled
    # through the DDP wrapper and its parameters got gradients in the backward.
    reduced = {
        "translation (ours)": ["disc_clean", "disc_real", "gen_clean_to_real", "gen_real_to_clean"],
        "sr_pretrain": ["sr"],
        "joint (ours)": ["disc_clean", "disc_real", "gen_clean_to_real", "gen_real_to_clean", "sr"],
        "joint (reference structure)": [
            "disc_clean",
            "disc_real",
            "gen_clean_to_real",
            "gen_real_to_clean",
            "sr",
            "sr",
        ],
    }
    per_sample = {
        "translation (ours)": count_step_flops(config, lr, 1, Stage.TRANSLATION, "ours"),
        "sr_pretrain": 3 * fwd["sr"],  # SR forward + backward (weights and activations) ≈ 3 forwards
        "joint (ours)": count_step_flops(config, lr, 1, Stage.JOINT, "ours"),
        "joint (reference structure)": count_step_flops(config, lr, 1, Stage.JOINT, "reference"),
    }
    bws = {"12.5 GB/s (100 Gb/s)": 12.5e9, "25 GB/s (= 200 Gb/s)": 25e9, "100 GB/s": 100e9}
    print(
        "\nAll-reduce per step (ring: each rank sends and receives 2(N−1)/N × the bytes; N = 8 shown; "
        "no overlap with the backward assumed, i.e. an upper bound on exposed time):\n"
    )
    head = "| stage | params reduced | MB fp32 | MB bf16 | " + " | ".join(f"ring ms fp32 @ {b}" for b in bws)
    print(head + " | TFLOP/step (global batch) |")
    print("|---|---|---|---|" + "---|" * len(bws) + "---|")
    out: dict[str, Any] = {"params": counts, "forward_flops_per_sample": fwd, "stages": {}}
    n_ranks = 8
    for stage, names in reduced.items():
        p = sum(counts[n] for n in names)
        ring = {b: 2 * (n_ranks - 1) / n_ranks * p * 4 / bw for b, bw in bws.items()}
        print(
            f"| {stage} | {p:,} | {p * 4 / 1e6:.1f} | {p * 2 / 1e6:.1f} | "
            + " | ".join(f"{t * 1e3:.1f}" for t in ring.values())
            + f" | {per_sample[stage] * gbatch / 1e12:.1f} |"
        )
        out["stages"][stage] = {"params": p, "ring_s_fp32": ring, "flops_per_sample": per_sample[stage]}

    peak = args.assume_tflops * 1e12 * args.assume_mfu
    print(
        f"\nCompute per step per rank at global batch {gbatch} on N data-parallel ranks, assuming "
        f"{args.assume_tflops:.0f} TFLOP/s peak × {args.assume_mfu:.0%} MFU = {peak / 1e12:.0f} TFLOP/s achieved, "
        "against the fp32 ring all-reduce at 25 GB/s (bf16 gradients halve it):\n"
    )
    print("| stage | N | batch/rank | compute ms | all-reduce ms fp32 | comm ÷ compute |")
    print("|---|---|---|---|---|---|")
    for stage in ("translation (ours)", "joint (ours)"):
        p = out["stages"][stage]["params"]
        for n in (1, 2, 8, 16, 32, 64):
            compute = per_sample[stage] * gbatch / n / peak
            comm = 2 * (n - 1) / n * p * 4 / 25e9 if n > 1 else 0.0
            print(f"| {stage} | {n} | {gbatch / n:g} | {compute * 1e3:.1f} | {comm * 1e3:.1f} | {comm / compute:.2f} |")
    # CPU: the measured GFLOP/s at the small reference shapes, extrapolated to the real patch and batch.
    rows = {r["variant"]: r for r in cpu_rows.get("reference", {}).get("joint", [])}
    if "ours" in rows:
        gflops = rows["ours"]["gflops"]
        t = per_sample["joint (ours)"] * gbatch / (gflops * 1e9)
        print(
            f"\nThis machine (ours, joint, reference networks) reached {gflops:.1f} GFLOP/s, i.e. ≈ {t:.0f} s per "
            f"reference-config step (LR {lr}², batch {gbatch}) on one process: an all-reduce of "
            f"{out['stages']['joint (ours)']['params'] * 4 / 1e6:.0f} MB is negligible next to it."
        )
    return out


# ---------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="*", default=["tiny", "demo", "reference"], choices=list(CONFIGS))
    p.add_argument("--stages", nargs="+", default=["translation", "joint"], choices=list(STAGES))
    p.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS), help="first one is the baseline")
    p.add_argument("--compile", action="store_true", help="add the torch.compile variant")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions per variant")
    p.add_argument("--steps", type=int, default=0, help="steps per repetition (0: from the warm-up step time)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant before the repetitions")
    p.add_argument("--compile-warmup", type=int, default=2, help="extra warm-up steps for the compiled variant")
    p.add_argument("--demo-lr", type=int, default=0, help="LR patch for the demo config (default hr_patch/scale)")
    p.add_argument("--demo-batch", type=int, default=0, help="batch for the demo config (default: its batch)")
    p.add_argument("--ref-lr", type=int, default=0, help="LR patch for the reference config (CPU default 32)")
    p.add_argument("--ref-batch", type=int, default=0, help="batch for the reference config (CPU default 2)")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory child processes")
    p.add_argument("--memory-steps", type=int, default=2)
    p.add_argument("--memory-variants", nargs="+", default=MEMORY_VARIANTS, choices=list(VARIANTS))
    p.add_argument("--memory-configs", nargs="*", default=["reference"], choices=list(CONFIGS))
    p.add_argument(
        "--cpu-bf16-reference",
        action="store_true",
        help="also time bf16 autocast for the reference config on CPU (20-60 s a step on a CPU without bf16 units)",
    )
    p.add_argument("--rep-seconds", type=float, default=1.0, help="with --steps 0: seconds per variant and rep")
    p.add_argument("--no-scaling", dest="scaling", action="store_false", help="skip the all-reduce/FLOP section")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="peak FLOP/s of the device (for MFU)")
    p.add_argument("--assume-tflops", type=float, default=989.0, help="GPU peak for the scaling estimate (H100 bf16)")
    p.add_argument("--assume-mfu", type=float, default=0.35, help="MFU assumed for the scaling estimate")
    p.add_argument("--launch", action="store_true", help="also time the trainer under accelerate launch, 1 vs 2 procs")
    p.add_argument("--launch-steps", type=int, default=40)
    p.add_argument("--launch-rounds", type=int, default=1, help="rounds of the 6 runs, order reversed every round")
    p.add_argument("--launch-log-every", type=int, default=5)
    p.add_argument("--data-root", default="", help="demo data for --launch (default: built in a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write all results here")
    p.add_argument("--child-memory", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.precision is None:
        args.precision = "bf16" if args.device.startswith("cuda") else "fp32"
    args.default_variants = args.variants is None
    if args.variants is None:
        args.variants = list(DEFAULT_VARIANTS) + ["trainer_cached"]
        if args.device.startswith("cuda"):
            args.variants.remove("forloop_adam")  # keep it if asked; fused is the CUDA fast path
    if args.compile and "compile" not in args.variants:
        args.variants.append("compile")
    if "compile" in args.variants and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # A fresh on-disk Inductor cache, so the first compile is a cold one (later stages reuse its kernels).
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cache-")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child_memory:
        print(json.dumps(child_memory(json.loads(args.child_memory), args)))
        return 0
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} threads, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, base precision {args.precision}"
        + f", reps {args.reps} × {args.steps or 'auto'} steps, warm-up {args.warmup}"
        + f", load avg {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "configs": {}}
    all_rows: dict[str, dict[str, list[dict]]] = {}
    for name in args.configs:
        setup = make_setup(name, args, device)
        s = setup.config.data.scale
        params = sum(t.numel() for st in setup.init_state.values() for t in st.values())
        source = CONFIGS[name].relative_to(ROOT) if CONFIGS[name] else "tests/conftest.py tiny_config"
        print(
            f"\n### {name} config ({source}): LR {setup.lr_size}×{setup.lr_size} "
            f"(HR {setup.lr_size * s}×{setup.lr_size * s}), batch {setup.batch_size}, {params:,} parameters",
            flush=True,
        )
        all_rows[name] = {}
        results["configs"][name] = {"lr": setup.lr_size, "batch": setup.batch_size, "stages": {}}
        for stage in args.stages:
            st = STAGES[stage]
            flops = {
                "ours": count_step_flops(setup.config, setup.lr_size, setup.batch_size, st, "ours"),
                "reference": count_step_flops(setup.config, setup.lr_size, setup.batch_size, st, "reference"),
            }
            keys = [
                k
                for k in args.variants
                if not (k == "amp" and name == "reference" and device.type == "cpu" and not args.cpu_bf16_reference)
                and (name != "tiny" or k in TINY_VARIANTS)
                and (name == "tiny" or k not in TINY_ONLY or not args.default_variants)
            ]
            res = time_stage(setup, st, keys, args)
            rows = print_stage_table(setup, stage, res, flops, args)
            print(
                f"FLOPs per step (conv/matmul, fwd+bwd): ours {flops['ours'] / 1e9:.2f} G, reference structure "
                f"{flops['reference'] / 1e9:.2f} G (× {flops['reference'] / flops['ours']:.3f})",
                flush=True,
            )
            all_rows[name][stage] = rows
            results["configs"][name]["stages"][stage] = {"rows": rows, "flops": flops, "load": res["load"]}
    results["targets"] = print_targets(all_rows)

    if args.memory:
        if device.type == "cuda":  # this process's cached blocks would leave the children too little memory
            gc.collect()
            torch.cuda.empty_cache()
        unit = "peak RSS above the pre-step RSS" if device.type == "cpu" else "max_memory_allocated above pre-step"
        print(f"\n### Peak memory, MiB ({unit}; one fresh process each, {args.memory_steps} steps)\n")
        keys = list(args.memory_variants)
        print(
            "| config | stage | "
            + " | ".join(variant_label(VARIANTS[k], args.precision == "bf16") for k in keys)
            + " |"
        )
        print("|---|---|" + "---|" * len(keys))
        mem: dict[str, Any] = {}
        for name in args.memory_configs:
            for stage in args.stages:
                vals = {k: measure_memory(name, stage, k, args, device) for k in keys}
                mem[f"{name}/{stage}"] = vals
                print(f"| {name} | {stage} | " + " | ".join(f"{vals[k]:.0f}" for k in keys) + " |", flush=True)
        results["memory_mib"] = mem

    if args.scaling:
        results["scaling"] = scaling_section(args, all_rows)

    if args.launch:
        print("\n### Trainer under accelerate launch (demo config, gloo, data.num_workers=0)\n", flush=True)
        rows = launch_scaling(args)
        base = {r["stage"]: r["samples_per_s"] for r in rows if r["processes"] == 1}
        print(
            "\n| stage | processes × threads | samples/s (median) | min–max | × 1 process | wall s | load avg | runs |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['stage']} | {r['processes']} × {r['threads']} | {r['samples_per_s']:.2f} "
                f"| {r['min']:.2f}–{r['max']:.2f} | {r['samples_per_s'] / base.get(r['stage'], float('nan')):.2f} "
                f"| {r['wall_s']:.0f} | {r['load']:.2f} | {r['runs']} |"
            )
        results["launch"] = rows

    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

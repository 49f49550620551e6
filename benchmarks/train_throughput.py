"""Training-step throughput of the CycleSR joint step against a bare loop and the reference's update structure.

    python benchmarks/train_throughput.py                  # tiny + demo + reference configs, CPU: about 10 min
    python benchmarks/train_throughput.py --reps 9         # more repetitions on a noisy machine
    python benchmarks/train_throughput.py --configs demo reference --variants bare ours compile --no-memory
                                                           # torch.compile (about 1-2 min to compile on 2 cores)
    python benchmarks/train_throughput.py --configs --no-memory --no-scaling --launch --launch-rounds 2
                                                           # the real trainer, 1 vs 2 processes (accelerate launch)
    python benchmarks/train_throughput.py --device cuda --peak-tflops 989   # GPU: bf16 autocast, MFU column
    python benchmarks/train_throughput.py --configs reference --stages joint --variants trainer --checkpoint
                                                           # + what a periodic checkpoint save costs the run

What is timed (one process, `--threads` intra-op threads, batches of random images in [-1, 1] from
`cyclesr_dist.testing.random_batch`, already on the device), per config and per stage (translation, joint).
Configs: `tiny` (`cyclesr_dist.testing.tiny_config`: compute is negligible, so ours − bare is the absolute per-step
overhead), `demo` (configs/demo.yaml at its patch and batch), `reference` (configs/cyclesr.yaml with the
reference's networks; on CPU at LR 32×32, batch 2 unless --ref-lr/--ref-batch say otherwise; on CUDA at the
config's LR 120, batch 64).

- `bare`: a hand-inlined loop doing exactly the maths of `CycleSR.optimize_parameters`: the same five networks,
  the same image pools, one backward for both discriminators, one backward for G (+ SR in the joint stage, the
  SR gradient into G scaled with `scale_grad`), per-group `clip_grad_norm_(foreach=True)` + Adam step + zero_grad.
  No `CycleSR`, no `OptimizerOps`, parameter lists hoisted out of the step. This is the yardstick for overhead.
- `ours`: `CycleSR.optimize_parameters` with a bare-loop `OptimizerOps` (what the trainer runs).
- `reference`: `testing.reference_optimize_parameters` (separate D backwards, SR weight gradients computed and
  discarded in the G step, SR forward+backward run again for the SR step).
- `trainer`: the trainer's per-step machinery without data loading or log/checkpoint I/O: the backend
  `engine.backends.prepare_backend` builds (Accelerator, `accelerator.prepare` of the five networks and four
  optimizers, `OptimizerOps(backward=accelerator.backward)`), then per step what `engine.trainer.Trainer` runs:
  the batch to the device, `Trainer.train_step` itself (learning rates from the spec, `backend.autocast()`, the
  recipe's step, losses and gradient norms to floats) and the preemption check.
- fast-path switches, each applied to `ours` alone: `channels_last` (networks and batch), `forloop_adam`
  (Adam foreach=False), `fused_adam` (`optim.fused=true`: Adam fused=True), `amp`
  (bf16 autocast on when the base precision is fp32, off when it is bf16; on CPU a fifth of the steps, and not
  for the reference config unless --cpu-bf16-reference), `compile` (each network through `torch.compile`, as
  `train.compile=true` does; compile time is reported separately; `compile_max`: mode max-autotune-no-cudagraphs,
  `compile_graphs`: reduce-overhead (CUDA graphs), `compile_cl`: with channels_last, `compile_batched`: with
  batched calls), `batched` (`train.batched_calls=true`: the same
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

`--checkpoint` times the trainer's own checkpoint save at each config's networks (optimizer state, pools full)
and gives its share of the training time between two periodic saves (`throughput/checkpoint_cost.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

# libgomp (the CPU wheel's OpenMP) spin-waits at every parallel region's barrier by default. On a machine whose
# cores other jobs also use, a 2-thread step then takes 10-30x longer (a spinning thread holds a core while its
# partner waits to be scheduled). Passive waiting is set before torch loads libgomp unless the caller chose.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "benchmarks"):  # the package (also when not installed) and `throughput`
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import torch  # noqa: E402
from throughput.launch import launch_section  # noqa: E402
from throughput.memory import child_memory, memory_section  # noqa: E402
from throughput.report import print_targets  # noqa: E402
from throughput.run import time_configs  # noqa: E402
from throughput.scaling import scaling_section  # noqa: E402
from throughput.setups import CONFIGS, STAGES  # noqa: E402
from throughput.variants import DEFAULT_VARIANTS, MEMORY_VARIANTS, VARIANTS  # noqa: E402


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
    p.add_argument("--roofline", action="store_true", help="per op kind FLOPs, bytes and the least step time")
    p.add_argument("--roofline-only", action="store_true", help="print the roofline, time nothing")
    p.add_argument("--hbm-tbps", type=float, default=3.35, help="memory bandwidth for --roofline (H100 SXM)")
    p.add_argument("--roofline-bytes", type=int, default=2, help="bytes per element for --roofline (bf16)")
    p.add_argument(
        "--roofline-calls",
        choices=("config", "separate", "batched"),
        default="config",
        help="G/F/D calls the roofline counts (default: as the trainer runs the config: train.batched_calls)",
    )
    p.add_argument(
        "--checkpoint", action="store_true", help="also time the trainer's checkpoint save and its share of a run"
    )
    p.add_argument("--checkpoint-saves", type=int, default=3, help="saves timed per config for --checkpoint")
    p.add_argument("--checkpoint-dir", type=Path, default=None, help="where --checkpoint writes (default: a temp dir)")
    p.add_argument("--checkpoint-step-ms", type=float, default=0.0, help="step time for the share (default: timed)")
    p.add_argument("--launch", action="store_true", help="also time the trainer under accelerate launch, 1 vs 2 procs")
    p.add_argument("--launch-steps", type=int, default=40)
    p.add_argument("--launch-rounds", type=int, default=1, help="rounds of the 6 runs, order reversed every round")
    p.add_argument("--launch-log-every", type=int, default=5)
    p.add_argument("--data-root", default="", help="demo data for --launch (default: built in a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write all results here")
    p.add_argument("--child-memory", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.checkpoint_dir is not None and not args.checkpoint_dir.is_dir():
        # one line, not argparse's usage block
        sys.exit(f"--checkpoint-dir {args.checkpoint_dir} is not a directory: create it, or leave the flag out")
    if args.precision is None:
        args.precision = "bf16" if args.device.startswith("cuda") else "fp32"
    args.default_variants = args.variants is None  # recorded in the JSON's "args"
    if args.variants is None:
        args.variants = list(DEFAULT_VARIANTS)
        if args.device.startswith("cuda"):
            args.variants.remove("forloop_adam")  # keep it if asked; fused is the CUDA fast path
    if args.compile and "compile" not in args.variants:
        args.variants.append("compile")
    if any(VARIANTS[k].compile for k in args.variants) and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
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
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    results["configs"], all_rows = time_configs(args, device)
    if args.roofline_only:
        args.memory = args.scaling = args.launch = False
    else:
        results["targets"] = print_targets(all_rows)
    if args.memory:
        results["memory_mib"] = memory_section(args, device)
    if args.scaling:
        results["scaling"] = scaling_section(args, all_rows)
    if args.launch:
        results["launch"] = launch_section(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A roofline of one training step: per op type, FLOPs and bytes moved, and the least time a GPU could take.

The step counted is the one the trainer runs with the config as given (`train.batched_calls` resolved as the
trainer resolves it: `auto` is batched unless G/F/D hold BatchNorm); `--roofline-calls` counts the other. One
optimised step runs on the meta device (no memory, no compute) under a dispatch mode that sees every aten op:
FLOPs come from torch's own flop registry (convolutions and matmuls, forward and backward), bytes are the elements
each op reads and writes (views move nothing; a tensor read twice by one op counts once) × the element size
assumed (2: bf16 activations under autocast, a lower bound). Each op's least time is max(FLOPs ÷ peak, bytes ÷
bandwidth); their sum is the bound for running the ops as written (eager). The convolutions' own time is the
floor if everything between them (norms, activations, pads, losses) were fused into their prologues/epilogues.
The optimizer does no conv work and is added from the parameter counts: clipping reads each gradient and scales it
(3 accesses of 4 bytes), Adam reads parameter, gradient and both moments and writes three of them (7 × 4 bytes).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

from cyclesr_dist.config import Config
from cyclesr_dist.cyclesr import CycleSR, Stage, network_groups
from cyclesr_dist.engine.backends.base import OptimizerOps

from .flops import meta_step_inputs

# First matching substring of the aten op name decides its row.
KINDS = (
    ("convolution", "conv"),
    ("norm", "norm"),  # batch/instance norm and their backward; the clip's vector norm is in "optimizer" below
    ("relu", "activation"),
    ("tanh", "activation"),
    ("threshold", "activation"),
    ("pad", "pad/cat/copy"),
    ("cat", "pad/cat/copy"),
    ("copy", "pad/cat/copy"),
    ("clone", "pad/cat/copy"),
    ("loss", "losses"),
    ("upsample", "resample"),
)
ADAM_BYTES_PER_PARAM = 7 * 4
CLIP_BYTES_PER_PARAM = 3 * 4


def kind_of(op_name: str) -> str:
    return next((kind for key, kind in KINDS if key in op_name), "elementwise/other")


class OpTraffic(TorchDispatchMode):
    """Sums FLOPs, bytes and calls per op kind for every aten op run inside it."""

    def __init__(self, bytes_per_element: int) -> None:
        super().__init__()
        self.bytes_per_element = bytes_per_element
        self.rows: dict[str, dict[str, float]] = defaultdict(lambda: {"flops": 0.0, "bytes": 0.0, "ops": 0})
        self.per_op: list[tuple[str, float, float]] = []
        self.bytes_by_op: dict[str, float] = defaultdict(float)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 -- torch's protocol
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        flops = float(flop_registry[packet](*args, **kwargs, out_val=out)) if packet in flop_registry else 0.0
        aliases = any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)
        moved = 0
        if not aliases:  # a view reads and writes nothing
            seen: dict[int, torch.Tensor] = {}
            for t in tree_leaves((args, kwargs, out)):
                if isinstance(t, torch.Tensor):
                    seen.setdefault(id(t), t)
            moved = sum(t.numel() for t in seen.values()) * self.bytes_per_element
        kind = kind_of(packet.__name__)
        row = self.rows[kind]
        row["flops"] += flops
        row["bytes"] += moved
        row["ops"] += 1
        self.per_op.append((kind, flops, moved))
        self.bytes_by_op[func.__name__] += moved
        return out


def roofline(
    config: Config, lr_size: int, batch_size: int, stage: Stage, peak_tflops: float, hbm_tbps: float, bytes_el: int
) -> dict[str, Any]:
    """Bytes, FLOPs and least times per op kind of one optimised step; times in seconds."""
    nets, opts, batch = meta_step_inputs(config, lr_size, batch_size)
    groups = network_groups(config.optim)
    model = CycleSR(nets, config.loss, pool_seed=0, batched_calls=config.train.batched_calls)
    mode = OpTraffic(bytes_el)
    with mode:
        model.optimize_parameters(batch, stage, OptimizerOps(opts, 0.0))
    peak, bandwidth = peak_tflops * 1e12, hbm_tbps * 1e12
    rows = {k: dict(v, bound_s=0.0) for k, v in mode.rows.items()}
    for kind, flops, moved in mode.per_op:
        rows[kind]["bound_s"] += max(flops / peak, moved / bandwidth)
    stepped = {"D_X", "D_Y", "G"} | ({"SR"} if stage is Stage.JOINT else set())
    if stage is Stage.SR_PRETRAIN:
        stepped = {"SR"}
    params = sum(p.numel() for g in groups if g.name in stepped for n in g.networks for p in nets[n].parameters())
    opt_bytes = params * (ADAM_BYTES_PER_PARAM + CLIP_BYTES_PER_PARAM)
    rows["optimizer"] = {"flops": 0.0, "bytes": float(opt_bytes), "ops": 0, "bound_s": opt_bytes / bandwidth}
    eager = sum(r["bound_s"] for r in rows.values())
    fused = rows.get("conv", {"bound_s": 0.0})["bound_s"] + rows["optimizer"]["bound_s"]
    return {
        "lr": lr_size,
        "batch": batch_size,
        "peak_tflops": peak_tflops,
        "hbm_tbps": hbm_tbps,
        "bytes_per_element": bytes_el,
        "calls": "batched" if model.batched_calls else "separate",
        "rows": rows,
        "eager_bound_s": eager,
        "fused_bound_s": fused,
        "compute_bound_s": sum(r["flops"] for r in rows.values()) / peak,
        "kernels": sum(1 for _, _, moved in mode.per_op if moved),  # views launch nothing
        "top_ops_gb": {k: v / 1e9 for k, v in sorted(mode.bytes_by_op.items(), key=lambda kv: -kv[1])[:8]},
    }


def print_roofline(name: str, stage: str, r: dict[str, Any], measured_s: float | None = None) -> None:
    """One table per (config, stage); with a measured step time, the step as a fraction of each bound."""
    print(
        f"\n#### roofline: {name} {stage}, LR {r['lr']}², batch {r['batch']}, {r['peak_tflops']:g} TFLOP/s, "
        f"{r['hbm_tbps']:g} TB/s, {r['bytes_per_element']} B/element, {r['calls']} G/F/D calls",
        flush=True,
    )
    print("| op kind | ops | GFLOP | GB moved | FLOP/byte | least ms | share |\n|---|---:|---:|---:|---:|---:|---:|")
    eager = r["eager_bound_s"]
    for kind, row in sorted(r["rows"].items(), key=lambda kv: -kv[1]["bound_s"]):
        intensity = row["flops"] / row["bytes"] if row["bytes"] else float("inf")
        print(
            f"| {kind} | {row['ops']} | {row['flops'] / 1e9:.1f} | {row['bytes'] / 1e9:.2f} | {intensity:.0f} | "
            f"{row['bound_s'] * 1e3:.2f} | {row['bound_s'] / eager:.0%} |"
        )
    line = (
        f"bounds per step: dense peak only {r['compute_bound_s'] * 1e3:.1f} ms, eager ops {eager * 1e3:.1f} ms, "
        f"fused (convs + optimizer) {r['fused_bound_s'] * 1e3:.1f} ms"
    )
    line += f"; {r['kernels']} kernels as written (at a few µs of launch each unless captured in a CUDA graph)"
    if measured_s:
        line += (
            f"; measured {measured_s * 1e3:.1f} ms = {r['compute_bound_s'] / measured_s:.1%} of dense peak (MFU), "
            f"{eager / measured_s:.1%} of the eager bound, {r['fused_bound_s'] / measured_s:.1%} of the fused bound"
        )
    print(line, flush=True)
    print("most bytes: " + ", ".join(f"{op} {gb:.1f} GB" for op, gb in r["top_ops_gb"].items()), flush=True)

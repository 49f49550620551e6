"""Multi-process driver for tests/test_deepspeed.py: real DeepSpeed engines, tiny CycleSR networks, no mocks.

Run under `accelerate launch --config_file configs/accelerate/deepspeed_zero{1,2}.yaml --num_processes N`.

--scenario train (any world size): 6 joint steps (translation ×2, SR pre-train, joint ×3) with per-rank shards
  of a global batch. Checked every step against a plain-PyTorch reference trained on the same shards with
  all-reduced (averaged) gradients, i.e. what DDP computes: weights, per-group gradient norms; replicas
  bitwise identical across ranks; which engines each backward reached; D unchanged by the G step; every
  group moved in the joint stage; a learning rate set to 0 through `setup.optimizers` freezes that group.
  Saves a checkpoint after step 4, trains to the end, loads it back (after the straight run changed weights,
  optimizer moments and step counts), reruns the last steps and compares with the straight run.
--scenario universal (world size 1): loads the checkpoint a 2-process `train` run wrote, after
  `convert_to_universal`; checks the non-universal load is refused, the weights and the Adam moments equal the
  saved ones, and that training continues.

Rank 0 writes `<out>/<scenario>.json` with the measurements; any failed check raises (non-zero exit).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from cyclesr_dist.cyclesr import CycleSR, Stage, build_networks, build_optimizers, network_groups
from cyclesr_dist.engine.backends.base import OptimizerOps
from cyclesr_dist.engine.backends.deepspeed import DeepSpeedBackend
from cyclesr_dist.engine.backends.deepspeed.backward import DeepSpeedOps, joint_backward
from cyclesr_dist.engine.backends.deepspeed.checkpoint import load_engines, save_engines
from cyclesr_dist.testing import random_batch, tiny_config
from cyclesr_dist.torch_utils import unwrap

STAGES = [Stage.TRANSLATION, Stage.TRANSLATION, Stage.SR_PRETRAIN, Stage.JOINT, Stage.JOINT, Stage.JOINT]
SAVE_AFTER = 4  # steps done when the checkpoint is written
LR_ZERO_STEP, LR_ZERO_GROUP = 4, "D_X"  # this group's learning rate is 0 at this step
PER_RANK = 2
REACHED = {  # which engines each backward must reach
    Stage.TRANSLATION: [["D_X", "D_Y"], ["G"]],
    Stage.SR_PRETRAIN: [["SR"]],
    Stage.JOINT: [["D_X", "D_Y"], ["G", "SR"]],
}


def make_config(world: int):
    # pool_size 50 is never filled in these few steps, so the pools pass images through (detached) and the
    # reference sees the same fakes. (pool_size 0 would not detach them: ImagePool.query returns its input.)
    return tiny_config(**{"loss.pool_size": "50", "data.batch_size": str(PER_RANK * world), "wandb.mode": "disabled"})


def prepare(nets, config) -> DeepSpeedBackend:
    groups = {g.name: g.networks for g in network_groups(config.optim)}
    return DeepSpeedBackend(nets, build_optimizers(nets, config.optim), groups, config)


def global_batch(step: int, world: int) -> dict[str, torch.Tensor]:
    return random_batch(batch=PER_RANK * world, seed=1000 + step)


def shard(batch: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    return {k: v.chunk(world)[rank].contiguous() for k, v in batch.items()}


def lrs_for(step: int, stage: Stage, config) -> dict[str, float]:
    lrs = {g.name: g.base_lr for g in network_groups(config.optim)}
    if stage is Stage.SR_PRETRAIN:  # as NetworkGroup.lr: only SR learns
        lrs = {k: (v if k == "SR" else 0.0) for k, v in lrs.items()}
    if step == LR_ZERO_STEP:
        lrs[LR_ZERO_GROUP] = 0.0
    return lrs


def flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in net.parameters()])


def norm_cancelled(net: torch.nn.Module) -> set[str]:
    """Biases of convolutions followed by InstanceNorm(affine=False): the norm removes them, so their gradient
    is zero up to rounding, and Adam turns that rounding noise into lr-sized steps. Two correct runs differ
    there by up to ~lr per step; they are reported, not compared."""
    names = set()
    for prefix, module in net.named_modules():
        if isinstance(module, torch.nn.Sequential):
            children = list(module.named_children())
            for (name, layer), (_, following) in zip(children, children[1:], strict=False):
                if isinstance(following, torch.nn.InstanceNorm2d) and getattr(layer, "bias", None) is not None:
                    names.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


def compared(net: torch.nn.Module) -> torch.Tensor:
    """The parameters that carry signal (all but `norm_cancelled`), flattened."""
    skip = norm_cancelled(net)
    return torch.cat([p.detach().reshape(-1).double() for n, p in net.named_parameters() if n not in skip])


class RecordingOps(DeepSpeedOps):
    """Real DeepSpeed ops, plus: groups each backward reached, and D weights around the G step."""

    def __init__(self, engines, nets):
        super().__init__(engines)
        self.nets = nets
        self.reached: list[list[str]] = []
        self.d_after_d_step: dict[str, torch.Tensor] = {}

    def backward(self, loss):
        reached = joint_backward(loss, list(self.engines.values()))
        self.reached.append(sorted(name for name, e in self.engines.items() if any(e is r for r in reached)))

    def step(self, group):
        super().step(group)
        if group == "D_Y":
            self.d_after_d_step = {n: flat(unwrap(self.nets[n])) for n in ("disc_clean", "disc_real")}


class AllReduceOps(OptimizerOps):
    """Reference: plain PyTorch, gradients averaged over ranks after each backward (what DDP does)."""

    def __init__(self, optimizers, grad_clip, world):
        super().__init__(optimizers, grad_clip, backward=self._backward)
        self.world = world

    def _backward(self, loss):
        loss.backward()
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= self.world


def all_same_across_ranks(t: torch.Tensor) -> bool:
    gathered = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, t)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def adam_moment_norms(setup) -> dict[str, list[float]]:
    """Per group: global ||exp_avg||², ||exp_avg_sq||² and the step count over this rank's ZeRO partitions,
    summed over ranks. Partition padding is zero, so these do not depend on the world size."""
    out = {}
    for name, optimizer in setup.optimizers.items():
        sq = torch.zeros(2, dtype=torch.float64)
        steps = 0.0
        for state in optimizer.optimizer.state.values():  # the wrapped torch Adam over flat partitions
            sq[0] += state["exp_avg"].double().square().sum()
            sq[1] += state["exp_avg_sq"].double().square().sum()
            steps = float(state["step"])
        dist.all_reduce(sq)
        out[name] = [sq[0].item(), sq[1].item(), steps]
    return out


def run_step(model, ops, step, config, rank, world, setup=None, ref=None):
    stage = STAGES[step]
    lrs = lrs_for(step, stage, config)
    batch = shard(global_batch(step, world), rank, world)
    if setup is not None:
        setup.set_learning_rates(lrs)
        with setup.autocast():
            losses = model.optimize_parameters(batch, stage, ops)
    else:
        for name, optimizer in ops.optimizers.items():
            for g in optimizer.param_groups:
                g["lr"] = lrs[name]
        losses = model.optimize_parameters(batch, stage, ops)
    return stage, {k: float(v) for k, v in losses.items()}


def scenario_train(args) -> dict:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    config = make_config(world)
    torch.manual_seed(0)
    nets = build_networks(config.model)
    ref_nets = copy.deepcopy(nets)
    setup = prepare(nets, config)
    acc = setup.accelerator
    rank = acc.process_index
    assert acc.num_processes == world, (acc.num_processes, world)
    assert acc.distributed_type.name == "DEEPSPEED", acc.distributed_type
    engines = setup.engines
    stage_in_config = {n: e.zero_optimization_stage() for n, e in engines.items()}
    clip_in_config = {n: e.gradient_clipping() for n, e in engines.items()}
    micro = {n: e.train_micro_batch_size_per_gpu() for n, e in engines.items()}
    assert set(clip_in_config.values()) == {config.optim.grad_clip}, clip_in_config
    assert set(micro.values()) == {PER_RANK}, micro

    ops = RecordingOps(engines, setup.nets)
    model = CycleSR(setup.nets, config.loss, pool_seed=rank)
    ref = CycleSR(ref_nets, config.loss, pool_seed=rank)
    ref_ops = AllReduceOps(build_optimizers(ref_nets, config.optim), config.optim.grad_clip, world)

    report = {"world_size": world, "zero_stage": stage_in_config, "gradient_clipping": clip_in_config, "steps": []}
    report["micro_batch"] = micro
    report["group_params"] = {n: sum(p.numel() for p in e.module.parameters()) for n, e in engines.items()}
    report["reduce_bucket_size"] = {n: int(e.optimizer.reduce_bucket_size) for n, e in engines.items()}
    names = list(nets.keys())
    max_ref_diff = 0.0
    saved_weights = None
    step_dir = Path(args.out) / "ckpt" / f"step-{SAVE_AFTER:08d}"
    for step in range(len(STAGES)):
        before = {n: flat(unwrap(setup.nets[n])) for n in names}
        ops.reached.clear()
        stage, losses = run_step(model, ops, step, config, rank, world, setup=setup)
        run_step(ref, ref_ops, step, config, rank, world)
        after = {n: flat(unwrap(setup.nets[n])) for n in names}
        moved = {n: (after[n] - before[n]).abs().max().item() for n in names}
        diff = {n: (compared(unwrap(setup.nets[n])) - compared(ref_nets[n])).abs().max().item() for n in names}
        noise = {n: (after[n] - flat(ref_nets[n])).abs().max().item() for n in names}
        norm_rel = {
            g: abs(float(ops.grad_norms[g]) - float(ref_ops.grad_norms[g])) / float(ref_ops.grad_norms[g])
            for g in ops.grad_norms
        }
        same = {n: all_same_across_ranks(after[n]) for n in names}
        entry = {
            "step": step,
            "stage": stage.value,
            "losses": losses,
            "reached": list(ops.reached),
            "moved": moved,
            "max_abs_diff_vs_reference": diff,
            "max_abs_diff_vs_reference_incl_norm_cancelled_biases": noise,
            "grad_norm_rel_diff_vs_reference": norm_rel,
            "replicas_identical": same,
        }
        report["steps"].append(entry)
        ops.grad_norms.clear()
        ref_ops.grad_norms.clear()

        assert all(same.values()), f"step {step}: replicas differ across ranks: {same}"
        assert ops.reached == REACHED[stage], f"step {step} ({stage.value}): backward reached {ops.reached}"
        assert all(v == v for v in losses.values()), f"step {step}: NaN loss {losses}"
        max_ref_diff = max(max_ref_diff, *diff.values())
        assert max(diff.values()) < args.tol, f"step {step}: DeepSpeed vs reference {diff}"
        assert max(norm_rel.values(), default=0.0) < 1e-4, f"step {step}: grad norms {norm_rel}"
        if stage is not Stage.SR_PRETRAIN:
            for n in ("disc_clean", "disc_real"):  # the G step leaves D alone
                assert torch.equal(ops.d_after_d_step[n], after[n]), f"step {step}: G step changed {n}"
        if stage is Stage.JOINT:
            for n in names:
                frozen_by_lr = step == LR_ZERO_STEP and n in setup.groups[LR_ZERO_GROUP]
                if frozen_by_lr:
                    assert moved[n] == 0.0, f"step {step}: lr 0 but {n} moved by {moved[n]}"
                else:
                    assert moved[n] > 0.0, f"step {step}: {n} did not move in the joint stage"
        if stage is Stage.SR_PRETRAIN:
            assert moved["sr"] > 0 and all(moved[n] == 0.0 for n in names if n != "sr"), moved
        if stage is Stage.TRANSLATION:
            assert moved["sr"] == 0.0, moved

        if step + 1 == SAVE_AFTER:
            save_engines(setup.engines, step_dir)
            saved_weights = {n: after[n].clone() for n in names}
            saved_pools = copy.deepcopy(model.state_dict())
            saved_moments = adam_moment_norms(setup)
            if rank == 0:
                torch.save({"weights": saved_weights, "moments": saved_moments}, Path(args.out) / "saved.pt")
            acc.wait_for_everyone()
    report["max_abs_diff_vs_reference"] = max_ref_diff
    straight = {n: flat(unwrap(setup.nets[n])) for n in names}

    # Resume: everything has moved on since the save; load must bring back weights and optimizer state.
    load_engines(setup.engines, step_dir, world)
    model.load_state_dict(saved_pools)
    loaded = {n: flat(unwrap(setup.nets[n])) for n in names}
    assert all(torch.equal(loaded[n], saved_weights[n]) for n in names), "load did not restore the weights"
    moments = adam_moment_norms(setup)
    assert moments == saved_moments, f"load did not restore the Adam state: {moments} vs {saved_moments}"
    for step in range(SAVE_AFTER, len(STAGES)):
        run_step(model, ops, step, config, rank, world, setup=setup)
    resumed = {n: flat(unwrap(setup.nets[n])) for n in names}
    resume_diff = {n: (resumed[n] - straight[n]).abs().max().item() for n in names}
    report["resume_max_abs_diff"] = resume_diff
    assert max(resume_diff.values()) <= args.resume_tol, f"save/load/continue differs from straight: {resume_diff}"
    if rank == 0:
        torch.save({n: straight[n] for n in names}, Path(args.out) / "final.pt")
    return report


def scenario_universal(args) -> dict:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    config = make_config(world)
    torch.manual_seed(123)  # other initial weights: everything must come from the checkpoint
    nets = build_networks(config.model)
    setup = prepare(nets, config)
    rank = setup.accelerator.process_index
    step_dir = Path(args.ckpt)
    saved = torch.load(Path(args.ckpt_out) / "saved.pt", weights_only=True)
    report: dict = {"world_size": world}
    try:
        load_engines(setup.engines, step_dir, world, universal=False)
        raise AssertionError("a 2-process ZeRO checkpoint loaded at another world size without conversion")
    except RuntimeError as e:
        assert "world size" in str(e), e
        report["refused_without_conversion"] = str(e).splitlines()[0]
    load_engines(setup.engines, step_dir, world)
    names = list(nets.keys())
    loaded = {n: flat(unwrap(setup.nets[n])) for n in names}
    report["weights_max_abs_diff"] = {n: (loaded[n] - saved["weights"][n]).abs().max().item() for n in names}
    assert all(torch.equal(loaded[n], saved["weights"][n]) for n in names), report["weights_max_abs_diff"]
    moments = adam_moment_norms(setup)
    rel = {
        g: [abs(a - b) / max(abs(b), 1e-30) for a, b in zip(moments[g], saved["moments"][g], strict=True)]
        for g in moments
    }
    report["adam_state_rel_diff"] = rel
    assert max(max(v) for v in rel.values()) < 1e-9, rel
    ops = DeepSpeedOps(setup.engines)
    model = CycleSR(setup.nets, config.loss, pool_seed=rank)
    losses = []
    for step in range(SAVE_AFTER, len(STAGES)):
        _, step_losses = run_step(model, ops, step, config, rank, world, setup=setup)
        losses.append(step_losses)
    report["continued_losses"] = losses
    assert all(v == v for step_losses in losses for v in step_losses.values())
    return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", choices=["train", "universal"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ckpt", help="universal: checkpoint step directory")
    parser.add_argument("--ckpt-out", help="universal: --out of the train run that wrote it")
    parser.add_argument("--tol", type=float, default=1e-6, help="max |w_deepspeed - w_reference|")
    parser.add_argument("--resume-tol", type=float, default=0.0, help="max |w_resumed - w_straight|")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = scenario_train(args) if args.scenario == "train" else scenario_universal(args)
    if dist.get_rank() == 0:
        Path(args.out, f"{args.scenario}.json").write_text(json.dumps(report, indent=1))
    dist.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())

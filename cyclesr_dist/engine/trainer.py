"""The training loop, top to bottom: set up, resume, iterate (stage → LRs → joint step → log/validate/save),
stop on preemption or at max_steps.

The engine knows network *groups* (from `network_groups`), not the five networks by name, apart from the SR
network it validates with.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from ..config import Config, config_to_dict, dump_config
from ..cyclesr import CycleSR, Stage, build_networks, network_groups, stage_for_epoch
from ..data.folder import FolderUnpairedLoader, paired_val_images
from ..data.images import model_to_uint8, uint8_to_model
from ..evaluate import evaluate_pairs
from .backend import prepare_backend
from .checkpoint import CheckpointManager, load_rank_state, rng_state, set_rng_state
from .ops import set_learning_rates
from .preemption import PREEMPTED_EXIT_CODE, PreemptionFlag
from .tracking import RunLogger


def build_loader(config: Config, rank: int, world_size: int):
    d, k = config.data, config.train.gradient_accumulation_steps
    if d.batch_size % (world_size * k):
        raise ValueError(
            f"data.batch_size={d.batch_size} is global and must be divisible by {world_size} processes × "
            f"train.gradient_accumulation_steps={k}"
        )
    per_rank = d.batch_size // (world_size * k)
    # Both loaders take the same stream parameters; only where the images come from differs.
    common = dict(
        hr_patch=d.hr_patch,
        scale=d.scale,
        batch_size=per_rank,
        num_workers=d.num_workers,
        seed=config.seed,
        rank=rank,
        pin_memory=d.pin_memory,
    )
    if d.kind == "folder":
        return FolderUnpairedLoader(Path(d.root) / "hr", Path(d.root) / "real_lr", **common)
    from ..data.stream import StreamingUnpairedLoader, check_shards

    check_shards(d.hr_shards)
    check_shards(d.lr_shards)
    return StreamingUnpairedLoader(d.hr_shards, d.lr_shards, world_size=world_size, **common)


def load_val_pairs(config: Config) -> list[tuple[str, np.ndarray, np.ndarray]]:
    d = config.data
    if d.kind == "folder":
        val = Path(d.root) / "val"
        if (val / "lr").is_dir() and (val / "hr").is_dir():
            return paired_val_images(val / "lr", val / "hr", d.val_max_images)
        return []
    if d.val_shards:
        from ..data.shards import iter_val_pairs

        pairs = list(iter_val_pairs(d.val_shards))
        return pairs[: d.val_max_images] if d.val_max_images else pairs
    return []


def validate(sr_net: torch.nn.Module, pairs: list, scale: int, max_shift: int) -> dict[str, float]:
    """PSNR/SSIM of SR and of bicubic on the paired validation images: the same code as `cyclesr eval`."""
    mean = evaluate_pairs(sr_net, pairs, scale=scale, max_shift=max_shift)["mean"]
    return {f"val/{k}": v for k, v in mean.items()}


@torch.no_grad()
def sample_grids(model: CycleSR, unwrap, batch: dict, val_pairs: list, scale: int, device) -> dict[str, np.ndarray]:
    """clean LR | G(clean LR) | real LR from the batch, and real LR | SR | HR from the first validation pair."""
    gen = unwrap(model.nets["gen_clean_to_real"])
    row = [batch["clean_lr"][:1], gen(batch["clean_lr"][:1]), batch["real_lr"][:1]]
    grids = {"samples/translation": np.concatenate([model_to_uint8(t[0]) for t in row], axis=1)}
    if val_pairs:
        _, lr_img, hr_img = val_pairs[0]
        lr = uint8_to_model(lr_img).unsqueeze(0).to(device)
        sr = unwrap(model.nets["sr"])(lr).clamp(-1, 1)
        lr_big = F.interpolate(lr, scale_factor=scale, mode="nearest")
        hr = uint8_to_model(hr_img[: sr.shape[-2], : sr.shape[-1]]).unsqueeze(0).to(device)
        grids["samples/sr"] = np.concatenate([model_to_uint8(t[0]) for t in (lr_big, sr, hr)], axis=1)
    return grids


def check_replicas_identical(nets: dict[str, torch.nn.Module], device: torch.device) -> None:
    """Every rank must hold the same weights (DDP keeps them so); a silent divergence would make the sharded
    checkpoint, whose groups are written by different ranks, inconsistent. Cheap: one float64 sum per network."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    sums = [sum(p.detach().double().sum().item() for p in net.parameters()) for net in nets.values()]
    sums = torch.tensor(sums, dtype=torch.float64, device=device)
    gathered = [torch.zeros_like(sums) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, sums)
    for other in gathered[1:]:
        if not torch.equal(other, gathered[0]):
            per_net = dict(zip(nets, torch.stack(gathered).T.tolist(), strict=True))
            raise RuntimeError(f"network replicas differ across ranks (parameter sums per rank): {per_net}")


def train(config: Config) -> int:
    """Run (or resume) training. Returns the process exit status: 0 done, PREEMPTED_EXIT_CODE after a signal."""
    output_dir = Path(config.output_dir)
    if config.train.deterministic:
        torch.use_deterministic_algorithms(True)
    set_seed(config.seed)  # the same seed on every rank: identical initial weights

    # Networks and the four optimizers, wrapped for DDP or DeepSpeed.
    nets = build_networks(config)
    if config.train.channels_last:
        nets = nets.to(memory_format=torch.channels_last)
    backend = prepare_backend(nets, config)
    accelerator, wrapped, optimizers, ops = backend.accelerator, backend.nets, backend.optimizers, backend.ops
    rank, world_size, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    groups = network_groups(config.optim)
    model = CycleSR(wrapped, config.loss, pool_seed=config.seed * 1000 + rank, batched_calls=config.train.batched_calls)
    loader = build_loader(config, rank, world_size)
    val_pairs = load_val_pairs(config) if accelerator.is_main_process else []

    # Resume.

    def barrier() -> None:
        # Plain torch barrier: Accelerate's passes device_ids, which means nothing to gloo.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()

    manager = CheckpointManager(output_dir / "checkpoints", config.checkpoint.keep, rank, world_size, barrier)
    resume = manager.resolve(config.checkpoint.resume)
    step, run_id = 0, None
    if resume is not None:
        backend.load(resume)
        rank_state = load_rank_state(resume, rank)
        if rank_state is not None:
            model.load_state_dict(rank_state["model"], device)
            loader.load_state_dict(rank_state["loader"])
            set_rng_state(rank_state["rng"])
        step, run_id = resume.step, resume.meta.get("tracker_run_id")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        dump_config(config, output_dir / "config.yaml")
    logger = RunLogger(accelerator, output_dir, config.wandb, config_to_dict(config), run_id)
    if resume is not None:
        logger.info(f"resumed from {resume.path} at step {step} (written by {resume.meta['world_size']} processes)")

    def save(at_step: int) -> None:
        check_replicas_identical({n: backend.unwrap(net) for n, net in wrapped.items()}, device)
        rank_state = {"model": model.state_dict(), "loader": loader.state_dict(), "rng": rng_state()}
        meta = {"tracker_run_id": logger.run_id, "config": config_to_dict(config)}
        path = manager.save(at_step, meta, backend.group_states(), rank_state, backend.save_sharded)
        logger.info(f"saved checkpoint {path}")

    def to_device(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
        return {k: v.to(device, non_blocking=True).contiguous(memory_format=memory_format) for k, v in b.items()}

    preemption = PreemptionFlag()
    total = config.total_steps
    spe = config.data.steps_per_epoch
    status = 0
    batches = iter(loader)
    tic, samples_since = time.perf_counter(), 0
    try:
        while step < total:
            epoch = step // spe + 1
            stage = stage_for_epoch(epoch, config.stages)
            lrs = {g.name: g.lr(epoch, config.stages, config.optim) for g in groups}
            set_learning_rates(optimizers, lrs)
            micro_batches = [to_device(next(batches)) for _ in range(config.train.gradient_accumulation_steps)]
            batch = micro_batches[0]
            ops.grad_norms.clear()
            with backend.autocast():
                losses = model.optimize_parameters(micro_batches, stage, ops)
            step += 1
            samples_since += config.data.batch_size

            if step % config.train.log_every == 0 or step == total:
                elapsed = time.perf_counter() - tic
                values: dict[str, Any] = {k: float(v) for k, v in losses.items()}
                values |= {f"lr/{k}": v for k, v in lrs.items()}
                values |= {f"grad_norm/{k}": float(v) for k, v in ops.grad_norms.items()}
                values |= {"epoch": epoch, "stage": stage.value, "samples_per_s": samples_since / elapsed}
                values |= {f"data/skipped_{k}": v for k, v in loader.skipped().items()}
                logger.log(values, step)
                tic, samples_since = time.perf_counter(), 0
            if config.train.image_every and step % config.train.image_every == 0 and accelerator.is_main_process:
                logger.log_images(
                    sample_grids(model, backend.unwrap, batch, val_pairs, config.data.scale, device), step
                )
            end_of_epoch = step % spe == 0
            if (
                accelerator.is_main_process
                and val_pairs
                and ((end_of_epoch and epoch % config.train.val_every_epochs == 0) or step == total)
                and stage is not Stage.TRANSLATION
            ):
                logger.log(
                    validate(backend.unwrap(wrapped["sr"]), val_pairs, config.data.scale, config.train.val_max_shift),
                    step,
                )
            stop = preemption.should_stop(device)
            if stop or step == total or step % config.checkpoint.every_steps == 0:
                save(step)
            if stop:
                logger.info(f"preempted at step {step}: checkpoint saved, exiting with {PREEMPTED_EXIT_CODE}")
                status = PREEMPTED_EXIT_CODE
                break
    finally:
        preemption.restore()
        logger.finish()
    barrier()
    return status


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ..config import load_config

    parser = argparse.ArgumentParser(description="Train CycleSR.")
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    return train(config)


if __name__ == "__main__":
    sys.exit(main())

"""Builders shared by the tests and the benchmarks, and the reference implementation's update *structure*.

`reference_optimize_parameters` is not used for training: it is kept literally as a yardstick. Tests check that
`CycleSR.optimize_parameters` (which drops the reference's redundant work) produces the same weights as this, and
`benchmarks/train_throughput.py` times both. Differences from the optimised step, all of them wasted work with
identical results:
- each discriminator has its own backward;
- the G step builds SR(G(x)) with SR's weights requiring grad, so its backward computes SR weight gradients that
  are then zeroed;
- the SR step runs SR(G(x).detach()) forward and backward again on the same input and weights.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .config import Config, load_config
from .cyclesr import Batch, CycleSR, Stage
from .cyclesr.losses import gan_loss, set_requires_grad


def tiny_config(**overrides: str) -> Config:
    """A very small model config for unit tests (structure of the reference, tiny widths)."""
    base = [
        "model.generator.args={ngf: 8, n_blocks: 2}",
        "model.discriminator.args={ndf: 8, n_layers: 2}",
        "model.sr.args={nf: 8, nb: 2}",
        "loss.pool_size=4",
    ]
    return load_config(None, base + [f"{k}={v}" for k, v in overrides.items()])


def random_batch(batch: int = 2, lr: int = 16, scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random HR in [-1, 1], its box-downscaled clean LR, an unrelated random real LR."""
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(batch, 3, lr * scale, lr * scale, generator=g) * 2 - 1
    return {
        "hr": hr,
        "clean_lr": F.avg_pool2d(hr, scale),
        "real_lr": torch.rand(batch, 3, lr, lr, generator=g) * 2 - 1,
    }


def _step(optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
    if grad_clip > 0:
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
    optimizer.step()


def reference_optimize_parameters(
    model: CycleSR, batch: Batch, stage: Stage, optimizers: dict[str, torch.optim.Optimizer], grad_clip: float
) -> None:
    n, lam = model.nets, model.loss
    clean_lr, real_lr, hr = batch["clean_lr"], batch["real_lr"], batch["hr"]
    if stage is Stage.SR_PRETRAIN:
        optimizers["SR"].zero_grad()
        (lam.sr_lam * F.mse_loss(n["sr"](clean_lr), hr)).backward()
        _step(optimizers["SR"], grad_clip)
        return

    fake_real = n["gen_clean_to_real"](clean_lr)
    rec_clean = n["gen_real_to_clean"](fake_real)
    fake_clean = n["gen_real_to_clean"](real_lr)
    rec_real = n["gen_clean_to_real"](fake_clean)

    # D_X, then D_Y, each with its own backward and step.
    for group, disc, real, pool, fake in (
        ("D_X", n["disc_clean"], clean_lr, model.pool_clean, fake_clean),
        ("D_Y", n["disc_real"], real_lr, model.pool_real, fake_real),
    ):
        optimizers[group].zero_grad()
        loss_d = 0.5 * (gan_loss(disc(real), True) + gan_loss(disc(pool.query(fake)), False))
        loss_d.backward()
        _step(optimizers[group], grad_clip)

    # G step: discriminators frozen, SR *not* frozen (its gradients are computed and later discarded).
    set_requires_grad([n["disc_clean"], n["disc_real"]], False)
    optimizers["G"].zero_grad()
    loss_g = (
        gan_loss(n["disc_real"](fake_real), True)
        + gan_loss(n["disc_clean"](fake_clean), True)
        + lam.lambda_cycle * (F.l1_loss(rec_clean, clean_lr) + F.l1_loss(rec_real, real_lr))
        + lam.lambda_cycle
        * lam.lambda_identity
        * (F.l1_loss(n["gen_clean_to_real"](real_lr), real_lr) + F.l1_loss(n["gen_real_to_clean"](clean_lr), clean_lr))
    )
    if stage is Stage.JOINT:
        loss_g = loss_g + lam.cycle_sr_lam * F.mse_loss(n["sr"](fake_real), hr)
    loss_g.backward()
    _step(optimizers["G"], grad_clip)
    set_requires_grad([n["disc_clean"], n["disc_real"]], True)

    # SR step: forward and backward again on the same G(x).
    if stage is Stage.JOINT:
        optimizers["SR"].zero_grad()
        (lam.sr_lam * F.mse_loss(n["sr"](fake_real.detach()), hr)).backward()
        _step(optimizers["SR"], grad_clip)


def read_train_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's train_log.jsonl, in file order; none if there is no log yet. A line that does not parse
    (the one being written at this moment) is skipped, so a run can be watched while it trains."""
    log = Path(run_dir) / "train_log.jsonl"
    if not log.is_file():
        return []
    rows = []
    for line in log.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return rows


def checkpoint_weights(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """Every network's weights in a run's newest complete checkpoint, as ``{"<network>.<parameter>": tensor}``."""
    from .checkpoint_format import latest_checkpoint, load_file

    ckpt = latest_checkpoint(Path(run_dir) / "checkpoints")
    weights = {}
    for group in ckpt.meta["groups"]:
        for net, state in load_file(ckpt.path / f"group-{group}.pt")["nets"].items():
            weights |= {f"{net}.{k}": v for k, v in state.items()}
    return weights


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a test's rendezvous or daemon (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

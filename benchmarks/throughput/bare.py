"""The `bare` variant: the joint step's maths inlined by hand, the yardstick for overhead."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cyclesr_dist.config import Config
from cyclesr_dist.cyclesr import ImagePool, Stage
from cyclesr_dist.cyclesr.losses import scale_grad


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

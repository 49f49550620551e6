"""The CycleSR joint step: one iteration of every group the stage trains, in the reference's order.

Plain PyTorch: how to backward, step, clip and call a frozen network comes from the engine through `StepOps`,
so the same `optimize_parameters` runs under a bare loop, DDP and DeepSpeed.

Domains (all tensors in [-1, 1]): X = clean LR (HR downscaled ×4 by bicubic), Y = real LR (unpaired with X),
HR = the crop X came from.  G: X→Y is `gen_clean_to_real`, F: Y→X is `gen_real_to_clean`, D_X is
`disc_clean`, D_Y is `disc_real`, and `sr` maps LR to HR.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LossConfig
from ..data.images import clean_downscale
from ..errors import BadInput
from ..torch_utils import filter2d, gaussian_kernel
from .fine_cap import FineBandCap
from .losses import gan_loss, scale_grad, set_requires_grad, spectrum_loss
from .networks import batch_norm_in_batched_calls
from .pool import ImagePool
from .stages import Stage

Batch = dict[str, torch.Tensor]  # {"hr", "clean_lr", "real_lr"}


class StepOps(Protocol):
    """What the joint step needs from the engine."""

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self, group: str) -> None:
        """Clip the group's gradients, step its optimizer, zero its gradients."""

    def frozen(self, net: nn.Module) -> nn.Module:
        """The module to call for a forward whose parameters get no update in this backward."""


class CycleSR:
    """Holds the networks (possibly wrapped by the engine), the image pools and the loss weights."""

    def __init__(
        self,
        nets: nn.ModuleDict,
        loss: LossConfig,
        pool_seed: int = 0,
        batched_calls: bool | Literal["auto"] = False,
        vega_sr_forwards: bool = False,
        sr_pretrain_on_translated: bool = False,
        clean_lr: tuple[int, str] = (4, "bicubic"),
    ) -> None:
        with_batch_norm = batch_norm_in_batched_calls(nets)
        if batched_calls is True and with_batch_norm:
            raise BadInput(
                f"train.batched_calls concatenates different images in one call, which changes BatchNorm "
                f"statistics; networks with BatchNorm: {with_batch_norm}. Use instance/no norm or "
                "train.batched_calls=false (or auto)"
            )
        if batched_calls == "auto":
            batched_calls = not with_batch_norm
        self.nets = nets
        self.loss = loss
        self.batched_calls = batched_calls
        self.vega_sr_forwards = vega_sr_forwards
        self.sr_pretrain_on_translated = sr_pretrain_on_translated
        self.clean_lr = clean_lr  # (scale, data.hr_to_lr's clean LR): how an HR image becomes G's input
        self.pool_clean = ImagePool(loss.pool_size, seed=2 * pool_seed)  # fakes for D_X
        self.pool_real = ImagePool(loss.pool_size, seed=2 * pool_seed + 1)  # fakes for D_Y
        self.content_kernel = gaussian_kernel(loss.content_low_pass) if loss.content_low_pass > 0 else None
        self.sr_grad_kernel = gaussian_kernel(loss.cycle_sr_low_pass) if loss.cycle_sr_low_pass > 0 else None
        self.fine_cap = None if loss.cycle_sr_fine_cap is None else FineBandCap(loss.cycle_sr_fine_cap)

    # ------------------------------------------------------------------ the update, in the reference's order
    def optimize_parameters(
        self, batch: Batch | list[Batch], stage: Stage, ops: StepOps, cycle_sr_lam: float | None = None
    ) -> dict[str, torch.Tensor]:
        """One step of every group the stage trains (`cycle_sr_lam`: the SR term's weight in G's update this step;
        None = `loss.cycle_sr_lam`). Given a list of k micro-batches, gradients accumulate over
        them (each loss / k) and the result is the update of one k-times larger batch: a D pass over all
        micro-batches (fakes made without a graph), the D steps, then a G (+SR) pass against the *updated*
        discriminators, as in the reference. The price is one extra no-grad G and F forward per micro-batch."""
        batches = batch if isinstance(batch, list) else [batch]
        cycle_sr = self.loss.cycle_sr_lam if cycle_sr_lam is None else cycle_sr_lam
        if stage is Stage.SR_PRETRAIN:
            return self._sr_pretrain_step(batches, ops)
        k = len(batches)
        losses: dict[str, torch.Tensor] = {}

        def accumulate(values: dict[str, torch.Tensor]) -> None:
            for name, value in values.items():
                losses[name] = losses.get(name, 0.0) + value.detach() / k

        translations, fake_reals = [], []
        for b in batches:
            if k == 1:  # one forward serves both passes
                translations.append(self._translate(b))
                fakes = translations[0]
            else:
                with torch.no_grad():
                    fakes = {
                        "fake_real": self.nets["gen_clean_to_real"](b["clean_lr"]),
                        "fake_clean": self.nets["gen_real_to_clean"](b["real_lr"]),
                    }
            if self.vega_sr_forwards:
                self._sr_statistics_forward(fakes["fake_real"], ops)
            fake_reals.append(fakes["fake_real"].detach())
            loss_d_clean, loss_d_real = self._discriminator_losses(b, fakes["fake_clean"], fakes["fake_real"])
            # Disjoint parameters: one backward of the sum gives each D exactly its own loss's gradient.
            ops.backward((loss_d_clean + loss_d_real) / k)
            accumulate({"loss/D_X": loss_d_clean, "loss/D_Y": loss_d_real})
        ops.step("D_X")
        ops.step("D_Y")
        if stage is Stage.JOINT and self.fine_cap is not None:
            factor, excess_db = self.fine_cap.update(torch.cat(fake_reals), torch.cat([b["real_lr"] for b in batches]))
            cycle_sr *= factor
            losses |= {"weight/cycle_sr": cycle_sr, "fine_cap/excess_db": excess_db}

        discs = [self.nets["disc_clean"], self.nets["disc_real"]]
        set_requires_grad(discs, False)
        for i, b in enumerate(batches):
            t = translations[i] if k == 1 else self._translate(b)
            total, values = self._generator_loss(b, t, stage, ops, cycle_sr)
            ops.backward(total / k)
            accumulate(values)
        set_requires_grad(discs, True)
        ops.step("G")
        if stage is Stage.JOINT and self.loss.sr_lam > 0:
            ops.step("SR")
        return losses

    def _translate(self, b: Batch) -> dict[str, torch.Tensor]:
        """G(x), F(G(x)), F(y), G(F(y)); with `batched_calls` also the identities G(y), F(x), from 3 generator
        calls instead of 4 (+2): G on [x; y], F on [y; x; G(x)], G on F(y)."""
        n = self.nets
        x, y = b["clean_lr"], b["real_lr"]
        if self.batched_calls:
            size = x.shape[0]
            fake_real, idt_real = n["gen_clean_to_real"](torch.cat([x, y])).split(size)
            fake_clean, idt_clean, rec_clean = n["gen_real_to_clean"](torch.cat([y, x, fake_real])).split(size)
            return {
                "fake_real": fake_real,
                "rec_clean": rec_clean,
                "fake_clean": fake_clean,
                "rec_real": n["gen_clean_to_real"](fake_clean),
                "idt_real": idt_real,
                "idt_clean": idt_clean,
            }
        fake_real = n["gen_clean_to_real"](x)
        fake_clean = n["gen_real_to_clean"](y)
        return {
            "fake_real": fake_real,
            "rec_clean": n["gen_real_to_clean"](fake_real),
            "fake_clean": fake_clean,
            "rec_real": n["gen_clean_to_real"](fake_clean),
        }

    def _discriminator_losses(
        self, b: Batch, fake_clean: torch.Tensor, fake_real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """D_X and D_Y on real images vs. pooled, detached fakes: 0.5 × (real + fake); with `batched_calls` each
        discriminator scores [real; fake] in one call."""
        losses = []
        for disc, pool, real, fake in (
            (self.nets["disc_clean"], self.pool_clean, b["clean_lr"], fake_clean),
            (self.nets["disc_real"], self.pool_real, b["real_lr"], fake_real),
        ):
            fake = pool.query(fake)
            if self.batched_calls:
                score_real, score_fake = disc(torch.cat([real, fake])).split(real.shape[0])
            else:
                score_real, score_fake = disc(real), disc(fake)
            losses.append(0.5 * (gan_loss(score_real, True) + gan_loss(score_fake, False)))
        return losses[0], losses[1]

    def _generator_loss(
        self, b: Batch, t: dict[str, torch.Tensor], stage: Stage, ops: StepOps, cycle_sr_lam: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Adversarial + cycle + identity (+ the SR term in the joint stage, whose one backward also gives the SR
        net its gradient, and with `sr_real_cycle_lam` the SR net's real-LR cycle, G frozen for it); discriminators
        already frozen. The identities G(y), F(x) come from `t` when `_translate` made them (batched calls)."""
        n, lam = self.nets, self.loss
        clean_lr, real_lr = b["clean_lr"], b["real_lr"]
        idt_real = t["idt_real"] if "idt_real" in t else n["gen_clean_to_real"](real_lr)
        idt_clean = t["idt_clean"] if "idt_clean" in t else n["gen_real_to_clean"](clean_lr)
        loss_gan = gan_loss(ops.frozen(n["disc_real"])(t["fake_real"]), True) + gan_loss(
            ops.frozen(n["disc_clean"])(t["fake_clean"]), True
        )
        loss_cycle = lam.lambda_cycle * (
            self._content(t["rec_clean"], clean_lr) + self._content(t["rec_real"], real_lr)
        )
        loss_idt = (
            lam.lambda_cycle
            * lam.lambda_identity
            * (self._content(idt_real, real_lr) + self._content(idt_clean, clean_lr))
        )
        loss_g = loss_gan + loss_cycle + loss_idt
        values = {"loss/G_gan": loss_gan, "loss/G_cycle": loss_cycle, "loss/G_identity": loss_idt}
        if lam.lambda_spectral > 0:
            values["loss/G_spectral"] = lam.lambda_spectral * spectrum_loss(t["fake_real"], real_lr)
            loss_g = loss_g + values["loss/G_spectral"]
        values["loss/G"] = loss_g
        if stage is not Stage.JOINT:
            return loss_g, values
        loss_sr = self._joint_sr_loss(t["fake_real"], b["hr"], ops, cycle_sr_lam)
        values["loss/SR"] = loss_sr
        total = loss_g + (lam.sr_lam if lam.sr_lam > 0 else cycle_sr_lam) * loss_sr
        if lam.sr_real_cycle_lam > 0 and lam.sr_lam > 0:
            values["loss/SR_real_cycle"] = self._sr_real_cycle_loss(real_lr, ops)
            total = total + lam.sr_real_cycle_lam * values["loss/SR_real_cycle"]
        return total, values

    def _content(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The L1 of the cycle and identity terms: full band, or with `content_low_pass` the low band only. Why
        the option: the L1 of added noise grows linearly with its amplitude, while what a discriminator gains from
        it grows only quadratically from zero, so full-band L1s hold a generator that starts at the identity near
        it (it adds less noise than the real LR has); the low band still pins colours and content."""
        if self.content_kernel is None:
            return F.l1_loss(output, target)
        return F.l1_loss(filter2d(output, self.content_kernel), filter2d(target, self.content_kernel))

    def _joint_sr_loss(
        self, fake_real: torch.Tensor, hr: torch.Tensor, ops: StepOps, cycle_sr_lam: float
    ) -> torch.Tensor:
        """MSE(SR(G(x)), HR), built once for both the G update and the SR update.

        The reference builds SR(G(x)) in the G step with SR's weights requiring grad (computing SR gradients it
        then discards), and in the SR step runs SR(G(x).detach()) forward and backward again on the same input
        and weights. Same input and weights mean the same loss and the same SR gradient, so one forward and one
        backward serve both: the SR net receives sr_lam × ∇MSE, and `scale_grad` hands G cycle_sr_lam × ∇MSE (with
        `cycle_sr_low_pass`, its low band only: the fine band of G's output is then left to the discriminators).
        """
        lam = self.loss
        if lam.sr_lam > 0:
            sr_out = self.nets["sr"](scale_grad(fake_real, cycle_sr_lam / lam.sr_lam, self.sr_grad_kernel))
        else:  # SR not trained: only the G term remains
            sr_out = self._frozen_call("sr", scale_grad(fake_real, 1.0, self.sr_grad_kernel), ops)
        return F.mse_loss(sr_out, hr)

    def _frozen_call(self, name: str, x: torch.Tensor, ops: StepOps) -> torch.Tensor:
        """nets[name](x) with a graph to x but none to the network's own parameters."""
        set_requires_grad([self.nets[name]], False)
        out = ops.frozen(self.nets[name])(x)
        set_requires_grad([self.nets[name]], True)
        return out

    def _sr_real_cycle_loss(self, real_lr: torch.Tensor, ops: StepOps) -> torch.Tensor:
        """The cycle and identity terms' L1 (`_content`) between G(clean LR of SR(y)) and y: the SR net's output for
        a real LR photo, taken down as the HR photos are and degraded by G (frozen for this term, as the
        discriminators are in G's loss), should give that photo back. Why: the supervised term sees only G's
        imitations of the real LR; this one sees the real LR itself, through the degradation G learned. On the low
        band (`content_low_pass`) because in the fine band the way to give y back is to copy its noise into the HR
        output, and G's own noise is a different draw."""
        scale, kind = self.clean_lr
        again = self._frozen_call("gen_clean_to_real", clean_downscale(self.nets["sr"](real_lr), scale, kind), ops)
        return self._content(again, real_lr)

    def _sr_statistics_forward(self, fake_real: torch.Tensor, ops: StepOps) -> None:
        """The SR forward vega makes beyond the ones the losses need: SR(G(x)) in every translation step (weight
        0), and in a joint step its second SR(G(x)) (same input, same weights: the same batch statistics, applied
        to the running ones a second time). Without a graph: only BatchNorm running statistics change."""
        with torch.no_grad():
            ops.frozen(self.nets["sr"])(fake_real.detach())

    def _sr_pretrain_step(self, batches: list[Batch], ops: StepOps) -> dict[str, torch.Tensor]:
        total = 0.0
        weight = self.loss.sr_lam if self.loss.sr_pretrain_lam is None else self.loss.sr_pretrain_lam
        for b in batches:
            lr_input = b["clean_lr"]
            if self.sr_pretrain_on_translated:  # G is frozen in this stage: its output is a fixed degradation
                with torch.no_grad():
                    lr_input = ops.frozen(self.nets["gen_clean_to_real"])(lr_input)
            loss_sr = F.mse_loss(self.nets["sr"](lr_input), b["hr"])
            ops.backward(weight * loss_sr / len(batches))
            total = total + loss_sr.detach() / len(batches)
        ops.step("SR")
        return {"loss/SR": total}

    # ------------------------------------------------------------------ per-rank state for checkpoints
    def state_dict(self) -> dict:
        state = {"pool_clean": self.pool_clean.state_dict(), "pool_real": self.pool_real.state_dict()}
        if self.fine_cap is not None:
            state["fine_cap"] = self.fine_cap.state_dict()
        return state

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.pool_clean.load_state_dict(state["pool_clean"], device)
        self.pool_real.load_state_dict(state["pool_real"], device)
        if self.fine_cap is not None:  # a checkpoint from a run without the cap: its running means start afresh
            self.fine_cap.load_state_dict(state.get("fine_cap", {}), device)

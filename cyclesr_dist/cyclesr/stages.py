"""When each network trains and at which learning rate: the three stages, the four optimizer groups and the
linear decay, all pure functions of the epoch (no scheduler state to checkpoint)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..config import LossConfig, OptimConfig, StageConfig


class Stage(enum.Enum):
    TRANSLATION = "translation"  # G/F/D only; the SR loss has weight 0 and the SR net is not run
    # SR on (clean LR, HR), or on (G(clean LR), HR) with stages.sr_pretrain_input=translated; G/F/D at learning
    # rate 0 (run only to make that input)
    SR_PRETRAIN = "sr_pretrain"
    JOINT = "joint"  # everything, with the SR loss flowing back into G


def stage_for_epoch(epoch: int, stages: StageConfig) -> Stage:
    """`epoch` counts from 1, as in the reference."""
    if epoch < stages.sr_pretrain_epoch:
        return Stage.TRANSLATION
    if epoch < stages.joint_epoch:
        return Stage.SR_PRETRAIN
    return Stage.JOINT


def lr_factor(epoch: int, optim: OptimConfig) -> float:
    """1 for epochs 1..n_epoch, then falling linearly per epoch, floor 0: by 1/(n_epoch_decay+1) (CycleGAN's rule)
    or by 1/n_epoch_decay (vega's, `optim.lr_rule: vega`: epoch n_epoch + n_epoch_decay runs at 0)."""
    decayed = max(0, epoch - optim.n_epoch)
    if decayed == 0:
        return 1.0
    steps = optim.n_epoch_decay + 1 if optim.lr_rule == "cyclegan" else optim.n_epoch_decay
    return max(0.0, 1.0 - decayed / float(max(steps, 1)))


def cycle_sr_weight(epoch: int, stages: StageConfig, loss: LossConfig, optim: OptimConfig) -> float:
    """The SR term's weight in G's update at `epoch`: `loss.cycle_sr_lam`, or with `cycle_sr_lam_final` set a
    geometric move from it (first joint epoch) to that (last epoch). Geometric because the measured effect of the
    weight is even in its logarithm: 300 sits halfway between 100 and 1000 in log and gave half their difference."""
    start, final = loss.cycle_sr_lam, loss.cycle_sr_lam_final
    if final is None or final == start:
        return start
    last = optim.n_epoch + optim.n_epoch_decay
    t = min(1.0, max(0.0, (epoch - stages.joint_epoch) / float(max(last - stages.joint_epoch, 1))))
    return start * (final / start) ** t


@dataclass(frozen=True)
class NetworkGroup:
    """One optimizer and the networks it updates."""

    name: str
    networks: tuple[str, ...]
    base_lr: float

    def lr(self, epoch: int, stages: StageConfig, optim: OptimConfig) -> float:
        """0 for the groups a stage does not train (so the logged rate says what happens; vega sets the same 0s)."""
        stage = stage_for_epoch(epoch, stages)
        if (stage is Stage.SR_PRETRAIN and self.name != "SR") or (stage is Stage.TRANSLATION and self.name == "SR"):
            return 0.0
        return self.base_lr * lr_factor(epoch, optim)


def network_groups(optim: OptimConfig) -> list[NetworkGroup]:
    """The reference's four Adam optimizers: G and F together, each discriminator, the SR net."""
    return [
        NetworkGroup("G", ("gen_clean_to_real", "gen_real_to_clean"), optim.cyc_lr),
        NetworkGroup("D_X", ("disc_clean",), optim.cyc_lr),
        NetworkGroup("D_Y", ("disc_real",), optim.cyc_lr),
        NetworkGroup("SR", ("sr",), optim.sr_lr),
    ]

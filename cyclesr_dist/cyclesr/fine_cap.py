"""Not in the reference (`loss.cycle_sr_fine_cap`): a cap on how far the SR term may push G's fine band above the
real LR's.

Why: in the joint stage the SR term pulls G towards whatever helps the SR net, which raises the fine-band energy of
G's output (detail that survives G's own JPEG) above the real LR photos'; the discriminators, at weight 1 against
the term's 1000, do not hold G back. Comparing G's output with the real LR needs no pairs: both are in every step's
batch. The fine band is the one the discriminators judge (x − blur₁(x)). Measured, the excess appears on every kind
of data, where the pull helps the SR net as well as where it harms it, so a cap at 0 dB weakens the pull everywhere
(docs/quality.md `cap0`); at 2 dB (configs/demo.yaml, configs/cyclesr.yaml) it keeps the pull's full weight early in
the joint stage and stops only its runaway, the better recipe on the quality suite, chosen leave-one-operator-out
(docs/quality.md `cap2`). The key's default is unset (the reference's constant weight).
"""

from __future__ import annotations

import torch

from ..torch_utils import filter2d, gaussian_kernel

FINE_BAND_SIGMA = 1.0  # LR px: the discriminators' high-pass band
# Running means over about 50 steps: one batch of a few small crops says little (a textured crop against a flat one
# moves its fine-band energy by several dB), and G drifts over hundreds of steps.
EMA_DECAY = 0.98


def fine_band_energy(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Mean square of images − blur(images) over pixels, channels and the batch."""
    return (images - filter2d(images, kernel)).pow(2).mean()


class FineBandCap:
    """Per rank: running means of the fine-band energy of G's output and of the real LR crops of the joint
    stage's steps, and the factor for the SR term's weight in G's update: 1 while G's energy exceeds the real LR's
    by at most `cap_db`, falling tenfold per dB beyond (steep, so that the cap acts as a bound on the excess).
    Tensors throughout: the step never waits for the device to read them."""

    def __init__(self, cap_db: float) -> None:
        self.cap_db = cap_db
        self.kernel = gaussian_kernel(FINE_BAND_SIGMA)
        self.energy: dict[str, torch.Tensor] = {}  # "fake_real", "real_lr"; empty until the first joint step

    def update(self, fake_real: torch.Tensor, real_lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the weight's factor, G's fine-band excess over the real LR in dB) after this step's batch."""
        # float32 whatever the step's autocast: a running mean in bf16 would lose its 2 % updates to rounding
        kernel = self.kernel.to(fake_real.device)
        with torch.autocast(fake_real.device.type, enabled=False):
            for name, images in (("fake_real", fake_real.detach()), ("real_lr", real_lr)):
                now = fine_band_energy(images.float(), kernel)
                self.energy[name] = (
                    EMA_DECAY * self.energy[name] + (1 - EMA_DECAY) * now if name in self.energy else now
                )
        fake, real = (self.energy[name].clamp_min(1e-12) for name in ("fake_real", "real_lr"))
        excess_db = 10 * torch.log10(fake / real)
        return (10.0 ** (self.cap_db - excess_db)).clamp(max=1.0), excess_db

    def state_dict(self) -> dict:
        return dict(self.energy)

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.energy = {k: v.to(device) for k, v in state.items()}

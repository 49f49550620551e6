"""configs/vega.yaml IS the reference: the project's step, driven as the trainer drives it, against a literal
transcription of vega's update code (tests/vega_transcript.py), on the same initial weights and the same batches.

Project side: configs/vega.yaml with tiny widths (same structure), `CycleSRSpec` (optimizer groups, learning rates
from the stage schedule), the DDP backend's `OptimizerOps` (clipping, `clip_per_network`) and
`CycleSRModel.train_step`, called as `Trainer.train_step` calls them. Vega side: `VegaCycleSR.optimize_CycleSR`
inside vega's epoch loop (cyclesr_trainer_callback.py: CyclesrTrainerCallback._train_loop / _train:
`update_learning_rate(epoch, ...)` at the top of each epoch, then `set_mode('train')` + `optimize_CycleSR` per
batch). After every step: all five networks' parameters and buffers (BatchNorm running statistics included) and
all four Adam states must agree.

Epochs of 3 steps, so the run crosses both stage transitions (epochs 1-5 translation, 6 SR pre-training,
7+ joint: vega's literal thresholds) with ≥ 3 steps in each stage.

Pools. Vega's ShuffleBuffer draws from python's `random`, the project's pool from its own torch generator; the
two streams cannot be the same numbers. Two regimes cover it: (a) a pool larger than all fakes ever seen, where
neither side draws (pure pass-through, vega's own `random`); (b) a full pool of 2, where the transcribed
ShuffleBuffer is handed a source whose `uniform(0, 1)` / `randint(0, n - 1)` read the project pool's torch
generator (same seed, same draws, in the same order): the decision logic is then compared exactly.

Precision: float64, both sides. A conv bias right before a non-affine InstanceNorm (in G and D, vega's and ours)
has an exact gradient of 0; in float32 its computed gradient is rounding noise (~1e-7), which Adam divides by its
own RMS and turns into lr-sized steps. So in float32 two correct implementations that sum the same gradient terms
in another order (one D backward for both discriminators, the losses added in another order) drift apart from the
second step (checked once by hand: at step 2 only those biases differ, then everything follows, ~1e-3 by step
24). In float64 the noise (~1e-16) is far below Adam's eps and the comparison is sharp: the live parameters and
Adam states agree to ~1e-17, the dead biases to ~1e-9 (ATOL 1e-7). A real difference (clipping G and F as one,
pre-training weight 1000, other BatchNorm statistics) shows from its first step (test below).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from vega_transcript import VegaCycleSR

from cyclesr_dist.config import Config, load_config
from cyclesr_dist.cyclesr.spec import CycleSRSpec
from cyclesr_dist.data.images import to_value_range
from cyclesr_dist.engine.backends import prepare_backend

VEGA_YAML = Path(__file__).resolve().parents[1] / "configs" / "vega.yaml"
STEPS_PER_EPOCH = 3
EPOCHS = 9  # 5 translation, 1 SR pre-training, 3 joint; the learning rates decay over epochs 8 and 9
BATCH, LR_SIZE, SCALE = 2, 24, 4  # 24 px: the 5-conv PatchGAN's smallest input with a non-empty patch map
# float64. Every parameter but the dead biases (see the docstring) agrees to ~1e-17; those drift to ~1e-9.
ATOL = 1e-7


def tiny_vega(*overrides: str) -> Config:
    """configs/vega.yaml, tiny widths and depths (same structure: norms, paddings, heads, clipping, weights)."""
    return load_config(
        VEGA_YAML,
        [
            "model.generator.args.ngf=8",
            "model.generator.args.n_blocks=2",
            "model.discriminator.args.ndf=8",
            "model.discriminator.args.head_channels=8",  # vega's head has ndf channels
            "model.sr.args.nf=8",
            "model.sr.args.nb=2",
            f"data.steps_per_epoch={STEPS_PER_EPOCH}",
            f"data.batch_size={BATCH}",
            "optim.n_epoch=7",  # epoch 8 at half the rate, epoch 9 at vega's final 0
            "optim.n_epoch_decay=2",
            "wandb.mode=disabled",
            *overrides,
        ],
    )


def batches(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Images in [-1, 1] as the project's loaders give them (vega gets `to_vega`'s [0, 1] view): HR, its bicubic
    ×4 downscale, an unrelated real LR."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        hr = torch.rand(BATCH, 3, LR_SIZE * SCALE, LR_SIZE * SCALE, generator=g)
        clean = F.interpolate(hr, scale_factor=1 / SCALE, mode="bicubic", antialias=True).clamp(0, 1)
        real = torch.rand(BATCH, 3, LR_SIZE, LR_SIZE, generator=g)
        out.append({k: v * 2 - 1 for k, v in {"hr": hr, "clean_lr": clean, "real_lr": real}.items()})
    return out


def to_vega(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """vega's data range, [0, 1] (its `to_tensor`), fixed here whatever the config says: the project must map its
    [-1, 1] batches to it (`data.value_range`) for the two sides to agree. The same function the project uses,
    so both sides see the same floats."""
    return {k: to_value_range(v, (0.0, 1.0)) for k, v in batch.items()}


class TorchDraws:
    """python-`random`-shaped view of a torch generator that draws what `ImagePool.query` draws: a uniform for the
    swap decision, then an index in [0, n)."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)

    def uniform(self, a: float, b: float) -> float:
        assert (a, b) == (0, 1)
        return torch.rand((), generator=self.g).item()

    def randint(self, a: int, b: int) -> int:  # inclusive, like random.randint
        return int(torch.randint(a, b + 1, (), generator=self.g))


class Project:
    """The trainer-side pieces, stepped as `Trainer.train_step` steps them."""

    def __init__(self, config: Config, dtype: torch.dtype) -> None:
        torch.manual_seed(config.seed)
        self.spec = CycleSRSpec(config)
        nets = self.spec.build_networks().to(dtype)
        self.initial = copy.deepcopy(nets)
        self.backend = prepare_backend(nets, self.spec.build_optimizers(nets), self.spec.network_groups(), config)
        self.model = self.spec.build_model(self.backend.nets, self.backend.raw_nets, rank=0)
        self.step_count = 0

    def step(self, micro_batches: list[dict[str, torch.Tensor]]) -> None:
        self.backend.set_learning_rates(self.spec.learning_rates(self.step_count))
        with self.backend.autocast():
            self.model.train_step(micro_batches, self.step_count, self.backend.ops)
        self.step_count += 1


def vega_from(project: Project, config: Config, draws: bool) -> VegaCycleSR:
    n = copy.deepcopy(project.initial)
    loss, o = config.loss, config.optim
    cfg = {
        "cyc_lr": o.cyc_lr,
        "SR_lr": o.sr_lr,
        "lambda_identity": loss.lambda_identity,
        "lambda_cycle": loss.lambda_cycle,
        "buffer_size": loss.pool_size,
        "grad_clip": o.grad_clip,
        "SR_lam": loss.sr_lam,
        "cycleSR_lam": loss.cycle_sr_lam,
    }
    rngs = {}
    if draws:  # the project seeds pool_clean (D_X) with 2·s and pool_real (D_Y) with 2·s + 1, s = seed·1000 + rank
        s = config.seed * 1000
        rngs = {"rng_X": TorchDraws(2 * s), "rng_Y": TorchDraws(2 * s + 1)}
    return VegaCycleSR(
        n["gen_clean_to_real"], n["gen_real_to_clean"], n["disc_clean"], n["disc_real"], n["sr"], cfg, **rngs
    )


def vega_nets(v: VegaCycleSR) -> dict[str, torch.nn.Module]:
    return {"gen_clean_to_real": v.netG, "gen_real_to_clean": v.netF, "disc_clean": v.netD_X,
            "disc_real": v.netD_Y, "sr": v.netSR}  # fmt: skip


def differences(project: Project, vega: VegaCycleSR, atol: float = ATOL) -> list[str]:
    """Every parameter, buffer and Adam state entry that differs by more than `atol`."""
    bad = []
    ours, theirs = project.backend.raw_nets, vega_nets(vega)
    for name, net in theirs.items():
        mine = ours[name].state_dict()
        for key, value in net.state_dict().items():
            if not torch.allclose(mine[key].double(), value.double(), rtol=0, atol=atol):
                bad.append(f"{name}.{key}: max |diff| {(mine[key].double() - value.double()).abs().max():.3g}")
    vega_opts = {"G": vega.optimizer_G, "D_X": vega.optimizer_D_X, "D_Y": vega.optimizer_D_Y, "SR": vega.optimizer_SR}
    for group, opt in vega_opts.items():
        mine_opt = project.backend.optimizers[group]
        mine_params = [p for g in mine_opt.param_groups for p in g["params"]]
        their_params = [p for g in opt.param_groups for p in g["params"]]
        assert len(mine_params) == len(their_params), group
        for i, (p, q) in enumerate(zip(mine_params, their_params, strict=True)):
            a, b = mine_opt.state.get(p, {}), opt.state.get(q, {})
            if a.keys() != b.keys():
                bad.append(f"Adam {group}[{i}]: state keys {sorted(a)} vs {sorted(b)}")
                continue
            for key in a:
                diff = (a[key].double() - b[key].double()).abs().max()
                if diff > atol:
                    bad.append(f"Adam {group}[{i}].{key}: max |diff| {diff:.3g}")
        mine_lrs = {g["lr"] for g in mine_opt.param_groups}
        their_lrs = {g["lr"] for g in opt.param_groups}
        if mine_lrs != their_lrs:
            bad.append(f"lr {group}: {mine_lrs} vs {their_lrs}")
    return bad


def run_both(
    config: Config,
    draws: bool = False,
    micro: int = 1,
    epochs: int = EPOCHS,
    dtype: torch.dtype = torch.float64,
    atol: float = ATOL,
    stop_at_first: bool = False,
) -> list[tuple[int, list[str]]]:
    """Both sides over `epochs` epochs; returns (step, differences) for every step where they disagree."""
    project = Project(config, dtype)
    vega = vega_from(project, config, draws)
    assert not differences(project, vega), "the two sides must start from the same weights"
    data = [{k: v.to(dtype) for k, v in b.items()} for b in batches(epochs * STEPS_PER_EPOCH)]
    mismatches = []
    o = config.optim
    for epoch in range(1, epochs + 1):  # vega: range(epoch_count=1, n_epoch + n_epoch_decay + 1)
        vega.update_learning_rate(epoch, o.cyc_lr, o.sr_lr, o.n_epoch, o.n_epoch_decay)
        for _ in range(STEPS_PER_EPOCH):
            b = data[project.step_count]
            for net in vega_nets(vega).values():  # vega: model.set_mode('train') before every batch
                net.train()
            v = to_vega(b)
            vega.optimize_CycleSR({"X": v["clean_lr"], "Y": v["real_lr"], "HR": v["hr"]}, epoch)
            size = BATCH // micro
            project.step([{k: v[i * size : (i + 1) * size] for k, v in b.items()} for i in range(micro)])
            bad = differences(project, vega, atol)
            if bad:
                mismatches.append((project.step_count, bad))
                if stop_at_first:
                    return mismatches
    return mismatches


def assert_same(mismatches: list[tuple[int, list[str]]]) -> None:
    if mismatches:
        step, bad = mismatches[0]
        pytest.fail(f"first difference after step {step} ({len(mismatches)} steps differ): " + "; ".join(bad[:8]))


# ---------------------------------------------------------------------------------------------- the comparisons
@pytest.mark.parametrize("pool", ["pass_through", "full"])
def test_vega_yaml_steps_like_vega(pool: str):
    """configs/vega.yaml (SR BatchNorm and its statistics, per-network clipping, pre-training weight 1, the stage
    learning rates) step for step through translation -> SR pre-training -> joint."""
    size = 1000 if pool == "pass_through" else 2  # 1000 > the 48 fakes each pool sees
    assert_same(run_both(tiny_vega(f"loss.pool_size={size}"), draws=pool == "full"))


@pytest.mark.parametrize(
    "change",
    [
        "optim.clip_per_network=false",  # G and F clipped as one: differs from step 1 (the G norm is ~85 > 50)
        "loss.sr_pretrain_lam=1000",  # the project's default weight: differs from the first pre-training step
        "train.sr_forwards=needed",  # the SR BatchNorm running statistics differ from step 1
        "data.value_range=[-1,1]",  # the project's default range: every loss weight means something else
    ],
)
def test_the_comparison_sees_each_vega_setting(change: str):
    """The comparison can fail: switch off one of configs/vega.yaml's vega settings and it does."""
    mismatches = run_both(tiny_vega("loss.pool_size=2", change), draws=True, stop_at_first=True)
    assert mismatches, f"{change} should make the project differ from vega"


def test_the_full_pool_regime_swaps_images():
    """With vega's own python `random` the full pool swaps other images than the project's pool: the pool is
    engaged in the `full` case above, so matching its draws there is what made the two agree."""
    assert run_both(tiny_vega("loss.pool_size=2"), draws=False, stop_at_first=True)


@pytest.mark.parametrize("batched", ["true", "false"])
def test_batched_or_separate_calls_step_like_vega(batched):
    """vega.yaml's `batched_calls: auto` is on (G, F and the Ds use instance norm; the SR net, with vega's
    BatchNorm, is never called on concatenated batches), so the other tests run batched calls; vega's own separate
    calls step the same way."""
    config = tiny_vega("loss.pool_size=2", f"train.batched_calls={batched}")
    assert config.model.sr.args["norm"] == "batch"
    assert_same(run_both(config, draws=True))


def test_gradient_accumulation_steps_like_vega():
    """Two micro-batches of 1 on the project side, vega's batch of 2 on the other: the same updates. Not with the
    SR net's BatchNorm (a micro-batch has other batch statistics than the batch), so here the SR net has no norm."""
    config = tiny_vega("loss.pool_size=2", "train.gradient_accumulation_steps=2", "model.sr.args.norm=none")
    assert_same(run_both(config, draws=True, micro=2))

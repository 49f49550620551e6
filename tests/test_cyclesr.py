"""The joint step: optimizer ownership, gradient routing per stage, equivalence with the reference structure,
the image pool and the learning-rate schedule."""

from __future__ import annotations

import copy

import pytest
import torch

from cyclesr_dist.config import OptimConfig, StageConfig
from cyclesr_dist.cyclesr import (
    CycleSR,
    ImagePool,
    Stage,
    build_networks,
    build_optimizers,
    cycle_sr_weight,
    network_groups,
    stage_for_epoch,
)
from cyclesr_dist.cyclesr.spec import CycleSRSpec
from cyclesr_dist.data.images import clean_downscale
from cyclesr_dist.engine.backends.base import OptimizerOps
from cyclesr_dist.errors import BadInput
from cyclesr_dist.testing import random_batch, reference_optimize_parameters, tiny_config
from cyclesr_dist.torch_utils import filter2d, gaussian_kernel


def make_model(seed: int = 0, **overrides: str):
    torch.manual_seed(seed)
    config = tiny_config(**overrides)
    nets = build_networks(config.model)
    return config, CycleSR(nets, config.loss, pool_seed=seed), build_optimizers(nets, config.optim)


class RecordingOps(OptimizerOps):
    """Real clip/step, plus a snapshot of every parameter's gradient at the moment each group steps."""

    def __init__(self, optimizers, grad_clip, nets):
        super().__init__(optimizers, grad_clip)
        self.nets = nets
        self.at_step: dict[str, dict[str, list]] = {}

    def step(self, group: str) -> None:
        self.at_step[group] = {
            name: [None if p.grad is None else p.grad.clone() for p in net.parameters()]
            for name, net in self.nets.items()
        }
        super().step(group)


def test_each_optimizer_holds_exactly_its_networks():
    config, model, optimizers = make_model()
    for group in network_groups(config.optim):
        held = {id(p) for g in optimizers[group.name].param_groups for p in g["params"]}
        own = {id(p) for n in group.networks for p in model.nets[n].parameters()}
        assert held == own, group.name
    assert set(optimizers) == {"G", "D_X", "D_Y", "SR"}
    assert optimizers["G"].defaults["betas"] == (0.5, 0.999)


def test_g_step_leaves_discriminators_alone_and_sr_gets_only_its_own_gradient():
    config, model, optimizers = make_model()
    batch = random_batch()
    ops = RecordingOps(optimizers, 0.0, model.nets)  # no clipping: compare raw gradients
    sr_before = copy.deepcopy(model.nets["sr"])
    model.optimize_parameters(batch, Stage.JOINT, ops)
    at_g = ops.at_step["G"]
    # The discriminators were stepped and zeroed before the G backward; it must not have produced gradients.
    assert all(g is None for g in at_g["disc_clean"] + at_g["disc_real"])
    # SR's gradient when G steps is exactly the SR step's gradient: sr_lam × ∇ MSE(SR(G(x).detach()), HR).
    # G has been stepped since; rebuild G(x) with the weights it had, from a fresh copy of the initial model.
    _, fresh, _ = make_model()
    fake_real = fresh.nets["gen_clean_to_real"](batch["clean_lr"]).detach()
    loss = config.loss.sr_lam * torch.nn.functional.mse_loss(sr_before(fake_real), batch["hr"])
    expected = torch.autograd.grad(loss, list(sr_before.parameters()))
    for got, want in zip(at_g["sr"], expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def _g_grads(stage: Stage, cycle_sr_lam: float):
    config, model, optimizers = make_model(**{"loss.cycle_sr_lam": str(cycle_sr_lam)})
    ops = RecordingOps(optimizers, 0.0, model.nets)
    model.optimize_parameters(random_batch(), stage, ops)
    return torch.cat([g.flatten() for g in ops.at_step["G"]["gen_clean_to_real"]])


def test_sr_loss_reaches_generator_only_in_joint_stage():
    joint_with, joint_without = _g_grads(Stage.JOINT, 1000.0), _g_grads(Stage.JOINT, 0.0)
    assert (joint_with - joint_without).abs().max() > 1e-3
    trans_with, trans_without = _g_grads(Stage.TRANSLATION, 1000.0), _g_grads(Stage.TRANSLATION, 0.0)
    torch.testing.assert_close(trans_with, trans_without, rtol=0, atol=0)
    torch.testing.assert_close(trans_without, joint_without, rtol=1e-5, atol=1e-7)


def test_with_sr_lam_zero_g_still_learns_through_a_frozen_sr_net():
    """loss.sr_lam 0 (the SR net not trained in the joint stage): G's gradient still carries cycle_sr_lam ×
    ∇MSE(SR(G(x)), HR), the same as when the SR net trains, while the SR net gets no gradient and does not move."""
    batch, quiet = random_batch(), {"model.generator.args.noise_channels": "0"}  # no random draws in G
    grads = {}
    for sr_lam, cycle_sr_lam in (("0", "1000"), ("1000", "1000"), ("0", "0")):
        _, model, optimizers = make_model(**quiet, **{"loss.sr_lam": sr_lam, "loss.cycle_sr_lam": cycle_sr_lam})
        sr_before = copy.deepcopy(model.nets["sr"])
        ops = RecordingOps(optimizers, 0.0, model.nets)
        model.optimize_parameters(batch, Stage.JOINT, ops)
        grads[sr_lam, cycle_sr_lam] = torch.cat([g.flatten() for g in ops.at_step["G"]["gen_clean_to_real"]])
        if sr_lam == "0":
            assert "SR" not in ops.at_step and all(g is None for g in ops.at_step["G"]["sr"])
            for moved, kept in zip(
                model.nets["sr"].state_dict().values(), sr_before.state_dict().values(), strict=True
            ):
                torch.testing.assert_close(moved, kept, rtol=0, atol=0)
    torch.testing.assert_close(grads["0", "1000"], grads["1000", "1000"], rtol=1e-4, atol=1e-6)
    assert (grads["0", "1000"] - grads["0", "0"]).abs().max() > 1e-3


def test_cycle_sr_lam_final_moves_g_s_sr_weight_geometrically_over_the_joint_stage():
    """loss.cycle_sr_lam_final: the SR term's weight in G's update goes from cycle_sr_lam at the first joint epoch
    to the final value at the last epoch, geometrically, and the trainer's step uses the weight of its epoch."""
    schedule = {"stages.sr_pretrain_epoch": "2", "stages.joint_epoch": "3", "optim.n_epoch": "4"}
    schedule |= {"optim.n_epoch_decay": "3", "data.steps_per_epoch": "10"}  # epochs 3..7 are joint, 7 the last
    config = tiny_config(**schedule, **{"loss.cycle_sr_lam_final": "100"})
    weights = [cycle_sr_weight(e, config.stages, config.loss, config.optim) for e in (3, 5, 7, 9)]
    assert weights == pytest.approx([1000.0, 1000.0 * 0.1**0.5, 100.0, 100.0])
    constant = tiny_config(**schedule)
    assert cycle_sr_weight(7, constant.stages, constant.loss, constant.optim) == 1000.0

    _, model, optimizers = make_model(**schedule, **{"loss.cycle_sr_lam_final": "100"})
    trainer_model = CycleSRSpec(config).build_model(model.nets, model.nets, 0)
    ops = RecordingOps(optimizers, 0.0, model.nets)
    torch.manual_seed(5)
    trainer_model.train_step([random_batch()], 40, ops)  # step 40 runs in epoch 5
    got = torch.cat([g.flatten() for g in ops.at_step["G"]["gen_clean_to_real"]])
    for weight, same in ((weights[1], True), (1000.0, False)):
        _, fixed, fixed_optimizers = make_model(**{"loss.cycle_sr_lam": str(weight)})
        fixed_ops = RecordingOps(fixed_optimizers, 0.0, fixed.nets)
        torch.manual_seed(5)
        fixed.optimize_parameters(random_batch(), Stage.JOINT, fixed_ops)
        want = torch.cat([g.flatten() for g in fixed_ops.at_step["G"]["gen_clean_to_real"]])
        assert (((got - want).norm() / want.norm()) < 1e-4) == same, weight  # float order: not bitwise


def test_cycle_sr_low_pass_hands_g_only_the_low_band_of_the_sr_term_s_gradient():
    """loss.cycle_sr_low_pass σ: G's gradient is its own terms' plus cycle_sr_lam × the SR MSE's gradient at G(x)
    blurred by the Gaussian of σ, exactly; the SR net's own gradient is the same as without it. In float64: here
    G's own terms' gradient is 10⁴ times the SR term's, which a float32 difference of two runs would not resolve."""
    batch, quiet = random_batch(), {"model.generator.args.noise_channels": "0"}  # no random draws in G
    batch = {k: v.double() for k, v in batch.items()}
    grads = {}
    for low_pass, cycle_sr_lam in (("0", "0"), ("1.5", "1000"), ("0", "1000")):
        weights = {"loss.cycle_sr_low_pass": low_pass, "loss.cycle_sr_lam": cycle_sr_lam}
        _, model, optimizers = make_model(**quiet, **weights)
        model.nets.double()
        gen, sr = copy.deepcopy(model.nets["gen_clean_to_real"]), copy.deepcopy(model.nets["sr"])  # before the step
        ops = RecordingOps(optimizers, 0.0, model.nets)
        model.optimize_parameters(batch, Stage.JOINT, ops)
        grads[low_pass, cycle_sr_lam] = {
            name: torch.cat([g.flatten() for g in ops.at_step[group][name]])
            for group, name in (("G", "gen_clean_to_real"), ("SR", "sr"))
        }
    fake_real = gen(batch["clean_lr"])
    at_fake = fake_real.detach().requires_grad_()
    sr_grad = torch.autograd.grad(torch.nn.functional.mse_loss(sr(at_fake), batch["hr"]), [at_fake])[0]
    low = filter2d(sr_grad, gaussian_kernel(1.5))
    want = torch.cat([g.flatten() for g in torch.autograd.grad(fake_real, list(gen.parameters()), 1000 * low)])
    got = grads["1.5", "1000"]["gen_clean_to_real"] - grads["0", "0"]["gen_clean_to_real"]
    assert (got - want).norm() < 1e-6 * want.norm()
    full = grads["0", "1000"]["gen_clean_to_real"] - grads["0", "0"]["gen_clean_to_real"]
    assert (full - got).norm() > 0.1 * full.norm()  # the fine band was there, and is gone
    torch.testing.assert_close(grads["1.5", "1000"]["sr"], grads["0", "1000"]["sr"], rtol=1e-5, atol=1e-7)


def test_sr_real_cycle_trains_only_the_sr_net_on_the_real_lr():
    """loss.sr_real_cycle_lam adds w × L1(G(clean LR of SR(y)), y) (the cycle terms' L1) to the SR net's gradient
    in the joint stage, exactly; G is frozen for it (its gradient is the one without the term)."""
    grads, quiet = {}, {"model.generator.args.noise_channels": "0"}  # a G without random draws: exact gradients
    batch = random_batch()
    for lam in ("0", "10"):
        _, model, optimizers = make_model(**quiet, **{"loss.sr_real_cycle_lam": lam})
        gen, sr = copy.deepcopy(model.nets["gen_clean_to_real"]), copy.deepcopy(model.nets["sr"])  # before the step
        ops = RecordingOps(optimizers, 0.0, model.nets)
        losses = model.optimize_parameters(batch, Stage.JOINT, ops)
        assert ("loss/SR_real_cycle" in losses) == (lam == "10")
        grads[lam] = {
            name: torch.cat([g.flatten() for g in ops.at_step[group][name]])
            for group, name in (("G", "gen_clean_to_real"), ("G", "gen_real_to_clean"), ("SR", "sr"))
        }
    for name in ("gen_clean_to_real", "gen_real_to_clean"):
        torch.testing.assert_close(grads["10"][name], grads["0"][name], rtol=1e-5, atol=1e-7)
    real_lr = batch["real_lr"]
    term = 10 * torch.nn.functional.l1_loss(gen(clean_downscale(sr(real_lr), 4, "bicubic")), real_lr)
    want = torch.cat([g.flatten() for g in torch.autograd.grad(term, list(sr.parameters()))])
    assert want.abs().max() > 1e-4
    torch.testing.assert_close(grads["10"]["sr"] - grads["0"]["sr"], want, rtol=1e-3, atol=1e-6)


def test_spectral_term_reaches_g_only_and_only_when_weighted():
    """lambda_spectral adds `spectrum_loss(G(x), y)` to G's loss: it changes G's gradient, never F's."""
    grads = {}
    for lam in ("0", "1"):
        config, model, optimizers = make_model(**{"loss.lambda_spectral": lam})
        ops = RecordingOps(optimizers, 0.0, model.nets)
        losses = model.optimize_parameters(random_batch(), Stage.TRANSLATION, ops)
        assert ("loss/G_spectral" in losses) == (lam == "1")
        grads[lam] = {
            n: torch.cat([g.flatten() for g in ops.at_step["G"][n]]) for n in ("gen_clean_to_real", "gen_real_to_clean")
        }
    assert (grads["1"]["gen_clean_to_real"] - grads["0"]["gen_clean_to_real"]).abs().max() > 1e-4
    torch.testing.assert_close(grads["1"]["gen_real_to_clean"], grads["0"]["gen_real_to_clean"], rtol=0, atol=0)


def test_content_low_pass_makes_cycle_and_identity_blind_to_the_fine_band_only():
    """With loss.content_low_pass a pixel-level pattern (noise, JPEG grain) costs the cycle/identity L1 almost
    nothing, a change of colour costs it in full; the step's cycle and identity losses use that L1."""
    _, full, _ = make_model()
    _, low, _ = make_model(**{"loss.content_low_pass": "1.0"})
    target = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rows, cols = torch.meshgrid(torch.arange(24), torch.arange(24), indexing="ij")
    checker = 0.1 * (1 - 2 * ((rows + cols) % 2)).float()
    assert full._content(target + checker, target) == pytest.approx(0.1, rel=1e-4)
    assert low._content(target + checker, target) < 0.01
    assert low._content(target + 0.1, target) == pytest.approx(0.1, rel=1e-4)
    losses = {}
    for name, model_and_opts in (("full", make_model()), ("low", make_model(**{"loss.content_low_pass": "1.0"}))):
        _, model, optimizers = model_and_opts
        losses[name] = model.optimize_parameters(random_batch(), Stage.TRANSLATION, OptimizerOps(optimizers, 0.0))
    for term in ("loss/G_cycle", "loss/G_identity"):
        assert losses["low"][term] < 0.9 * losses["full"][term], term
    torch.testing.assert_close(losses["low"]["loss/D_Y"], losses["full"]["loss/D_Y"])


def test_translation_stage_does_not_touch_sr_and_pretrain_touches_only_sr():
    config, model, optimizers = make_model()
    before = copy.deepcopy(model.nets.state_dict())
    model.optimize_parameters(random_batch(), Stage.TRANSLATION, OptimizerOps(optimizers, 50.0))
    after = model.nets.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("sr."))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("gen_clean_to_real."))
    before = copy.deepcopy(after)
    model.optimize_parameters(random_batch(), Stage.SR_PRETRAIN, OptimizerOps(optimizers, 50.0))
    after = model.nets.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"sr"}


@pytest.mark.parametrize("stage", list(Stage))
@pytest.mark.parametrize("lams", [(1000.0, 1000.0), (1000.0, 250.0)])
def test_optimised_step_equals_reference_structure(stage, lams):
    sr_lam, cycle_sr_lam = lams
    overrides = {"loss.sr_lam": str(sr_lam), "loss.cycle_sr_lam": str(cycle_sr_lam)}
    _, ours, our_opts = make_model(**overrides)
    config, ref, ref_opts = make_model(**overrides)
    for i in range(3):  # several iterations: pools fill and swap, Adam state builds up
        batch = random_batch(seed=i)
        ours.optimize_parameters(batch, stage, OptimizerOps(our_opts, config.optim.grad_clip))
        reference_optimize_parameters(ref, batch, stage, ref_opts, config.optim.grad_clip)
    # Compare what the networks compute, not raw weights: a conv bias right before an affine-free InstanceNorm
    # has a mathematically zero gradient, so Adam walks it on float round-off, differently for any change in
    # summation order, while the normalisation cancels it exactly.
    probe = random_batch(seed=99)
    with torch.no_grad():
        for name in ours.nets:
            x = probe["real_lr"]
            torch.testing.assert_close(ours.nets[name](x), ref.nets[name](x), rtol=1e-4, atol=1e-5, msg=name)


def test_image_pool_fills_then_swaps_and_checkpoints():
    pool = ImagePool(3, seed=0)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: the images come straight back
    assert pool.filled == 3
    state = pool.state_dict()
    new = torch.arange(100.0, 150.0).view(50, 1, 1, 1)
    out = pool.query(new)
    swapped = (out != new).flatten()
    # With p=0.5 per image, roughly half come from history; the pool never exceeds its size.
    assert 10 < int(swapped.sum()) < 40 and pool.filled == 3 and len(pool.state_dict()["images"]) == 3
    # Restoring the state reproduces the same choices.
    again = ImagePool(3, seed=123)
    again.load_state_dict(state)
    assert torch.equal(again.query(new), out)
    assert torch.equal(ImagePool(0, seed=0).query(new), new)


class PerImagePool:
    """The pool's rule image by image, as CycleGAN's history buffer states it: the definition the batched pool must
    match (same generator, same draws in the same order)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.images, self.rng = size, [], torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for image in images.unsqueeze(1):
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.rng).item() < 0.5:
                idx = int(torch.randint(0, self.size, (), generator=self.rng))
                out.append(self.images[idx].clone())
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.cat(out)


@pytest.mark.parametrize("size", [1, 3, 50])
def test_image_pool_applies_the_per_image_rule_to_whole_batches(size: int) -> None:
    """Batches larger and smaller than the pool, so one batch fills it and draws, and draws one slot twice (the
    second draw returns the image the first put there)."""
    batched, per_image = ImagePool(size, seed=5), PerImagePool(size, seed=5)
    values = torch.Generator().manual_seed(0)
    for n in (2, 64, 1, 7, 64, 64, 3):
        images = torch.rand(n, 3, 4, 4, generator=values)
        assert torch.equal(batched.query(images), per_image.query(images))
        assert torch.equal(batched.state_dict()["images"], torch.cat(per_image.images))
    resumed = ImagePool(size, seed=0)
    resumed.load_state_dict(batched.state_dict())
    images = torch.rand(64, 3, 4, 4, generator=values)
    assert torch.equal(resumed.query(images), per_image.query(images))
    # a run resumed at another precision: the stored images are converted, as a concatenation would promote them
    resumed.load_state_dict(batched.state_dict())
    assert resumed.query(images.double()).dtype == torch.float64


def test_stage_boundaries_and_learning_rates():
    stages = StageConfig()  # reference: translation 1-5, SR pre-train 6, joint 7+
    optim = OptimConfig()  # 100 flat + 100 decay; cyc_lr 2e-4, SR 1e-4
    assert [stage_for_epoch(e, stages) for e in (1, 5, 6, 7, 200)] == [
        Stage.TRANSLATION,
        Stage.TRANSLATION,
        Stage.SR_PRETRAIN,
        Stage.JOINT,
        Stage.JOINT,
    ]
    groups = {g.name: g for g in network_groups(optim)}
    lr = {name: (lambda e, g=g: g.lr(e, stages, optim)) for name, g in groups.items()}
    assert lr["G"](5) == 2e-4 and lr["SR"](5) == 0.0  # SR is not trained in the translation stage
    assert lr["G"](6) == 0.0 and lr["D_X"](6) == 0.0 and lr["D_Y"](6) == 0.0 and lr["SR"](6) == 1e-4
    assert lr["G"](7) == 2e-4
    assert lr["G"](100) == 2e-4 and lr["SR"](100) == 1e-4  # last flat epoch
    assert lr["G"](101) == pytest.approx(2e-4 * (1 - 1 / 101))  # first decay epoch
    assert lr["SR"](150) == pytest.approx(1e-4 * (1 - 50 / 101))
    assert lr["G"](200) == pytest.approx(2e-4 / 101) and lr["G"](201) == 0.0 and lr["G"](300) == 0.0


def test_vega_learning_rate_rule():
    """vega (trans_model.py: update_learning_rate): lr - max(0, epoch - n_epoch)·lr/n_epoch_decay, epochs 1..200."""
    stages, optim = StageConfig(), OptimConfig(lr_rule="vega")
    g = {x.name: x for x in network_groups(optim)}
    assert g["G"].lr(100, stages, optim) == 2e-4
    for epoch in (101, 150, 199, 200):
        vega = 2e-4 - max(0, epoch - 100) * 2e-4 / 100
        assert g["G"].lr(epoch, stages, optim) == pytest.approx(vega, abs=1e-12)
        assert g["SR"].lr(epoch, stages, optim) == pytest.approx(vega / 2, abs=1e-12)
    assert g["G"].lr(200, stages, optim) == 0.0  # vega's last epoch trains at 0; CycleGAN's rule keeps lr/101
    assert g["G"].lr(200, stages, OptimConfig()) > 0


@pytest.mark.parametrize("stage", list(Stage))
def test_gradient_accumulation_equals_one_larger_batch(stage):
    _, accumulated, acc_opts = make_model()
    config, single, single_opts = make_model()
    for i in range(2):
        big = random_batch(batch=4, seed=i)
        micro = [{k: v[j : j + 2] for k, v in big.items()} for j in (0, 2)]
        accumulated.optimize_parameters(micro, stage, OptimizerOps(acc_opts, config.optim.grad_clip))
        single.optimize_parameters(big, stage, OptimizerOps(single_opts, config.optim.grad_clip))
    probe = random_batch(seed=99)
    with torch.no_grad():
        for name in single.nets:
            torch.testing.assert_close(
                accumulated.nets[name](probe["real_lr"]), single.nets[name](probe["real_lr"]), rtol=1e-4, atol=1e-5
            )


@pytest.mark.parametrize("micro_batches", [1, 2])
@pytest.mark.parametrize("stage", [Stage.TRANSLATION, Stage.JOINT])
def test_batched_calls_compute_the_same_losses_and_gradients(stage, micro_batches):
    """`train.batched_calls`: 3 generator and 2 discriminator calls instead of 6 and 4, the same maths (also with
    gradient accumulation over micro-batches)."""
    _, plain, plain_opts = make_model()
    config, batched, batched_opts = make_model()
    batched.batched_calls = True
    plain_ops = RecordingOps(plain_opts, config.optim.grad_clip, plain.nets)
    batched_ops = RecordingOps(batched_opts, config.optim.grad_clip, batched.nets)
    for i in range(2):  # the second step runs with filled pools and Adam state
        batch = random_batch(batch=2 * micro_batches, seed=i)
        if micro_batches > 1:
            batch = [{k: v[j : j + 2] for k, v in batch.items()} for j in range(0, 2 * micro_batches, 2)]
        plain_losses = plain.optimize_parameters(batch, stage, plain_ops)
        batched_losses = batched.optimize_parameters(batch, stage, batched_ops)
        assert plain_losses.keys() == batched_losses.keys()
        for name, value in plain_losses.items():
            torch.testing.assert_close(batched_losses[name], value, rtol=1e-4, atol=1e-6, msg=name)
        assert plain_ops.at_step.keys() == batched_ops.at_step.keys()
        for group, grads in plain_ops.at_step.items():
            for net, net_grads in grads.items():
                pairs = list(zip(net_grads, batched_ops.at_step[group][net], strict=True))
                assert all((a is None) == (b is None) for a, b in pairs), (group, net)
                pairs = [(a, b) for a, b in pairs if a is not None]
                if not pairs:
                    continue
                # Relative to the whole network's gradient: biases before an InstanceNorm have a true gradient
                # of 0 (round-off only, differently summed), and Adam's walk of them in step 1 perturbs step 2.
                scale = torch.cat([a.flatten() for a, _ in pairs]).norm()
                worst = max((b - a).norm() for a, b in pairs)
                assert worst <= 1e-4 * scale, (i, group, net, float(worst), float(scale))


def test_batched_calls_refuse_batch_norm_where_images_are_concatenated():
    """BatchNorm in a discriminator would mix the real and the fake batch's statistics: `true` is refused and
    `auto` stays off. In the SR net, which is never called on concatenated batches, it changes nothing."""
    config = tiny_config(**{"model.discriminator.args": "{ndf: 8, n_layers: 2, norm: batch}"})
    with pytest.raises(BadInput, match=r"BatchNorm.*\['disc_clean', 'disc_real'\].*batched_calls=false"):
        CycleSR(build_networks(config.model), config.loss, batched_calls=True)
    assert not CycleSR(build_networks(config.model), config.loss, batched_calls="auto").batched_calls
    config = tiny_config(**{"model.sr.args": "{nf: 8, nb: 2, norm: batch}"})
    assert config.train.batched_calls == "auto"  # the default
    assert CycleSR(build_networks(config.model), config.loss, batched_calls="auto").batched_calls
    assert CycleSR(build_networks(config.model), config.loss, batched_calls=True).batched_calls


def test_sr_pretrain_weight_scales_only_the_pretraining_gradient():
    """loss.sr_pretrain_lam (vega: 1) replaces sr_lam (1000) as the SR loss weight of the pre-training stage."""
    grads = {}
    for lam in ("null", "1.0"):
        config, model, optimizers = make_model(**{"loss.sr_pretrain_lam": lam})
        ops = RecordingOps(optimizers, 0.0, model.nets)
        model.optimize_parameters(random_batch(), Stage.SR_PRETRAIN, ops)
        grads[lam] = torch.cat([g.flatten() for g in ops.at_step["SR"]["sr"]])
    torch.testing.assert_close(grads["null"], config.loss.sr_lam * grads["1.0"], rtol=1e-4, atol=1e-7)


def test_sr_pretraining_on_translated_input_trains_sr_on_g_of_clean_lr_and_leaves_g_alone():
    """stages.sr_pretrain_input=translated: the SR net pre-trains on G(clean LR) from the frozen G."""
    config, model, optimizers = make_model(**{"stages.sr_pretrain_input": "translated"})
    spec = CycleSRSpec(config)
    model = spec.build_model(model.nets, model.nets, 0).joint  # the config's setting, as the trainer builds it
    assert model.sr_pretrain_on_translated
    batch = random_batch()
    gen, sr = copy.deepcopy(model.nets["gen_clean_to_real"]), copy.deepcopy(model.nets["sr"])  # before the step
    ops = RecordingOps(optimizers, 0.0, model.nets)
    torch.manual_seed(3)  # G's noise channels: the same draw below
    model.optimize_parameters(batch, Stage.SR_PRETRAIN, ops)
    torch.manual_seed(3)
    with torch.no_grad():
        fake_real = gen(batch["clean_lr"])
    loss = config.loss.sr_lam * torch.nn.functional.mse_loss(sr(fake_real), batch["hr"])
    for got, want in zip(ops.at_step["SR"]["sr"], torch.autograd.grad(loss, list(sr.parameters())), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert all(g is None for g in ops.at_step["SR"]["gen_clean_to_real"])
    before, after = gen.state_dict(), model.nets["gen_clean_to_real"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_clip_per_network_clips_g_and_f_each_on_its_own():
    """optim.clip_per_network: each network of a group is clipped to grad_clip separately (vega's netG, netF)."""
    config, model, optimizers = make_model()
    nets = [model.nets["gen_clean_to_real"], model.nets["gen_real_to_clean"]]
    for scale, net in zip((100.0, 1e-4), nets, strict=True):  # one far above the clip, one far below
        for p in net.parameters():
            p.grad = torch.full_like(p, scale)
    before = [torch.cat([p.grad.flatten() for p in net.parameters()]).norm() for net in nets]
    clip = 1.0
    ops = OptimizerOps(optimizers, clip, clip_sets={"G": [list(net.parameters()) for net in nets]})
    grads = {}

    def capture(opt=optimizers["G"], step=optimizers["G"].step):
        grads["g"] = [torch.cat([p.grad.flatten() for p in net.parameters()]).norm() for net in nets]
        return step()

    optimizers["G"].step = capture
    ops.step("G")
    assert abs(grads["g"][0].item() - clip) < 1e-4  # clipped to the limit on its own
    torch.testing.assert_close(grads["g"][1], before[1])  # left alone: a joint clip would have scaled it too
    torch.testing.assert_close(ops.grad_norms["G"], torch.stack(before).norm())


def test_value_range_is_mapped_at_the_networks_boundary_in_validation_and_grids():
    """With `data.value_range: [0, 1]` the networks see [0, 1] images: validation and the sample grids call them
    through the mapping (the same numbers as the exported net gives), not on the loaders' [-1, 1] images."""
    import numpy as np

    from cyclesr_dist.cyclesr import pictures
    from cyclesr_dist.cyclesr.spec import CycleSRSpec
    from cyclesr_dist.data.images import model_to_uint8
    from cyclesr_dist.serve.evaluate import evaluate_pairs
    from cyclesr_dist.serve.export import InDataRange

    spec = CycleSRSpec(tiny_config(**{"data.value_range": "[0, 1]", "stages.sr_pretrain_epoch": "1"}))
    torch.manual_seed(0)
    nets = spec.build_networks()
    for m in nets.modules():  # PyTorch's default init: outputs far from flat, so the mapping shows
        if isinstance(m, torch.nn.Conv2d):
            m.reset_parameters()
    model = spec.build_model(nets, nets, rank=0)
    rng = np.random.default_rng(0)
    pairs = [("a", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), np.uint8))]
    values = model.validate(pairs, step=1)
    mapped = evaluate_pairs(InDataRange(nets["sr"], (0.0, 1.0)), pairs, scale=4)["mean"]["psnr_rgb"]
    unmapped = evaluate_pairs(nets["sr"], pairs, scale=4)["mean"]["psnr_rgb"]
    assert values["val/psnr_rgb"] == pytest.approx(mapped) and abs(mapped - unmapped) > 0.1
    batch = random_batch()
    grid = model.sample_grids(batch, [])["samples/translation"]
    with torch.no_grad():
        fake = nets["gen_clean_to_real"](batch["clean_lr"][:1].add(1).mul(0.5)).mul(2).sub(1)
    # The second column's first tile, enlarged `factor` times by nearest-neighbour: every factor-th pixel is G's.
    factor = max(3, -(-pictures.SHOWN // 16))
    left, top = 2 * pictures.GAP + 16 * factor, pictures.HEADER
    tile = grid[top : top + 16 * factor : factor, left : left + 16 * factor : factor]
    np.testing.assert_array_equal(tile, model_to_uint8(fake[0]))

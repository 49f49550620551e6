"""loss.cycle_sr_fine_cap: the SR term's weight in G's update, cut by how far G's fine band exceeds the real LR's."""

from __future__ import annotations

import copy
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cyclesr_dist.checkpoint_format import latest_checkpoint
from cyclesr_dist.cyclesr import CycleSR, Stage, build_networks, build_optimizers
from cyclesr_dist.cyclesr.fine_cap import EMA_DECAY, FINE_BAND_SIGMA, fine_band_energy
from cyclesr_dist.engine.backends.base import OptimizerOps
from cyclesr_dist.errors import PREEMPTED
from cyclesr_dist.testing import checkpoint_weights, random_batch, read_train_log, tiny_config
from cyclesr_dist.torch_utils import gaussian_kernel

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"model.generator.args.noise_channels": "0"}  # no random draws in G: runs differ only where the cap acts


class RecordingOps(OptimizerOps):
    """Real clip/step, plus G's gradient at the moment G steps."""

    def __init__(self, optimizers, nets):
        super().__init__(optimizers, 0.0)
        self.nets, self.g_grad = nets, None

    def step(self, group: str) -> None:
        if group == "G":
            self.g_grad = torch.cat([p.grad.flatten() for p in self.nets["gen_clean_to_real"].parameters()])
        super().step(group)


def make_model(**overrides: str) -> tuple[CycleSR, RecordingOps]:
    torch.manual_seed(0)
    config = tiny_config(**QUIET, **overrides)
    nets = build_networks(config.model)
    return CycleSR(nets, config.loss), RecordingOps(build_optimizers(nets, config.optim), nets)


def joint_steps(n: int, **overrides: str) -> tuple[CycleSR, RecordingOps, list[dict]]:
    model, ops = make_model(**overrides)
    torch.manual_seed(1)
    logged = [model.optimize_parameters(random_batch(), Stage.JOINT, ops) for _ in range(n)]
    return model, ops, logged


def test_the_cap_scales_g_s_share_of_the_sr_term_by_ten_per_db_of_excess():
    """G's gradient is its own terms' plus factor × the SR term's, factor = 10^(cap − excess) where excess is G's
    fine-band energy over the real LR's in dB (here the batch's alone: the first step's running means). In float64:
    G's own terms' gradient is 10⁴ times the SR term's, which a float32 difference of two runs would not resolve."""
    torch.manual_seed(1)
    batch = {k: v.double() for k, v in random_batch().items()}
    cap = -8.5  # G's output starts far smoother than the random real LR: about −7.9 dB
    grads = {}
    for name, overrides in (
        ("none", {"loss.cycle_sr_lam": "0"}),
        ("full", {}),
        ("capped", {"loss.cycle_sr_fine_cap": str(cap)}),
    ):
        model, ops = make_model(**overrides)
        model.nets.double()
        gen = copy.deepcopy(model.nets["gen_clean_to_real"])
        logged = model.optimize_parameters(batch, Stage.JOINT, ops)
        grads[name] = ops.g_grad
    kernel = gaussian_kernel(FINE_BAND_SIGMA).double()
    with torch.no_grad():
        fake_energy = fine_band_energy(gen(batch["clean_lr"]), kernel)
    excess = 10 * math.log10(fake_energy / fine_band_energy(batch["real_lr"], kernel))
    factor = 10 ** (cap - excess)
    assert 0.05 < factor < 0.9  # engaged, and not so far that the SR term vanishes
    assert float(logged["fine_cap/excess_db"]) == pytest.approx(excess, rel=1e-5)  # the cap computes in float32
    assert float(logged["weight/cycle_sr"]) == pytest.approx(1000 * factor, rel=1e-5)  # the cap computes in float32
    sr_term, got = grads["full"] - grads["none"], grads["capped"] - grads["none"]
    assert (got - factor * sr_term).norm() < 1e-6 * sr_term.norm()
    assert (got - sr_term).norm() > 0.05 * sr_term.norm()


def test_running_means_carry_over_steps_and_through_a_checkpoint():
    """The excess is taken on running means (decay EMA_DECAY per step), which the per-rank state saves: a model
    restored from it continues with the same numbers as the one that wrote it."""
    model, ops, logged = joint_steps(2, **{"loss.cycle_sr_fine_cap": "-12"})
    state = copy.deepcopy(model.state_dict())
    assert set(state["fine_cap"]) == {"fake_real", "real_lr"}
    restored, restored_ops = make_model(**{"loss.cycle_sr_fine_cap": "-12"})
    restored.nets.load_state_dict(model.nets.state_dict())
    restored.load_state_dict(state)
    torch.manual_seed(7)
    batch = random_batch()
    kernel = gaussian_kernel(FINE_BAND_SIGMA)
    with torch.no_grad():
        fake_now = fine_band_energy(model.nets["gen_clean_to_real"](batch["clean_lr"]), kernel)
    want_fake = EMA_DECAY * state["fine_cap"]["fake_real"] + (1 - EMA_DECAY) * fake_now
    want_real = EMA_DECAY * state["fine_cap"]["real_lr"] + (1 - EMA_DECAY) * fine_band_energy(batch["real_lr"], kernel)
    for m, o in ((model, ops), (restored, restored_ops)):
        got = m.optimize_parameters(batch, Stage.JOINT, o)["fine_cap/excess_db"]
        assert float(got) == pytest.approx(10 * math.log10(want_fake / want_real))
    fresh, fresh_ops = make_model(**{"loss.cycle_sr_fine_cap": "-12"})
    fresh.nets.load_state_dict(model.nets.state_dict())
    first = fresh.optimize_parameters(batch, Stage.JOINT, fresh_ops)["fine_cap/excess_db"]
    assert abs(float(first) - 10 * math.log10(want_fake / want_real)) > 0.01  # the running means mattered


def test_a_cap_never_reached_leaves_the_step_bitwise_as_without_it():
    """The benchmark logs the excess on the shipped recipe with a cap no run reaches: that must not change a bit."""
    plain, _, _ = joint_steps(3)
    watched, _, logged = joint_steps(3, **{"loss.cycle_sr_fine_cap": "99"})
    for a, b in zip(plain.nets.state_dict().values(), watched.nets.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert all(float(v["weight/cycle_sr"]) == 1000.0 for v in logged)


def train(demo_data: Path, out: Path) -> subprocess.Popen:
    """configs/demo.yaml through the real CLI with the cap on: 16 steps, joint from step 4."""
    overrides = [
        f"data.root={demo_data}",
        f"output_dir={out}",
        "max_steps=16",
        "data.steps_per_epoch=2",
        "stages.sr_pretrain_epoch=2",
        "stages.joint_epoch=3",
        "optim.n_epoch=8",
        "checkpoint.every_steps=1000",
        "train.log_every=1",
        "train.val_every_epochs=100",
        "train.image_every=0",
        "train.deterministic=true",
        "wandb.mode=disabled",
        "data.num_workers=0",
        "loss.cycle_sr_fine_cap=-3",
    ]
    cmd = [sys.executable, "-m", "cyclesr_dist.cli", "train", "--config", "configs/demo.yaml", *overrides]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


@pytest.mark.slow
def test_a_run_preempted_in_the_joint_stage_resumes_the_cap_exactly(demo_data: Path, tmp_path: Path) -> None:
    """Preempted after some joint steps and resumed, a run ends bitwise where the straight run ends and logs the
    same excess and weight at every later step: the running means travel in the checkpoint."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, log = finish(train(demo_data, straight))
    assert code == 0, log[-3000:]
    proc = train(demo_data, resumed)
    deadline = time.time() + 300
    while not any(row["step"] >= 6 for row in read_train_log(resumed)):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code, log = finish(proc)
    assert code == PREEMPTED, log[-3000:]
    stopped_at = latest_checkpoint(resumed / "checkpoints").step
    assert 6 <= stopped_at < 16
    code, log = finish(train(demo_data, resumed))
    assert code == 0 and f"at step {stopped_at}" in log, log[-3000:]
    a, b = checkpoint_weights(straight), checkpoint_weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capped = {}
    for run in (straight, resumed):
        capped[run] = {
            r["step"]: (r["fine_cap/excess_db"], r["weight/cycle_sr"])
            for r in read_train_log(run)
            if "fine_cap/excess_db" in r
        }
    assert sorted(capped[straight]) == list(range(5, 17))
    assert capped[resumed] == capped[straight]
    assert any(weight < 1000 for _, weight in capped[straight].values())  # the cap acted

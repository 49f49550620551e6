"""The trainer's step never reads a device value into Python unless it logs: on a GPU every such read (`.item()`,
`float()`, `bool()` of a tensor) makes the host wait until the device has finished all the work queued so far, so
the host cannot queue the next step's kernels while this one runs. Counted here on the CPU with a dispatch mode
that sees each read (`aten._local_scalar_dense`) and the line of this package that made it."""

from __future__ import annotations

import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import cyclesr_dist
from cyclesr_dist.cyclesr import CycleSRSpec, Stage
from cyclesr_dist.engine.preemption import PreemptionFlag
from cyclesr_dist.engine.trainer import Trainer
from cyclesr_dist.testing import tiny_config

PACKAGE = Path(cyclesr_dist.__file__).parent
OPTIM = Path(torch.optim.__file__).parent


def _host_only(stack: list[traceback.FrameSummary]) -> bool:
    """Reads of values that live on the host by design, on a GPU too: the image pool's draws from its own CPU
    generator, and Adam's step counts (host tensors unless `capturable`)."""
    return any(Path(f.filename).name == "pool.py" or Path(f.filename).is_relative_to(OPTIM) for f in stack)


class DeviceValueReads(TorchDispatchMode):
    """The lines of this package that read a tensor's value into Python, less the host-only reads."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 -- torch's protocol
        if func is torch.ops.aten._local_scalar_dense.default:
            stack = traceback.extract_stack()
            ours = [f for f in stack if Path(f.filename).is_relative_to(PACKAGE)]
            if not _host_only(stack):
                self.sites.add(f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "outside the package")
        return func(*args, **(kwargs or {}))


def test_a_step_that_logs_nothing_reads_no_device_value(demo_data: Path, tmp_path: Path) -> None:
    config = tiny_config(
        **{"data.root": str(demo_data), "data.hr_patch": "64", "data.batch_size": "2", "data.num_workers": "0"},
        **{"output_dir": str(tmp_path), "wandb.mode": "disabled", "data.steps_per_epoch": "1"},
        **{"stages.sr_pretrain_epoch": "2", "stages.joint_epoch": "3"},
    )
    trainer = Trainer(config, CycleSRSpec(config))
    batches, preemption = iter(trainer.loader), PreemptionFlag()
    try:
        for step, stage in ((0, Stage.TRANSLATION), (1, Stage.SR_PRETRAIN), (2, Stage.JOINT)):
            trainer.step = step
            assert trainer.model.stage(step) is stage
            batch, reads = (
                next(batches),
                DeviceValueReads(),
            )  # the loader's own work runs in its workers, off the device
            with reads:
                values = trainer.train_step([trainer._to_device(batch)])
                preemption.should_stop(trainer.device)
            assert sorted(reads.sites) == [], stage
            # what the step made is still there for a step that logs: as tensors, read when logged
            assert "loss/G" in values or stage is Stage.SR_PRETRAIN
            assert all(torch.is_tensor(v) and v.dim() == 0 for k, v in values.items() if k.startswith("loss/"))
    finally:
        preemption.restore()

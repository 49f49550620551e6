"""The training loop, top to bottom: set up (networks from the spec, backend, loader), resume, then per step:
learning rates -> the recipe's step -> log / images / validation -> save; stop on preemption or at the end.

The engine never names a network: everything model-specific comes from the `TrainSpec`.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from ..checkpoint_format import COMMANDS
from ..config import Config, config_to_dict, dump_config
from ..data.images import batch_to_model, save_rgb
from ..data.loaders import build_train_loader, load_val_pairs
from ..errors import OK, PREEMPTED, PeerFailure, UserError
from ..torch_utils import unwrap
from .backends import prepare_backend
from .checkpoint import CheckpointManager, RNGState
from .preemption import PreemptionFlag
from .spec import Batch, TrainSpec
from .threads import configure_threads
from .tracking import RunLogger
from .watchdog import StallWatchdog


def _training_rng_untouched(device: torch.device) -> AbstractContextManager[None]:
    """Validation and sample grids draw G's noise (and JPEG qualities) from the global generators; forked, they leave
    the training's draws where they were, so how often a run validates or draws grids, or whether it was extended
    after a last-step validation, does not change what it trains."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _barrier() -> None:
    # Plain torch barrier: Accelerate's passes device_ids, which means nothing to gloo.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


# What gloo says when a peer's process died (its sockets closed or reset) or a wait ran past the timeout; gloo raises
# them as plain RuntimeErrors, NCCL and the stores as torch.distributed.DistError.
PEER_ERRORS = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Timed out waiting",
    "timed out connecting",
    "Application timeout caused pair closure",
    "gloo/transport",
)


def peer_failure(err: BaseException) -> bool:
    """Whether `err` is a collective that failed because of another rank, not a fault of this one."""
    if isinstance(err, torch.distributed.DistError):
        return True
    return isinstance(err, RuntimeError) and any(marker in str(err) for marker in PEER_ERRORS)


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


class Trainer:
    def __init__(self, config: Config, spec: TrainSpec) -> None:
        self.config, self.spec = config, spec
        if config.train.deterministic:
            torch.use_deterministic_algorithms(True)
        self.thread_note = configure_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        set_seed(config.seed)  # the same seed on every rank: identical initial weights
        nets = spec.build_networks()
        if config.train.channels_last:
            nets = nets.to(memory_format=torch.channels_last)
        self.backend = prepare_backend(nets, spec.build_optimizers(nets), spec.network_groups(), config)
        accelerator = self.backend.accelerator
        self.rank, self.world_size = accelerator.process_index, accelerator.num_processes
        # Every rank, not just rank 0: on several nodes this line shows where each rank runs (and that it started).
        print(f"[trainer] rank {self.rank}/{self.world_size} on {socket.gethostname()}", flush=True)
        self.device, self.is_main = accelerator.device, accelerator.is_main_process
        self.model = spec.build_model(self.backend.nets, self.backend.raw_nets, self.rank)
        d, k = config.data, config.train.gradient_accumulation_steps
        if d.batch_size % (self.world_size * k):
            raise UserError(
                f"data.batch_size={d.batch_size} is global and must be divisible by {self.world_size} processes × "
                f"train.gradient_accumulation_steps={k}"
            )
        micro_batch = d.batch_size // (self.world_size * k)
        self.loader = build_train_loader(
            d, seed=config.seed, rank=self.rank, world_size=self.world_size, micro_batch=micro_batch
        )
        self.val_pairs = load_val_pairs(d) if self.is_main else []
        c = config.checkpoint
        self.checkpoints = CheckpointManager(
            Path(config.output_dir) / "checkpoints",
            keep=c.keep,
            every_steps=c.every_steps,
            rank=self.rank,
            world_size=self.world_size,
            barrier=_barrier,
        )
        self.step = 0
        self.logger: RunLogger | None = None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])

    def _per_rank(self) -> dict[str, Any]:
        return {"trainer": self, "model": self.model, "loader": self.loader, "rng": RNGState()}

    def _meta(self) -> dict[str, Any]:
        groups = self.spec.network_groups()
        owner = {net: group for group, nets in groups.items() for net in nets}
        networks = {net: {"group": owner[net], **entry} for net, entry in self.spec.network_configs().items()}
        run_id = self.logger.run_id if self.logger else None
        return {
            "tracker_run_id": run_id,
            "networks": networks,
            "export": self.spec.export_network,
            "config": config_to_dict(self.config),
        }

    def save(self) -> Path:
        check_replicas_identical({n: unwrap(net) for n, net in self.backend.nets.items()}, self.device)
        return self.checkpoints.save(self.step, self._meta(), self.backend, self._per_rank())

    # ------------------------------------------------------------------ one step
    def _to_device(self, batch: Batch) -> Batch:
        fmt = torch.channels_last if self.config.train.channels_last else torch.contiguous_format
        return {k: v.contiguous(memory_format=fmt) for k, v in batch_to_model(batch, self.device).items()}

    def train_step(self, micro_batches: list[Batch]) -> dict[str, Any]:
        """One optimizer step of every group; returns what to log (losses, learning rates, gradient norms). Losses
        and norms stay tensors: reading one into Python makes the host wait for the device, so the loop reads
        them only on the steps it logs, and the host queues the next step while the device runs this one."""
        lrs = self.spec.learning_rates(self.step)
        self.backend.set_learning_rates(lrs)
        self.backend.ops.grad_norms.clear()
        with self.backend.autocast():
            losses = self.model.train_step(micro_batches, self.step, self.backend.ops)
        values: dict[str, Any] = self.model.progress(self.step)
        self.step += 1
        values |= losses
        values |= {f"lr/{k}": v for k, v in lrs.items()}
        values |= {f"grad_norm/{k}": v for k, v in self.backend.ops.grad_norms.items()}
        return values

    # ------------------------------------------------------------------ the loop
    def _resume(self) -> None:
        checkpoint, damaged = self.checkpoints.resolve(self.config.checkpoint.resume)
        run_id = None
        if checkpoint is not None:
            self.checkpoints.load(checkpoint, self.backend, self._per_rank())
            self.step, run_id = checkpoint.step, checkpoint.meta.get("tracker_run_id")
        output_dir = Path(self.config.output_dir)
        if self.is_main:
            output_dir.mkdir(parents=True, exist_ok=True)
            dump_config(self.config, output_dir / "config.yaml")
            with open(output_dir / COMMANDS, "a") as commands:  # every start and resume: the card quotes them
                commands.write(f"{shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])}\n")
        self.logger = RunLogger(
            self.backend.accelerator, output_dir, self.config.wandb, config_to_dict(self.config), run_id, self.step
        )
        self.logger.info(self.thread_note)
        for message in damaged:
            self.logger.info(message)
        if checkpoint is not None:
            self.logger.info(
                f"resumed from {checkpoint.path} at step {self.step} "
                f"(written by {checkpoint.meta['world_size']} processes)"
            )

    def train(self) -> int:
        """Run (or resume) training. Returns the process exit status: OK when done, PREEMPTED after a signal."""
        self._resume()
        logger, config = self.logger, self.config
        total, spe = config.total_steps, config.data.steps_per_epoch
        accumulation = config.train.gradient_accumulation_steps
        preemption = PreemptionFlag()
        status = OK
        batches = iter(self.loader)
        micro_batches: list[Batch] = []
        tic, samples = time.perf_counter(), 0
        logger.start_progress(total, self.step)
        watchdog = None
        if config.dist.stall_timeout_s:
            watchdog = StallWatchdog(Path(config.output_dir), self.rank, self.world_size, config.dist.stall_timeout_s)
            watchdog.start(self.step)
        activity = "the training step (gradients all-reduced in backward)"
        try:
            while self.step < total:
                micro_batches = [self._to_device(next(batches)) for _ in range(accumulation)]
                activity = "the training step (gradients all-reduced in backward)"
                values = self.train_step(micro_batches)
                step, samples = self.step, samples + config.data.batch_size
                logger.advance(str(values.get("stage", "")))
                row: dict[str, Any] = {}  # one log row per step at most
                if step % config.train.log_every == 0 or step == total:
                    row |= {k: float(v) if torch.is_tensor(v) else v for k, v in values.items()}
                    row["samples_per_s"] = samples / (time.perf_counter() - tic)
                    row |= {f"data/skipped_{k}": v for k, v in self.loader.skipped().items()}
                    tic, samples = time.perf_counter(), 0
                end_of_epoch = step % spe == 0 and (step // spe) % config.train.val_every_epochs == 0
                if self.is_main and self.val_pairs and (end_of_epoch or step == total):
                    with _training_rng_untouched(self.device):
                        row |= self.model.validate(self.val_pairs, step)
                if watchdog:
                    watchdog.progress(step)  # after the step and its validation: the clock starts again
                if row:
                    logger.log(row, step)
                if self.is_main and config.train.image_every and step % config.train.image_every == 0:
                    with _training_rng_untouched(self.device):
                        logger.log_images(self.model.sample_grids(micro_batches[0], self.val_pairs), step)
                activity = "the preemption agreement (an all-reduce)"
                stop = preemption.should_stop(self.device)
                if stop or step == total or self.checkpoints.due(step):
                    activity = "the checkpoint save (barriers)"
                    tic_save = time.perf_counter()  # the save stalls every rank: its cost is shown with it
                    path = self.save()
                    logger.info(f"saved checkpoint {path} in {time.perf_counter() - tic_save:.1f} s")
                    if watchdog:
                        watchdog.progress(step)
                if stop:
                    logger.info(f"preempted at step {step}: checkpoint saved, exiting with {PREEMPTED}")
                    status = PREEMPTED
                    break
            if status == OK:
                activity = "the preemption agreement (an all-reduce)"
                preemption.drain()  # the agreement still in flight: every rank started it
            if self.is_main and status == OK and micro_batches:
                self._write_final_samples(micro_batches[0])
            activity = "the final barrier"
            _barrier()
        except RuntimeError as err:
            if self.world_size == 1 or not peer_failure(err):
                raise
            raise PeerFailure(self._peer_failure_message(activity, err)) from err
        finally:
            if watchdog:
                watchdog.stop()
            preemption.restore()
            logger.finish()
        return status

    def _peer_failure_message(self, activity: str, err: BaseException) -> str:
        latest = self.checkpoints.latest()
        what = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return (
            f"rank {self.rank}/{self.world_size}: {activity} at step {self.step + 1} failed: {what[:300]} -- a peer "
            f"died, was cut off or stalled (dist.timeout_s={self.config.dist.timeout_s:g}); nothing saved; "
            f"a restart resumes from the newest intact checkpoint ({f'step {latest.step}' if latest else 'none yet'})"
        )

    def _write_final_samples(self, batch: Batch) -> None:
        """The recipe's sample grids of the finished model as PNGs in the output folder (`<name>.png`)."""
        with _training_rng_untouched(self.device):
            grids = self.model.sample_grids(batch, self.val_pairs)
        for key, image in grids.items():
            path = Path(self.config.output_dir) / f"{key.rsplit('/', 1)[-1]}.png"
            save_rgb(image, path)
            self.logger.info(f"wrote {path}")

"""Two-rank driver for tests/test_ddp_buffers.py: the real DDP backend (gloo) around tiny CycleSR networks that hold
buffers — G with a fixed input blur and a JPEG stage, high-pass discriminators, an SR net with BatchNorm — and one
step of each stage through `CycleSR.optimize_parameters`, G called twice per backward.

Run under `python -m torch.distributed.run --nproc_per_node 2 tests/ddp_buffers_driver.py OUT`. Rank 0 writes OUT
(JSON): per network, its buffer count and whether DDP would broadcast them before a forward; the steps' losses;
whether every rank holds the same constant buffers."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

from cyclesr_dist.cyclesr import CycleSR, CycleSRSpec, Stage
from cyclesr_dist.engine.backends.ddp import DDPBackend
from cyclesr_dist.testing import random_batch, tiny_config
from cyclesr_dist.torch_utils import unwrap


def main(out: str) -> int:
    config = tiny_config(
        **{
            "model.generator.args": "{ngf: 8, n_blocks: 2, input_blur: 1.0, jpeg_quality: 75}",
            "model.discriminator.args": "{ndf: 8, n_layers: 2, high_pass: 1.0}",
            "model.sr.args": "{nf: 8, nb: 2, norm: batch}",
            "wandb.mode": "disabled",
        }
    )
    torch.manual_seed(0)
    spec = CycleSRSpec(config)
    nets = spec.build_networks()
    backend = DDPBackend(nets, spec.build_optimizers(nets), spec.network_groups(), config)
    rank = backend.accelerator.process_index
    model = CycleSR(backend.nets, config.loss, pool_seed=rank)
    losses = {}
    for step, stage in enumerate([Stage.TRANSLATION, Stage.SR_PRETRAIN, Stage.JOINT]):
        values = model.optimize_parameters(random_batch(seed=10 * step + rank), stage, backend.ops)
        losses[stage.name] = {k: float(v) for k, v in values.items()}
    constants = torch.cat(
        [b.reshape(-1) for n in ("gen_clean_to_real", "disc_real") for b in unwrap(backend.nets[n]).buffers()]
    )
    gathered = [torch.empty_like(constants) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, constants)
    if rank == 0:
        report = {
            "world_size": dist.get_world_size(),
            "nets": {
                name: {
                    "ddp": type(net).__name__,
                    "buffers": len(list(unwrap(net).buffers())),
                    "broadcasts_buffers": net.will_sync_module_buffers(),
                }
                for name, net in backend.nets.items()
            },
            "losses": losses,
            "constants_equal_on_every_rank": all(torch.equal(gathered[0], g) for g in gathered[1:]),
        }
        with open(out, "w") as f:
            json.dump(report, f)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

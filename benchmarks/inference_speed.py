"""Inference speed of `cyclesr upscale`: megapixels of output per second for the demo's and the production config's
SR networks, at three image sizes, by backend (torch eager, torch.compile, ONNX Runtime) and tile size, each checked
against eager's whole-image output (≤ 1e-4 in [-1, 1]). Weights are random: speed does not depend on them.

    python benchmarks/inference_speed.py                 # the table for BENCHMARKS.md (minutes on 2 cores)
    python benchmarks/inference_speed.py --quick         # smoke test
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cyclesr_dist.models import SR_NETS  # noqa: E402
from cyclesr_dist.serve.export import export_sr, load_sr  # noqa: E402
from cyclesr_dist.serve.tiling import upscale_tensor  # noqa: E402

CONFIGS = {"demo": REPO / "configs" / "demo.yaml", "production": REPO / "configs" / "cyclesr.yaml"}
TOLERANCE = 1e-4


def sr_of(config: Path) -> tuple[str, dict]:
    sr = yaml.safe_load(config.read_text())["model"]["sr"]
    return sr["name"], dict(sr.get("args") or {})


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, compiled graphs, ONNX Runtime's session
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def backends(name: str, args: dict, folder: Path) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    export_sr(SR_NETS.build(name, args), name, args, folder / "sr.pt")
    eager = load_sr(folder / "sr.pt")
    out = {"eager": eager}
    compiled = load_sr(folder / "sr.pt")
    compiled.forward = torch.compile(compiled.forward, dynamic=True)
    out["compile"] = compiled
    from cyclesr_dist.serve.export import export_formats, read_sr_source

    export_formats(read_sr_source(folder / "sr.pt"), folder / "sr.pt", ["onnx"])
    out["onnxruntime"] = load_sr(folder / "sr.onnx")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="128,256,512", help="LR sides (square images)")
    p.add_argument("--tiles", default="0,64,128,256", help="tile sizes in LR px (0 = whole image)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    tiles = [int(t) for t in args.tiles.split(",")]
    if args.quick:
        sizes, tiles, args.repeats = [48], [0, 32], 1
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; output megapixels per second (median of "
        f"{args.repeats}); overlap 16 LR px; max |difference| to eager's whole-image output in [-1, 1]\n"
    )
    print("| net | LR size | backend | tile | MP/s | max diff |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for label, config in CONFIGS.items():
        name, net_args = sr_of(config)
        with tempfile.TemporaryDirectory() as tmp:
            nets = backends(name, net_args, Path(tmp))
            for size in sizes:
                lr = (np.random.default_rng(size).random((size, size, 3)) * 255).astype(np.uint8)
                reference = upscale_tensor(nets["eager"], lr, tile=0)
                megapixels = reference.shape[1] * reference.shape[2] / 1e6
                for backend, net in nets.items():
                    for tile in tiles:
                        if tile >= size:
                            continue
                        out = upscale_tensor(net, lr, tile=tile or None, overlap=16)
                        diff = float((out - reference).abs().max())
                        worst = max(worst, diff)
                        seconds = timed(
                            lambda net=net, tile=tile, lr=lr: upscale_tensor(net, lr, tile=tile or None), args.repeats
                        )
                        print(
                            f"| {label} ({name} {net_args.get('nf')}×{net_args.get('nb')}) | {size}² | {backend} | "
                            f"{tile or 'whole'} | {megapixels / seconds:.2f} | {diff:.1e} |",
                            flush=True,
                        )
    print(f"\nworst difference {worst:.1e} ({'within' if worst <= TOLERANCE else 'ABOVE'} {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())

"""MODEL_CARD.md, written beside every export: what the network is, what it was trained on and how, how well it
did on the run's validation pairs, and how to run it (torch, ONNX Runtime, `cyclesr upscale`). What the export's
source does not know (an exported file has no run folder) the card says it does not know."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..atomic import atomic_write_text
from ..checkpoint_format import COMMANDS, find_checkpoint
from ..data.images import list_images


def _run_folder(source: Path) -> tuple[Path | None, int | None]:
    """(the training run's output folder, the checkpoint's step) when `source` is a checkpoint, else (None, None)."""
    if not source.is_dir():
        return None, None
    checkpoint = find_checkpoint(source)
    run = checkpoint.path.parent.parent
    return (run if (run / "config.yaml").is_file() else None), checkpoint.step


def _last_validation(run: Path, step: int | None) -> dict[str, Any]:
    """The newest logged validation at or before `step`."""
    found: dict[str, Any] = {}
    log = run / "train_log.jsonl"
    for line in log.read_text().splitlines() if log.is_file() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "val/psnr_rgb" in row and (step is None or row.get("step", 0) <= step):
            found = row
    return found


def _count(folder: Path) -> str:
    try:
        return f"{len(list_images(folder))} images in `{folder}`"
    except Exception:  # noqa: BLE001 - a folder gone since training: say so instead of failing the export
        return f"`{folder}` (not readable now)"


def _data_lines(data: dict[str, Any]) -> list[str]:
    if data.get("kind") == "webdataset":
        return [f"- HR shards: `{data.get('hr_shards')}`", f"- real-LR shards: `{data.get('lr_shards')}`"]
    root = Path(str(data.get("root", "")))
    return [f"- clean HR photos: {_count(root / 'hr')}", f"- real LR photos (unpaired): {_count(root / 'real_lr')}"]


def card_text(source: Path, name: str, args: dict[str, Any], upscale: int, value_range, files: list[Path]) -> str:
    run, step = _run_folder(source)
    lines = [
        "# Model card",
        "",
        f"A ×{upscale} super-resolution network (`{name}` {json.dumps(args, sort_keys=True)}), trained by cyclesr-dist "
        "(CycleSR: unpaired SR, a translation network learns the real LR's degradation and the SR network trains on "
        f"its output). It was trained on images in {list(value_range)}; every file below maps that inside.",
        "",
        "## Files",
        "",
        *(f"- `{p.name}`" for p in files),
        "",
        "## Training",
        "",
    ]
    if run is None:
        lines += [f"Exported from `{source}`, a file without its training run: the data and settings are not known."]
    else:
        config = yaml.safe_load((run / "config.yaml").read_text())
        data, gen = config.get("data", {}), config.get("model", {}).get("generator", {}).get("args", {})
        lines += [f"Run `{run}`, checkpoint at step {step} of {config.get('max_steps')}.", "", "Data:", ""]
        lines += _data_lines(data)
        lines += [
            "",
            "Degradation settings measured or chosen when training started:",
            "",
            f"- clean LR given to the translation network (`data.hr_to_lr`): `{data.get('hr_to_lr')}`",
            f"- input blur (σ, LR px; 0 = off): `{gen.get('input_blur', 0)}`",
            f"- JPEG quality range: `{gen.get('jpeg_quality', 'off')}`",
            "",
            f"The run's resolved configuration (measured values filled in) is `{run / 'config.yaml'}`.",
        ]
        commands = (run / COMMANDS).read_text().splitlines() if (run / COMMANDS).is_file() else []
        lines += ["", "Started (and resumed) by:", "", "```bash", *commands, "```"] if commands else []
        val = _last_validation(run, step)
        if val:
            lines += [
                "",
                f"Validation at step {val.get('step')} (paired validation images, PSNR-RGB): SR "
                f"{val['val/psnr_rgb']:.2f} dB, bicubic {val.get('val/bicubic_psnr_rgb', float('nan')):.2f} dB.",
            ]
        else:
            lines += ["", "No validation was logged (no paired validation images)."]
    stem = files[0].with_suffix("").name if files else "sr"
    lines += [
        "",
        "## Running it",
        "",
        "```bash",
        f"cyclesr upscale --checkpoint {stem}.pt --out upscaled/ photo.png      # or .safetensors / .onnx",
        "```",
        "",
        "On a CPU the `.onnx` file is the fastest (ONNX Runtime; torch's own path is slower and torch.compile does",
        'not help there: cyclesr-dist\'s BENCHMARKS.md, "Inference speed"); whole images (`--tile 0`) where memory',
        "allows.",
        "",
        "```python",
        "from cyclesr_dist.serve.export import load_sr   # torch: images in [-1, 1], NCHW",
        f"net = load_sr('{stem}.pt')",
        "",
        "import numpy as np, onnxruntime as ort         # ONNX Runtime: float32 RGB NCHW in [0, 1]",
        f"session = ort.InferenceSession('{stem}.onnx')",
        "sr = session.run(None, {'lr': lr_rgb_nchw.astype(np.float32) / 255})[0].clip(0, 1)",
        "```",
    ]
    return "\n".join(lines) + "\n"


def write_model_card(source: Path, name: str, args: dict, upscale: int, value_range, files: list[Path]) -> Path:
    """MODEL_CARD.md in the folder of the exported files."""
    path = files[0].parent / "MODEL_CARD.md"
    atomic_write_text(path, card_text(source, name, args, upscale, value_range, files))
    return path

"""`cyclesr export --format torch,safetensors,onnx` and the model card: the ONNX file run in ONNX Runtime gives the
torch net's output, safetensors round-trips bit for bit, `upscale`/`eval` take every format, and a damaged file of
each format is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cyclesr_dist.data.images import load_rgb, save_rgb
from cyclesr_dist.errors import BadInput
from cyclesr_dist.models import SR_NETS
from cyclesr_dist.serve.export import FORMATS, export_sr, load_sr, read_sr_source
from cyclesr_dist.serve.model_card import card_text

ROOT = Path(__file__).resolve().parents[1]
ARGS = {"nf": 8, "nb": 2, "bicubic_skip": True}


def cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cyclesr_dist.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small SR net trained (as far as its file says) in [0, 1], exported in every format by the CLI."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    net = SR_NETS.build("vdsr_lr", ARGS)
    with torch.no_grad():  # weights away from their init, so that a wrong mapping or layout shows
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    export_sr(net, "vdsr_lr", ARGS, root / "source.pt", (0.0, 1.0))
    done = cli(
        "export",
        "--checkpoint",
        str(root / "source.pt"),
        "--out",
        str(root / "out" / "sr"),
        "--format",
        ",".join(FORMATS),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    paths = sorted((root / "out").iterdir())
    return {p.suffix: p for p in paths} | {"source": root / "source.pt", "root": root}


@pytest.mark.parametrize("shape", [(1, 3, 37, 29), (2, 3, 50, 70)])  # not multiples of any tile, batch 2
def test_every_format_gives_the_torch_nets_output(exported: dict[str, Path], shape: tuple[int, ...]) -> None:
    reference = load_sr(exported["source"])
    x = torch.rand(*shape) * 2 - 1
    with torch.no_grad():
        want = reference(x)
        assert torch.equal(load_sr(exported[".pt"])(x), want)
        assert torch.equal(load_sr(exported[".safetensors"])(x), want)  # bit for bit
        got = load_sr(exported[".onnx"])(x)
    assert got.shape == want.shape and (got - want).abs().max() <= 1e-4


def test_safetensors_keeps_what_rebuilds_the_net(exported: dict[str, Path]) -> None:
    source, back = read_sr_source(exported["source"]), read_sr_source(exported[".safetensors"])
    assert (back.name, back.args, back.value_range) == ("vdsr_lr", ARGS, (0.0, 1.0))
    assert back.state_dict.keys() == source.state_dict.keys()
    assert all(torch.equal(back.state_dict[k], v) for k, v in source.state_dict.items())


def test_onnx_graph_takes_unit_range_rgb_with_the_mapping_inside(exported: dict[str, Path]) -> None:
    """In ONNX Runtime directly, as a deployer would call it: [0, 1] in, [0, 1] out, metadata names the net."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported[".onnx"]), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["name"] == "vdsr_lr" and meta["upscale"] == "4" and meta["value_range"] == "[0.0, 1.0]"
    unit = np.random.default_rng(0).random((1, 3, 21, 33)).astype(np.float32)
    out = session.run(None, {"lr": unit})[0]
    with torch.no_grad():
        want = (load_sr(exported["source"])(torch.from_numpy(unit) * 2 - 1) + 1) / 2
    assert out.shape == (1, 3, 84, 132) and np.abs(out - want.numpy()).max() <= 5e-5


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".onnx"])
def test_a_damaged_file_of_each_format_is_one_line(exported: dict[str, Path], suffix: str, tmp_path: Path) -> None:
    damaged = tmp_path / f"sr{suffix}"
    data = exported[suffix].read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match=f"sr{suffix} is not an"):
        load_sr(damaged)


def test_cli_exports_every_format_with_a_model_card_and_upscales_with_each(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    assert sorted(p.name for p in exported[".onnx"].parent.iterdir()) == [
        "MODEL_CARD.md",
        "sr.onnx",
        "sr.pt",
        "sr.safetensors",
    ]
    card = exported[".md"].read_text()
    assert "`vdsr_lr`" in card and "sr.onnx" in card and "not known" in card  # an exported file has no run folder
    lr = (np.random.default_rng(1).random((23, 31, 3)) * 255).astype(np.uint8)
    save_rgb(lr, tmp_path / "photo.png")
    outputs = {}
    for suffix in (".onnx", ".safetensors"):
        done = cli(
            "upscale",
            "--checkpoint",
            str(exported[suffix]),
            "--out",
            str(tmp_path / suffix),
            "--tile",
            "10",
            str(tmp_path / "photo.png"),
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[suffix] = load_rgb(tmp_path / suffix / "photo.png").astype(int)
    assert outputs[".onnx"].shape == (92, 124, 3)
    assert np.abs(outputs[".onnx"] - outputs[".safetensors"]).max() <= 1  # the same pixels, up to rounding
    bad = cli("export", "--checkpoint", str(exported["source"]), "--out", str(tmp_path / "x"), "--format", "tflite")
    assert (
        bad.returncode == 2 and "--format 'tflite': unknown ['tflite']; valid: torch, safetensors, onnx" in bad.stderr
    )


def test_model_card_of_a_training_run_names_data_settings_validation_and_command(tmp_path: Path) -> None:
    """From a checkpoint folder the card reads the run: its data folders and counts, the measured settings, the
    last validation at or before the checkpoint and the commands that started and resumed it."""
    run = tmp_path / "run"
    step = run / "checkpoints" / "step-00000020"
    step.mkdir(parents=True)
    (step / "meta.json").write_text('{"step": 20, "world_size": 1, "networks": {}, "files": {}}')
    for sub, n in (("hr", 3), ("real_lr", 2)):
        for i in range(n):
            save_rgb(np.zeros((8, 8, 3), np.uint8), tmp_path / "data" / sub / f"{i}.png")
    config = {"max_steps": 40, "data": {"kind": "folder", "root": str(tmp_path / "data"), "hr_to_lr": "sampled"}}
    config["model"] = {"generator": {"args": {"input_blur": 0.42, "jpeg_quality": [70, 84]}}}
    import yaml

    (run / "config.yaml").write_text(yaml.safe_dump(config))
    log = ['{"step": 10, "val/psnr_rgb": 30.1, "val/bicubic_psnr_rgb": 29.5}', '{"step": 15, "loss/SR": 0.1}']
    log.append('{"step": 30, "val/psnr_rgb": 31.0, "val/bicubic_psnr_rgb": 29.5}')  # after the checkpoint
    (run / "train_log.jsonl").write_text("\n".join(log) + "\n")
    (run / "commands.txt").write_text("cyclesr train --config configs/demo.yaml max_steps=40\n")
    text = card_text(step, "vdsr_lr", ARGS, 4, (-1.0, 1.0), [tmp_path / "sr.pt"])
    assert "3 images in" in text and "2 images in" in text and "`sampled`" in text
    assert "`0.42`" in text and "`[70, 84]`" in text and "step 20 of 40" in text
    assert "Validation at step 10" in text and "SR 30.10 dB, bicubic 29.50 dB" in text
    assert "cyclesr train --config configs/demo.yaml max_steps=40" in text

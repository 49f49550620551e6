"""Tiled upscaling, SR export/load, evaluate_pairs and the eval/upscale/export sub-commands (exported-file path)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from cyclesr_dist.cli import main
from cyclesr_dist.data.images import save_rgb
from cyclesr_dist.models import SR_NETS
from cyclesr_dist.serve import evaluate
from cyclesr_dist.serve.export import export_sr, load_sr
from cyclesr_dist.serve.tiling import upscale_image, upscale_tensor

NET_ARGS = {"nf": 8, "nb": 3, "upscale": 4}
# vdsr_lr receptive-field radius in LR pixels: head + nb + 1 body convs at LR (nb + 2 = 5), the first upsampler
# conv (1), the x2 conv (0.5) and the two x4 tail convs (0.5) -> 7.
RF_RADIUS = 7


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = SR_NETS.build("vdsr_lr", NET_ARGS)
    # PyTorch's default init instead of the project's N(0, 0.02): a random net whose output is far from flat grey,
    # so tiling seams would show.
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.reset_parameters()
    return net.eval()


@pytest.fixture(scope="module")
def lr_image() -> np.ndarray:
    return skdata.astronaut()[60:100, 200:252].copy()  # 40x52: not a multiple of the tile


def test_tiled_equals_untiled(net: torch.nn.Module, lr_image: np.ndarray) -> None:
    full = upscale_tensor(net, lr_image, tile=None)
    assert full.shape == (3, 160, 208) and full.std() > 0.05
    tiled = upscale_tensor(net, lr_image, tile=16, overlap=RF_RADIUS + 1)
    # Every output pixel sees exactly the same inputs; only the float summation order may differ between the
    # convolution kernels chosen for different input sizes, so float32 rounding (~1e-6 here) is the tolerance.
    torch.testing.assert_close(tiled, full, atol=1e-5, rtol=0)
    # ...and after quantization at most a rounding flip of 1 (a value within 1e-5 of a .5 boundary).
    a = upscale_image(net, lr_image, tile=None)
    b = upscale_image(net, lr_image, tile=16, overlap=RF_RADIUS + 1)
    assert a.shape == b.shape == (160, 208, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1 and (a == b).mean() > 0.999
    # The test is not vacuous: without enough context the tile seams differ.
    assert (upscale_tensor(net, lr_image, tile=16, overlap=0) - full).abs().max() > 1e-3


def test_output_size_any_shape(net: torch.nn.Module) -> None:
    img = np.random.default_rng(0).integers(0, 256, (13, 37, 3), dtype=np.uint8)
    for tile in (None, 8, 128):
        assert upscale_image(net, img, tile=tile, overlap=4).shape == (52, 148, 3)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        upscale_image(net, img.astype(np.float32))


def test_upscale_restores_train_mode(net: torch.nn.Module, lr_image: np.ndarray) -> None:
    net.train()
    try:
        upscale_image(net, lr_image[:8, :8])
        assert net.training
    finally:
        net.eval()


def test_export_load_roundtrip(net: torch.nn.Module, lr_image: np.ndarray, tmp_path) -> None:
    path = export_sr(net, "vdsr_lr", NET_ARGS, tmp_path / "sub" / "sr.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["sr.pt"]  # no temp file left behind
    payload = torch.load(path, weights_only=True)
    assert payload["name"] == "vdsr_lr" and payload["args"] == NET_ARGS and payload["upscale"] == 4
    assert set(payload["state_dict"]) == set(net.state_dict())
    loaded = load_sr(path)
    assert not loaded.training and loaded.upscale == 4
    np.testing.assert_array_equal(upscale_image(loaded, lr_image, tile=None), upscale_image(net, lr_image, tile=None))
    torch.testing.assert_close(upscale_tensor(loaded, lr_image, tile=None), upscale_tensor(net, lr_image, tile=None))


def test_export_rejects_non_plain_args(net: torch.nn.Module, tmp_path) -> None:
    with pytest.raises(TypeError, match="plain type"):
        export_sr(net, "vdsr_lr", {"nf": torch.tensor(8)}, tmp_path / "sr.pt")
    assert not list(tmp_path.iterdir())


def test_load_rejects_other_files(tmp_path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an exported SR network"):
        load_sr(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError):
        load_sr(tmp_path / "missing.pt")


def _pairs(lr_image: np.ndarray, n: int = 2):
    rng = np.random.default_rng(1)
    for i in range(n):
        lr = lr_image[:, i : i + 32]
        hr = rng.integers(0, 256, (lr.shape[0] * 4 + 3, lr.shape[1] * 4 + 1, 3), dtype=np.uint8)  # cropped to 4x
        yield f"img{i}", lr, hr


def test_evaluate_pairs(net: torch.nn.Module, lr_image: np.ndarray, capsys) -> None:
    res = evaluate.evaluate_pairs(net, _pairs(lr_image), scale=4, max_shift=2)
    assert capsys.readouterr().out == ""
    assert res["count"] == 2 and res["shave"] == 4 and [im["name"] for im in res["images"]] == ["img0", "img1"]
    keys = {"psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "psnr_rgb_best_shift"}
    assert set(res["mean"]) == keys | {f"bicubic_{k}" for k in keys}
    assert res["images"][0]["hr_size"] == [160, 128]
    assert res["mean"]["psnr_rgb"] == pytest.approx(np.mean([im["psnr_rgb"] for im in res["images"]]))
    # Bicubic of the HR's own 4x downscale beats random weights by far.
    hr = skdata.astronaut()[:160, :128].copy()
    lr = np.asarray(Image.fromarray(hr).resize((32, 40), Image.BICUBIC))
    res = evaluate.evaluate_pairs(net, [("a", lr, hr)], scale=4, tile=16)
    assert "psnr_rgb_best_shift" not in res["mean"]
    assert res["mean"]["bicubic_psnr_rgb"] > 20 and res["mean"]["bicubic_psnr_rgb"] > res["mean"]["psnr_rgb"]
    with pytest.raises(ValueError, match="x4 of the 32x40 LR is 128x160: the HR image is too small"):
        evaluate.evaluate_pairs(net, [("small", lr, hr[:-1])], scale=4)
    # up to scale - 1 extra HR pixels are what a downscale of a size that is no multiple of 4 leaves: cropped
    padded = np.pad(hr, ((0, 3), (0, 3), (0, 0)))
    same = evaluate.evaluate_pairs(net, [("a", lr, padded)], scale=4, tile=16)
    assert same["mean"]["psnr_rgb"] == res["mean"]["psnr_rgb"]
    with pytest.raises(ValueError, match="not a x4 pair"):  # anything larger is another pair, unless asked
        evaluate.evaluate_pairs(net, [("a", lr, np.pad(hr, ((0, 4), (0, 0), (0, 0))))], scale=4)
    cropped = evaluate.evaluate_pairs(
        net, [("a", lr, np.pad(hr, ((0, 8), (0, 8), (0, 0))))], scale=4, tile=16, crop_hr=True
    )
    assert cropped["mean"]["psnr_rgb"] == pytest.approx(res["mean"]["psnr_rgb"], abs=1e-3)
    with pytest.raises(ValueError, match="x4"):
        evaluate.evaluate_pairs(net, [("a", lr, hr)], scale=2)


def test_cli_upscale_export_eval(net: torch.nn.Module, lr_image: np.ndarray, tmp_path, capsys) -> None:
    ckpt = export_sr(net, "vdsr_lr", NET_ARGS, tmp_path / "sr.pt")
    save_rgb(lr_image, tmp_path / "in" / "a.png")
    save_rgb(lr_image[:17, :23], tmp_path / "in" / "b.jpg")
    assert main(f"upscale --checkpoint {ckpt} --out {tmp_path}/out --tile 16 {tmp_path}/in".split()) == 0
    assert Image.open(tmp_path / "out" / "a.png").size == (208, 160)
    assert Image.open(tmp_path / "out" / "b.png").size == (92, 68)

    assert main(f"export --checkpoint {ckpt} --out {tmp_path}/re.pt".split()) == 0
    assert torch.load(tmp_path / "re.pt", weights_only=True)["args"] == NET_ARGS

    save_rgb(np.repeat(np.repeat(lr_image, 4, 0), 4, 1), tmp_path / "hr" / "a.png")
    argv = f"eval --checkpoint {ckpt} --lr {tmp_path}/in --hr {tmp_path}/hr --json {tmp_path}/r.json --max-shift 2"
    capsys.readouterr()
    assert main(argv.split()) == 0
    captured = capsys.readouterr()
    assert "mean (1)" in captured.out and "b" in captured.err  # b has no HR: warned and skipped
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["count"] == 1 and result["images"][0]["name"] == "a" and "psnr_rgb_best_shift" in result["mean"]

    assert main(f"eval --checkpoint {tmp_path}/nope.pt --lr x --hr y".split()) == 2


class SROnly:
    """What a backend hands the checkpoint manager, for a run whose only group is the SR net."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net

    def group_states(self) -> dict:
        return {"SR": {"nets": {"sr": self.net.state_dict()}, "optimizer": {}}}

    def save_sharded(self, step_dir) -> None:
        pass


def test_load_from_training_checkpoint_dir(net: torch.nn.Module, lr_image: np.ndarray, tmp_path, capsys) -> None:
    from cyclesr_dist.engine.checkpoint import CheckpointManager

    meta = {"networks": {"sr": {"group": "SR", "registry": "sr", "name": "vdsr_lr", "args": NET_ARGS}}, "export": "sr"}
    CheckpointManager(tmp_path / "run" / "checkpoints", keep=1).save(7, meta, SROnly(net), {})
    expected = upscale_image(net, lr_image, tile=None)
    # a step directory, the checkpoints/ directory and the run's output directory all resolve to it
    for path in ("run/checkpoints/step-00000007", "run/checkpoints", "run"):
        np.testing.assert_array_equal(upscale_image(load_sr(tmp_path / path), lr_image, tile=None), expected)
    assert main(f"export --checkpoint {tmp_path}/run --out {tmp_path}/sr.pt".split()) == 0
    np.testing.assert_array_equal(upscale_image(load_sr(tmp_path / "sr.pt"), lr_image, tile=None), expected)


def test_a_net_trained_in_another_value_range_upscales_in_it(
    net: torch.nn.Module, lr_image: np.ndarray, tmp_path
) -> None:
    """A net trained with `data.value_range: [0, 1]` (vega's) gets its input in [0, 1] and its output read back
    from [0, 1], from an export and from a training checkpoint (the range stored with the network); files without
    a range are [-1, 1] nets."""
    from cyclesr_dist.data.images import uint8_to_model
    from cyclesr_dist.engine.checkpoint import CheckpointManager

    with torch.no_grad():
        x = uint8_to_model(lr_image).unsqueeze(0)
        expected = (net(x.add(1).mul(0.5)).mul(2).sub(1))[0]  # [-1, 1] -> [0, 1] -> net -> [-1, 1]
    assert (expected - net(x)[0]).abs().max() > 0.1  # the mapping matters for this net

    export_sr(net, "vdsr_lr", NET_ARGS, tmp_path / "sr.pt", value_range=(0.0, 1.0))
    assert torch.load(tmp_path / "sr.pt", weights_only=True)["value_range"] == [0.0, 1.0]
    torch.testing.assert_close(upscale_tensor(load_sr(tmp_path / "sr.pt"), lr_image, tile=16), expected)

    entry = {"group": "SR", "registry": "sr", "name": "vdsr_lr", "args": NET_ARGS, "value_range": [0, 1]}
    CheckpointManager(tmp_path / "run" / "checkpoints", keep=1).save(
        3, {"networks": {"sr": entry}, "export": "sr"}, SROnly(net), {}
    )
    torch.testing.assert_close(upscale_tensor(load_sr(tmp_path / "run"), lr_image, tile=None), expected)
    assert main(f"export --checkpoint {tmp_path}/run --out {tmp_path}/re.pt".split()) == 0  # the range travels
    torch.testing.assert_close(upscale_tensor(load_sr(tmp_path / "re.pt"), lr_image, tile=None), expected)

    payload = torch.load(tmp_path / "sr.pt", weights_only=True) | {"value_range": "zero to one"}  # damaged
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"recorded value_range 'zero to one' is not \[low, high\]"):
        load_sr(tmp_path / "bad.pt")
    assert main(f"upscale --checkpoint {tmp_path}/bad.pt --out {tmp_path}/o {tmp_path}/sr.pt".split()) == 2

    del entry["value_range"]  # a checkpoint from before the option
    CheckpointManager(tmp_path / "old" / "checkpoints", keep=1).save(
        3, {"networks": {"sr": entry}, "export": "sr"}, SROnly(net), {}
    )
    torch.testing.assert_close(
        upscale_tensor(load_sr(tmp_path / "old"), lr_image, tile=None), upscale_tensor(net, lr_image, tile=None)
    )

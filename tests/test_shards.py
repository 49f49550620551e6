"""The shard writer: real tar shards from small real photos (scikit-image's sample images)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image

from cyclesr_dist.cli import main
from cyclesr_dist.config import load_config
from cyclesr_dist.data.images import decode_npy, decode_rgb, list_images, load_rgb
from cyclesr_dist.data.loaders import with_epoch_from_data
from cyclesr_dist.data.shards import crop_positions, sample_key, write_shards
from cyclesr_dist.data.val_shards import iter_val_pairs
from cyclesr_dist.errors import BadInput

PHOTOS = Path(skimage.__file__).parent / "data"
HR, LR = 32, 8  # crop sizes (scale 4), tiny so the tests are fast


def photo(name: str, size: tuple[int, int]) -> Image.Image:
    with Image.open(PHOTOS / name) as img:
        return img.convert("RGB").resize(size, Image.BICUBIC)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    hr, lr, vhr, vlr = (root / d for d in ("hr", "lr", "val_hr", "val_lr"))
    for d in (hr / "nested" / "deeper", lr, vhr / "scenes", vlr / "scenes"):
        d.mkdir(parents=True)
    photo("astronaut.png", (80, 64)).save(hr / "astronaut.png")
    photo("coffee.png", (64, 64)).save(hr / "nested" / "coffee.jpg", quality=95)
    photo("chelsea.png", (96, 40)).save(hr / "nested" / "deeper" / "chelsea.webp", lossless=True)
    photo("rocket.jpg", (20, 30)).save(hr / "tiny.png")  # smaller than the 32 crop
    (hr / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    buf = io.BytesIO()
    photo("coffee.png", (64, 48)).save(buf, format="PNG")
    (hr / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (hr / "notes.txt").write_text("not an image")
    photo("rocket.jpg", (40, 24)).save(lr / "rocket.jpg", quality=90)
    photo("chelsea.png", (24, 24)).save(lr / "chelsea.bmp")
    photo("coffee.png", (6, 6)).save(lr / "speck.png")  # smaller than the 8 crop
    for i, name in enumerate(("astronaut.png", "coffee.png")):
        photo(name, (48, 40)).save(vhr / "scenes" / f"s{i}.png")
        photo(name, (12, 10)).save(vlr / "scenes" / f"s{i}.jpg", quality=95)  # matched by stem, not suffix
    photo("chelsea.png", (48, 40)).save(vhr / "scenes" / "unmatched.png")
    return {"hr": hr, "lr": lr, "val_hr": vhr, "val_lr": vlr}


def members(tar_path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(tar_path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def write(folders: dict[str, Path], out: Path, **kw) -> dict:
    return write_shards(
        folders["hr"],
        folders["lr"],
        out,
        val_hr_dir=folders["val_hr"],
        val_lr_dir=folders["val_lr"],
        hr_crop=HR,
        lr_crop=LR,
        shard_size=4,
        **kw,
    )


def test_crop_grid() -> None:
    assert crop_positions(31, 32, 32) == []
    assert crop_positions(64, 32, 32) == [0, 32]
    assert crop_positions(80, 32, 32) == [0, 32, 48]  # 16 px left over (= half a crop): one crop flush with the edge
    assert crop_positions(70, 32, 32) == [0, 32]  # 6 px left over: dropped
    assert crop_positions(64, 32, 16) == [0, 16, 32]


def test_keys_are_webdataset_safe() -> None:
    key = sample_key("a dir/__weird.name.v2.png")
    assert "." not in key and "/" not in key and not key.startswith("_")
    assert sample_key("x.png") != sample_key("x.jpg")  # same stem, different files: no collision


@pytest.mark.parametrize("encoding", ["png", "npy"])
def test_round_trip(folders: dict[str, Path], tmp_path: Path, encoding: str) -> None:
    manifest = write(folders, tmp_path / "out", workers=1, encoding=encoding)
    out = tmp_path / "out"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    # astronaut 80x64 -> 3x2 crops, coffee 64x64 -> 2x2, chelsea 96x40 -> 3x1; rocket 40x24 -> 5x3, chelsea 24x24 -> 3x3
    assert manifest["counts"] == {"hr": 6 + 4 + 3, "lr": 15 + 9, "val": 2}
    assert manifest["splits"]["hr"]["files"] == 3 and manifest["splits"]["lr"]["files"] == 2
    assert manifest["hr_crop"] == HR and manifest["lr_crop"] == LR and manifest["scale"] == 4
    assert manifest["encoding"] == encoding
    for split, crop in (("hr", HR), ("lr", LR)):
        entry = manifest["splits"][split]
        assert entry["shards"] == [f"{split}-{i:06d}.tar" for i in range(len(entry["shards"]))]
        assert sum(entry["shard_samples"]) == entry["samples"] and max(entry["shard_samples"]) == 4
        root = folders[split]
        seen = 0
        for shard in entry["shards"]:
            files = dict(members(out / shard))
            keys = sorted({name.split(".", 1)[0] for name in files})
            for key in keys:
                meta = json.loads(files[f"{key}.json"])
                crop_arr = {"png": decode_rgb, "npy": decode_npy}[encoding](files[f"{key}.{encoding}"])
                assert crop_arr.shape == (crop, crop, 3) and crop_arr.dtype == np.uint8
                y, x = meta["y"], meta["x"]
                assert key.endswith(f"-y{y:05d}-x{x:05d}")
                # lossless: exactly that region of the (RGB-converted) source
                np.testing.assert_array_equal(crop_arr, load_rgb(root / meta["src"])[y : y + crop, x : x + crop])
                seen += 1
        assert seen == entry["samples"]
    # tar headers are fixed
    with tarfile.open(out / "hr-000000.tar") as tar:
        for m in tar.getmembers():
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "cyclesr", "cyclesr")


def test_unknown_crop_encoding_is_one_line(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="unknown crop encoding 'bmp': use one of png, npy"):
        write(folders, tmp_path / "out", encoding="bmp")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_skipped_files_are_listed(folders: dict[str, Path], tmp_path: Path) -> None:
    manifest = write(folders, tmp_path / "out", workers=1)
    reasons = {(s["split"], s["path"]): s["reason"] for s in manifest["skipped"]}
    assert reasons[("hr", "tiny.png")].startswith("too small: 20x30")
    assert reasons[("hr", "corrupt.png")].startswith("unreadable")
    assert reasons[("hr", "truncated.png")].startswith("unreadable")
    assert reasons[("lr", "speck.png")].startswith("too small")
    assert reasons[("val", "scenes/unmatched.png")] == "HR image without a matching LR image"
    assert len(reasons) == 5  # notes.txt is not an image at all: not listed
    assert str(folders["hr"]) not in json.dumps(manifest)  # no absolute paths: the manifest is portable


def test_deterministic_bytes_serial_and_parallel(folders: dict[str, Path], tmp_path: Path) -> None:
    write(folders, tmp_path / "a", workers=1)
    write(folders, tmp_path / "b", workers=2)  # process pool: same bytes, same order
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert any(n.startswith("val-") for n in names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_rewrite_removes_stale_shards(folders: dict[str, Path], tmp_path: Path) -> None:
    write(folders, tmp_path / "out", workers=1)
    manifest = write_shards(
        folders["hr"], folders["lr"], tmp_path / "out", hr_crop=HR, lr_crop=LR, shard_size=100, workers=1
    )
    tars = sorted(p.name for p in (tmp_path / "out").glob("*.tar"))
    assert tars == ["hr-000000.tar", "lr-000000.tar"] and "val" not in manifest["splits"]


def test_mode_conversions_and_exif(tmp_path: Path) -> None:
    hr, lr = tmp_path / "hr", tmp_path / "lr"
    hr.mkdir()
    lr.mkdir()
    rgb = photo("astronaut.png", (32, 32))
    rgb.convert("L").save(hr / "l.png")
    rgb.convert("LA").save(hr / "la.png")
    rgb.convert("P").save(hr / "p.png")
    rgba = rgb.convert("RGBA")
    alpha = np.full((32, 32), 255, np.uint8)
    alpha[:, :16] = 0  # left half fully transparent -> white after compositing
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(hr / "rgba.png")
    Image.fromarray(np.full((32, 32), 65535, np.uint16)).save(hr / "i16.png")  # 16-bit white
    rgb.convert("CMYK").save(hr / "cmyk.tiff")
    # EXIF orientation 6 (rotate 90° clockwise to display): stored 64 wide x 32 high, upright 32 wide x 64 high
    stored = np.concatenate([np.asarray(photo("coffee.png", (32, 32))), np.asarray(photo("chelsea.png", (32, 32)))], 1)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(hr / "exif.jpg", quality=100, subsampling=0, exif=exif.tobytes())
    rgb.save(lr / "x.png")
    modes = {}
    for name in ("l.png", "la.png", "p.png", "rgba.png", "i16.png", "cmyk.tiff", "exif.jpg"):
        with Image.open(hr / name) as img:
            modes[name] = img.mode
    assert modes == {
        "l.png": "L",
        "la.png": "LA",
        "p.png": "P",
        "rgba.png": "RGBA",
        "i16.png": "I;16",
        "cmyk.tiff": "CMYK",
        "exif.jpg": "RGB",
    }

    manifest = write_shards(hr, lr, tmp_path / "out", hr_crop=32, lr_crop=8, shard_size=100, workers=1)
    assert manifest["skipped"] == [] and manifest["counts"]["hr"] == 6 + 2
    files = dict(members(tmp_path / "out" / "hr-000000.tar"))
    metas = [json.loads(data) for name, data in files.items() if name.endswith(".json")]
    # upright exif.jpg: two crops stacked vertically (x 0, y 0 and 32), not side by side
    assert sorted((m["src"], m["y"], m["x"]) for m in metas) == [
        ("cmyk.tiff", 0, 0),
        ("exif.jpg", 0, 0),
        ("exif.jpg", 32, 0),
        ("i16.png", 0, 0),
        ("l.png", 0, 0),
        ("la.png", 0, 0),
        ("p.png", 0, 0),
        ("rgba.png", 0, 0),
    ]

    def crop_of(src: str, y: int = 0) -> np.ndarray:
        for name, data in files.items():
            if name.endswith(".json") and json.loads(data) == {"src": src, "x": 0, "y": y}:
                return decode_rgb(files[name.replace(".json", ".png")])
        raise KeyError(src)

    for src in ("l.png", "la.png", "p.png", "rgba.png", "i16.png", "cmyk.tiff", "exif.jpg"):
        arr = crop_of(src)
        assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8, src
    gray = crop_of("l.png")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert (crop_of("i16.png") == 255).all()  # 16-bit scaled, not clipped
    assert (crop_of("rgba.png")[:, :16] == 255).all()
    # upright image: top = stored right half (chelsea) rotated, bottom = stored left half (coffee) rotated
    upright = np.rot90(stored, -1)
    for y in (0, 32):
        err = np.abs(crop_of("exif.jpg", y).astype(int) - upright[y : y + 32].astype(int)).mean()
        assert err < 4, (y, err)


def test_val_pairs(folders: dict[str, Path], tmp_path: Path) -> None:
    write(folders, tmp_path / "out", workers=1)
    pairs = list(iter_val_pairs(tmp_path / "out"))
    assert len(pairs) == 2
    for _key, lr, hr in pairs:
        assert lr.shape == (10, 12, 3) and hr.shape == (40, 48, 3) and lr.dtype == hr.dtype == np.uint8
    src = {key: (lr, hr) for key, lr, hr in pairs}
    key0 = sample_key("scenes/s0", strip_suffix=False)
    np.testing.assert_array_equal(src[key0][1], load_rgb(folders["val_hr"] / "scenes" / "s0.png"))
    np.testing.assert_array_equal(src[key0][0], load_rgb(folders["val_lr"] / "scenes" / "s0.jpg"))
    # same pairs through a brace pattern, and split over two ranks
    pattern = str(tmp_path / "out" / "val-{000000..000000}.tar")
    assert [k for k, _, _ in iter_val_pairs(pattern)] == [k for k, _, _ in pairs]
    ranks = [[k for k, _, _ in iter_val_pairs(tmp_path / "out", rank=r, world_size=2)] for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == sorted(src) and not set(ranks[0]) & set(ranks[1])


def test_cli_run_prints_counts_and_exits_zero(folders: dict[str, Path], tmp_path: Path, capsys) -> None:
    argv = [
        "--hr",
        str(folders["hr"]),
        "--lr",
        str(folders["lr"]),
        "--out",
        str(tmp_path / "out"),
        "--hr-crop",
        "32",
        "--lr-crop",
        "8",
        "--shard-size",
        "4",
        "--workers",
        "1",
    ]
    assert main(["data", "shard", *argv]) == 0
    text = capsys.readouterr().out
    assert "hr: 3 files, 13 samples in 4 shards" in text and "skipped: 4 files" in text and "tiny.png" in text
    assert main(["data", "shard", *argv[:1], str(tmp_path / "missing"), *argv[2:]]) == 2
    # `python -m cyclesr_dist.cli` works too
    proc = subprocess.run(
        [sys.executable, "-m", "cyclesr_dist.cli", "data", "shard", *argv[:5], str(tmp_path / "m"), *argv[6:]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m" / "manifest.json").is_file()


def test_epoch_from_data_is_one_pass_over_the_hr_crops(folders: dict[str, Path], tmp_path: Path) -> None:
    """data.steps_per_epoch=0: an epoch is ⌊HR crops / batch⌋ steps, read from the manifest (shards) or the hr/
    folder; too few images or a bare URL list is one clear error."""
    manifest = write(folders, tmp_path / "shards")
    hr = manifest["counts"]["hr"]
    shards = [f"data.hr_shards={tmp_path / 'shards'}", "data.steps_per_epoch=0", "data.batch_size=2"]
    config = with_epoch_from_data(load_config(None, ["data.kind=webdataset", *shards]))
    assert hr >= 4 and config.data.steps_per_epoch == hr // 2
    assert config.total_steps == (config.optim.n_epoch + config.optim.n_epoch_decay) * (hr // 2)
    assert with_epoch_from_data(load_config(None, ["data.steps_per_epoch=7"])).data.steps_per_epoch == 7

    (tmp_path / "folder").mkdir()
    shutil.copytree(folders["hr"], tmp_path / "folder" / "hr")
    folder = [f"data.root={tmp_path / 'folder'}", "data.kind=folder", "data.steps_per_epoch=0"]
    count = len(list_images(folders["hr"]))
    assert with_epoch_from_data(load_config(None, [*folder, "data.batch_size=1"])).data.steps_per_epoch == count
    with pytest.raises(BadInput, match="there are .* for a batch of"):
        with_epoch_from_data(load_config(None, [*folder, f"data.batch_size={count + 1}"]))
    with pytest.raises(BadInput, match="list of shard URLs"):
        with_epoch_from_data(
            load_config(
                None,
                [
                    "data.kind=webdataset",
                    "data.steps_per_epoch=0",
                    f"data.hr_shards={tmp_path / 'shards' / 'hr-000000.tar'}",
                ],
            )
        )

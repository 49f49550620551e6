"""The streaming loader, on real tar shards written from small real photos (no mocks)."""

from __future__ import annotations

import functools
import http.server
import io
import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
import webdataset as wds
from PIL import Image

from cyclesr_dist.data.augment import random_patch
from cyclesr_dist.data.folder import FolderUnpairedLoader
from cyclesr_dist.data.images import (
    batch_to_model,
    bicubic_resize,
    encode_npy,
    encode_png,
    uint8_to_model,
    uint8_to_pixels,
)
from cyclesr_dist.data.manifest import check_shards, split_urls
from cyclesr_dist.data.shards import write_shards
from cyclesr_dist.data.stream import StreamingUnpairedLoader, shard_assignment, training_shards
from cyclesr_dist.data.stream.domain import decode_member

PHOTOS = Path(skimage.__file__).parent / "data"
PATCH, SCALE = 32, 4  # HR training patch 32, LR patch 8 (stored crops: 48 and 12)


def shard_urls_from_dir(out: Path) -> tuple[list[str], list[str]]:
    return split_urls(out, "hr"), split_urls(out, "lr")


def photo(name: str, size: tuple[int, int]) -> Image.Image:
    with Image.open(PHOTOS / name) as img:
        return img.convert("RGB").resize(size, Image.BICUBIC)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 HR crops (48²) in 8 shards, 12 real-LR crops (12²) in 6 shards."""
    root = tmp_path_factory.mktemp("stream")
    (root / "hr").mkdir()
    (root / "lr").mkdir()
    for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"):
        photo(name, (96, 96)).save(root / "hr" / f"{Path(name).stem}.png")
    for name in ("retina.jpg", "hubble_deep_field.jpg", "horse.png"):
        photo(name, (24, 24)).save(root / "lr" / f"{Path(name).stem}.png")
    write_shards(root / "hr", root / "lr", root / "out", hr_crop=48, lr_crop=12, shard_size=2, workers=1)
    return root / "out"


@pytest.fixture(scope="module")
def bad_shards(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Two good HR shards plus a shard with a corrupt / too small / image-less member and a truncated shard."""
    root = tmp_path_factory.mktemp("bad")
    hr, lr = shard_urls_from_dir(shards)
    with wds.TarWriter(str(root / "members.tar"), encoder=False, mtime=0) as tar:
        tar.write({"__key__": "corrupt", "png": b"\x89PNG\r\n\x1a\n garbage"})
        tar.write({"__key__": "small", "png": encode_png(np.zeros((20, 20, 3), np.uint8))})
        tar.write({"__key__": "nopng", "json": b"{}"})
        tar.write({"__key__": "good", "png": encode_png(np.full((48, 48, 3), 200, np.uint8))})
    data = Path(hr[2]).read_bytes()
    (root / "truncated.tar").write_bytes(data[: 512 + 3000])  # cut inside the first member
    return {"hr": [hr[0], hr[1], str(root / "members.tar"), str(root / "truncated.tar")], "lr": lr}


def make(hr, lr, **kw) -> StreamingUnpairedLoader:
    args = {"hr_patch": PATCH, "scale": SCALE, "batch_size": 2, "num_workers": 0, "seed": 7, "shuffle_buffer": 4}
    args.update(kw)
    return StreamingUnpairedLoader(hr, lr, **args)


def take(loader: StreamingUnpairedLoader, n: int) -> list[dict[str, torch.Tensor]]:
    it = iter(loader)
    return [next(it) for _ in range(n)]


def same(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in ("hr", "clean_lr", "real_lr")
    )


def test_batches(shards: Path) -> None:
    (batch,) = take(make(shards, shards, batch_size=3), 1)
    assert set(batch) == {"hr", "clean_lr", "real_lr"}
    assert batch["hr"].shape == (3, 3, PATCH, PATCH)
    assert batch["clean_lr"].shape == batch["real_lr"].shape == (3, 3, PATCH // SCALE, PATCH // SCALE)
    # decoded pixels stay uint8 to the device (a quarter of float32's bytes); the clean LR is computed, in range
    assert batch["hr"].dtype == batch["real_lr"].dtype == torch.uint8
    assert batch["clean_lr"].dtype == torch.float32 and batch["clean_lr"].abs().max() <= 1
    model = batch_to_model(batch)
    for t in model.values():
        assert t.dtype == torch.float32 and t.min() >= -1 and t.max() <= 1
    assert torch.equal(model["hr"], torch.stack([uint8_to_model(img.permute(1, 2, 0).numpy()) for img in batch["hr"]]))
    torch.testing.assert_close(model["clean_lr"], bicubic_resize(model["hr"], 1 / SCALE).clamp(-1, 1))
    assert not torch.equal(batch["hr"][0], batch["hr"][1])


def test_a_patch_becomes_one_contiguous_copy_in_channel_first_layout() -> None:
    """The loader's per-sample tensors are laid out as their batch and the clean LR read them (the rotated
    HxWx3 view as a 3xHxW view made the worker's clean LR twice as slow), in memory of their own."""
    img = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    img.flags.writeable = False  # as decoded images are
    for seed in range(16):  # all eight dihedral transforms
        view = random_patch(img, 4, np.random.default_rng(seed), "dihedral")
        pixels = uint8_to_pixels(view)
        assert pixels.shape == (3, 4, 4) and pixels.is_contiguous()
        assert torch.equal(pixels, torch.from_numpy(view.copy()).permute(2, 0, 1))
        pixels.fill_(255)  # its own memory
    assert img.max() < 255
    with pytest.raises(TypeError, match="pixels must be uint8"):
        uint8_to_pixels(img.astype(np.int16))


def test_raw_pixel_shards_give_the_same_batches(shards: Path) -> None:
    """`--encoding npy` stores the crops' pixels as they are: the loader yields the same batches as from PNG."""
    src = shards.parent
    raw = write_shards(src / "hr", src / "lr", src / "raw", hr_crop=48, lr_crop=12, shard_size=2, encoding="npy")
    assert raw["encoding"] == "npy" and raw["counts"] == json.loads((shards / "manifest.json").read_text())["counts"]
    assert same(take(make(src / "raw", src / "raw", num_workers=2), 4), take(make(shards, shards, num_workers=2), 4))


def test_same_seed_same_data(shards: Path) -> None:
    hr, lr = shard_urls_from_dir(shards)
    a = take(make(shards, shards, num_workers=2), 4)
    assert same(a, take(make(hr, lr, num_workers=2), 4))  # folder or explicit list: same shards, same data
    assert not same(a, take(make(shards, shards, num_workers=2, seed=8), 4))
    assert not same(a, take(make(shards, shards, num_workers=2, rank=1, world_size=2), 4))  # ranks differ


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact(bad_shards: dict[str, list[str]], workers: int) -> None:
    """Consume 5 batches, checkpoint (torch.save / weights_only load), resume in a new loader: the next 6 batches
    equal those of an uninterrupted loader (bound: 0 repeated, 0 skipped), through segment boundaries and bad data."""
    kw = {"num_workers": workers, "segment_samples": 7}
    reference = make(bad_shards["hr"], bad_shards["lr"], **kw)
    expected = take(reference, 11)

    first = make(bad_shards["hr"], bad_shards["lr"], **kw)
    assert same(take(first, 5), expected[:5])
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    state = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    assert state["batches"] == 5
    if workers == 2:  # round robin: batches 0, 2, 4 came from worker 0, batches 1, 3 from worker 1
        assert [w["batches"] for w in state["workers"]] == [3, 2]
    assert any(pos[0] > 0 for w in state["workers"] for pos in (w["hr"], w["lr"]))  # crossed a segment

    resumed = make(bad_shards["hr"], bad_shards["lr"], **kw)
    resumed.load_state_dict(state)
    assert same(take(resumed, 6), expected[5:])
    assert resumed.skipped() == reference.skipped()  # counts restored, not recounted during the fast-forward
    assert resumed.state_dict()["batches"] == 11


def test_changed_config_resumes_with_fresh_streams(shards: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = make(shards, shards)
    take(first, 3)
    other = make(shards, shards, batch_size=3)
    with caplog.at_level(logging.WARNING, logger="cyclesr_dist.data.stream"):
        other.load_state_dict(first.state_dict())
    assert "batch_size" in caplog.text
    assert other.state_dict()["generation"] == 1 and other.state_dict()["total_batches"] == 3
    fresh = take(other, 2)
    assert fresh[0]["hr"].shape[0] == 3
    assert not same(fresh, take(make(shards, shards, batch_size=3), 2))  # not a replay of generation 0


def test_bad_members_and_truncated_shard_are_skipped(bad_shards: dict[str, list[str]]) -> None:
    loader = make(bad_shards["hr"], bad_shards["lr"], num_workers=2, batch_size=4)
    batches = take(loader, 12)
    assert all(b["hr"].shape == (4, 3, PATCH, PATCH) for b in batches)
    skipped = loader.skipped()
    assert skipped["hr_corrupt"] > 0 and skipped["hr_too_small"] > 0 and skipped["hr_no_image"] > 0
    assert skipped["hr_shard_errors"] > 0  # the truncated tar
    assert skipped["lr_corrupt"] == skipped["lr_shard_errors"] == 0


def test_raw_members_that_are_not_pixels_are_skipped() -> None:
    def saved(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, arr)  # allows pickled objects: a reader must not run them
        return buf.getvalue()

    good = np.full((48, 48, 3), 200, np.uint8)
    assert np.array_equal(decode_member({"npy": encode_npy(good)}, 32), good)
    assert decode_member({"npy": encode_npy(good[:20, :20])}, 32) == "too_small"
    not_pixels = [b"\x93NUMPY garbage", saved(good.astype(np.float32)), saved(good[..., 0]), saved(np.array([{}]))]
    assert [decode_member({"npy": data}, 32) for data in not_pixels] == ["corrupt"] * 4


def test_unusable_stream_raises_instead_of_hanging(tmp_path: Path, shards: Path) -> None:
    garbage = []
    for i in range(3):
        (tmp_path / f"g{i}.tar").write_bytes(b"this is not a tar file" * 100)
        garbage.append(str(tmp_path / f"g{i}.tar"))
    _, lr = shard_urls_from_dir(shards)
    with pytest.raises(RuntimeError, match="hr stream: 100 shard reads in a row gave no sample"):
        take(make(garbage, lr), 1)


def test_clear_errors_before_training(tmp_path: Path, shards: Path) -> None:
    with pytest.raises(ValueError, match="empty shard list"):
        check_shards([])
    with pytest.raises(ValueError, match="empty shard list"):
        make([], shards)
    with pytest.raises(FileNotFoundError, match="4 of 4 shards not found"):
        check_shards(str(tmp_path / "hr-{000000..000003}.tar"))
    hr, lr = shard_urls_from_dir(shards)
    with pytest.raises(FileNotFoundError, match="1 of 9 shards not found"):
        make([*hr, str(tmp_path / "gone.tar")], lr)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        make(tmp_path, tmp_path)  # a folder, but not a shard folder
    with pytest.raises(ValueError, match="larger than the stored hr crops"):
        make(shards, shards, hr_patch=64)
    with pytest.raises(ValueError, match="multiple of scale"):
        make(shards, shards, hr_patch=30)
    assert check_shards(str(shards / "hr-{000000..000007}.tar")) == hr
    assert check_shards([str(shards / "hr-{000000..000003}.tar"), str(shards / "hr-{000004..000007}.tar")]) == hr
    assert check_shards(shards) == sorted(hr + lr)
    assert check_shards("pipe:cat /nonexistent.tar") == ["pipe:cat /nonexistent.tar"]  # not probed


def test_two_ranks_two_workers_cover_an_epoch_without_duplicates(shards: Path) -> None:
    hr, _ = shard_urls_from_dir(shards)

    def keys(urls: list[str]) -> list[str]:
        pipeline = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples())
        return [s["__key__"] for s in pipeline]

    everything = keys(hr)
    assert len(everything) == len(set(everything)) == 16
    # the training pipelines of (rank, worker) draw from disjoint shares that together hold every sample once
    shares = [training_shards(hr, r, 2, w, 2) for r in (0, 1) for w in (0, 1)]
    assert shares == [a for r in (0, 1) for a in shard_assignment(hr, r, 2, 2)]
    assert all(len(s) == 2 for s in shares)
    assert sorted(k for share in shares for k in keys(share)) == sorted(everything)


def test_fewer_shards_than_ranks_times_workers(shards: Path, caplog: pytest.LogCaptureFixture) -> None:
    hr, lr = shard_urls_from_dir(shards)
    with caplog.at_level(logging.WARNING, logger="cyclesr_dist.data.stream"):
        loader = make(hr[:1], lr[:1], num_workers=2, rank=1, world_size=2)
    assert "workers share shards" in caplog.text
    a, b = take(loader, 2)  # one batch from each worker, no hang, no "fewer shards than workers" error
    assert not torch.equal(a["hr"], b["hr"])


@pytest.mark.skipif(shutil.which("curl") is None, reason="webdataset streams http(s) through curl")
def test_streams_over_http_without_a_local_copy(shards: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shards))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        hr, _ = shard_urls_from_dir(shards)
        assert check_shards(base, "hr") == [base + Path(u).name for u in hr]  # manifest read over http
        over_http = take(make(base, base, num_workers=2), 3)
        assert same(over_http, take(make(shards, shards, num_workers=2), 3))  # same data as from local disk
        dead = [f"http://127.0.0.1:{server.server_address[1]}/missing-{i}.tar" for i in range(2)]
        with pytest.raises(RuntimeError, match="shard reads in a row gave no sample"):
            take(make(dead, base), 1)  # unreachable shards at train time: a clear error, not a hang
    finally:
        server.shutdown()


@pytest.mark.parametrize("workers", [0, 1])
def test_loaders_leave_the_global_rng_alone(shards: Path, demo_data: Path, workers: int) -> None:
    """A resumed run restores the torch RNG, then builds its loader iterator; an iterator that drew from the
    global RNG would put the run one draw behind an uninterrupted one (noise-fed generators read it)."""
    folder = FolderUnpairedLoader(
        demo_data / "hr", demo_data / "real_lr", hr_patch=PATCH, scale=SCALE, batch_size=2, num_workers=workers, seed=0
    )
    for loader in (make(shards, shards, num_workers=workers), folder):
        torch.manual_seed(0)
        before = torch.get_rng_state()
        next(iter(loader))
        assert torch.equal(torch.get_rng_state(), before), type(loader).__name__

"""The sample pictures (`cyclesr.pictures`): crops where the image has detail, enlarged so that pixels show,
labelled columns; from validation pairs when there are some, else from the training batch."""

from __future__ import annotations

import numpy as np
import torch

from cyclesr_dist.cyclesr.pictures import HEADER, SHOWN, comparison, detail_window, translation
from cyclesr_dist.data.images import uint8_to_model
from cyclesr_dist.models import GENERATORS, SR_NETS


def _pair(seed: int = 0) -> tuple[str, np.ndarray, np.ndarray]:
    """A flat grey HR of 512x384 with noise texture only in a 256² square at (240, 96): its LR is the ×4 mean."""
    rng = np.random.default_rng(seed)
    hr = np.full((512, 384, 3), 128, np.uint8)
    hr[240:496, 96:352] = rng.integers(0, 256, (256, 256, 3))
    lr = hr.reshape(128, 4, 96, 4, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    return f"p{seed}", lr, hr


def test_detail_window_finds_the_texture_not_the_flat_part() -> None:
    _, lr, hr = _pair()
    top, left = detail_window(hr, 256)
    assert abs(top - 240) <= 2 and abs(left - 96) <= 2
    assert detail_window(lr, 64) == (60, 24)
    assert detail_window(lr[:10, :10], 64) == (0, 0)  # a window larger than the image: the whole image


def test_grids_are_large_labelled_and_from_the_detailed_place() -> None:
    torch.manual_seed(0)
    gen = GENERATORS.build("resnet", {"ngf": 8, "n_blocks": 1, "n_downsampling": 0, "residual": True})
    sr = SR_NETS.build("vdsr_lr", {"nf": 8, "nb": 1, "bicubic_skip": True})
    pairs = [_pair(0), _pair(1)]
    grid = translation(gen, {}, pairs, 4, "bicubic")
    # 2 rows of 3 tiles of the 64² LR window, enlarged 3x: at least SHOWN px each, under the title strip
    assert grid.shape[0] >= HEADER + 2 * SHOWN and grid.shape[1] >= 3 * SHOWN
    assert (grid[:HEADER] < 100).any()  # the titles: dark text on white
    real_tile = grid[HEADER : HEADER + SHOWN, -SHOWN - 4 : -4]
    assert real_tile.std() > 12 and (real_tile != 128).mean() > 0.9  # the textured square, not the flat grey
    cmp = comparison(sr, pairs, 4)
    assert cmp.shape[0] >= HEADER + 2 * 192 and cmp.shape[1] >= 4 * 192
    batch = {"clean_lr": uint8_to_model(_pair()[1][:24, :24])[None].repeat(2, 1, 1, 1)}
    batch["real_lr"] = batch["clean_lr"].clone()
    from_batch = translation(gen, batch, [], 4, "bicubic")  # no validation pairs: the batch's crops, 24² x8
    assert from_batch.shape[0] >= HEADER + 2 * 192 and from_batch.shape[1] >= 3 * 192

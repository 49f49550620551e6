"""The pictures a person looks at: where the SR net stands against bicubic (`comparison.png`) and what the
translation net learned (`translation.png`). Crops are taken where the image has the most detail (the highest
gradient energy), enlarged by nearest-neighbour so that single pixels show, and every column is labelled."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from ..data.images import clean_downscale, model_to_uint8, uint8_to_model
from ..serve.evaluate import bicubic_upscale, match_hr
from ..torch_utils import eval_mode

ValPair = tuple[str, np.ndarray, np.ndarray]  # (name, lr_uint8, hr_uint8)
SHOWN = 192  # px a tile is shown at, at least
GAP = 4  # px between tiles
HEADER = 18  # px of the column titles' strip


def detail_window(img: np.ndarray, size: int) -> tuple[int, int]:
    """(top, left) of the size×size window of `img` with the most gradient energy (sum of squared luma
    differences), from an integral image: a crop of texture and edges, not of sky."""
    luma = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    energy = np.zeros_like(luma)
    energy[:, 1:] += np.diff(luma, axis=1) ** 2
    energy[1:, :] += np.diff(luma, axis=0) ** 2
    size = min(size, *img.shape[:2])
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left)


def _enlarge(tile: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)


def labelled_grid(rows: list[list[np.ndarray]], titles: list[str]) -> np.ndarray:
    """Tiles (HxWx3 uint8; one size per column) in rows under a strip of column titles, on white."""
    widths = [max(row[c].shape[1] for row in rows) for c in range(len(titles))]
    heights = [max(t.shape[0] for t in row) for row in rows]
    canvas = Image.new("RGB", (sum(widths) + GAP * (len(widths) + 1), HEADER + sum(heights) + GAP * len(rows)), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    x = GAP
    for title, width in zip(titles, widths, strict=True):
        draw.text((x + 2, 3), title, fill="black", font=font)
        x += width + GAP
    y = HEADER
    for row, height in zip(rows, heights, strict=True):
        x = GAP
        for tile, width in zip(row, widths, strict=True):
            canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (x, y))
            x += width + GAP
        y += height + GAP
    return np.asarray(canvas)


@torch.no_grad()
def comparison(sr: nn.Module, val_pairs: list[ValPair], scale: int, crop: int = 192, rows: int = 3) -> np.ndarray:
    """Per validation pair (up to `rows`): the most detailed crop, as LR (pixels enlarged) | bicubic | SR | HR."""
    device = next(sr.parameters(), torch.empty(0)).device
    lines = []
    for name, lr_img, hr_img in val_pairs[:rows]:
        hr_img = match_hr(lr_img, hr_img, scale, name)
        size = max(scale, min(crop, hr_img.shape[0], hr_img.shape[1]) // scale * scale)
        top, left = detail_window(lr_img, size // scale)
        lr_crop = lr_img[top : top + size // scale, left : left + size // scale]
        with eval_mode(sr):
            out = model_to_uint8(sr(uint8_to_model(lr_crop).unsqueeze(0).to(device))[0])
        hr_crop = hr_img[top * scale : top * scale + size, left * scale : left * scale + size]
        lines.append([_enlarge(lr_crop, scale), bicubic_upscale(lr_crop, scale), out, hr_crop])
    return labelled_grid(lines, ["LR (pixels enlarged)", "bicubic", "SR (this model)", "HR"])


@torch.no_grad()
def translation(
    gen: nn.Module, batch: dict[str, torch.Tensor], val_pairs: list[ValPair], scale: int, clean_lr: str, rows: int = 3
) -> np.ndarray:
    """What G learned: clean LR | G(clean LR) | real LR, each enlarged to ≥ SHOWN px by nearest-neighbour. From the
    validation pairs when there are some (the real LR of the same place: G should look like it), at their most
    detailed 64² LR window; else from the training batch's crops (real LR of other scenes)."""
    device = next(gen.parameters()).device
    lines = []
    with eval_mode(gen):
        if val_pairs:
            for name, lr_img, hr_img in val_pairs[:rows]:
                hr_img = match_hr(lr_img, hr_img, scale, name)
                size = min(64, *lr_img.shape[:2])
                top, left = detail_window(lr_img, size)
                hr = uint8_to_model(hr_img[top * scale : (top + size) * scale, left * scale : (left + size) * scale])
                x = clean_downscale(hr.unsqueeze(0).to(device), scale, clean_lr)
                tiles = [model_to_uint8(x[0]), model_to_uint8(gen(x)[0]), lr_img[top : top + size, left : left + size]]
                lines.append(tiles)
            titles = ["clean LR (G's input)", "G(clean LR)", "real LR, same place"]
        else:
            x = batch["clean_lr"][:rows]
            fake = gen(x)
            lines = [[model_to_uint8(t[i]) for t in (x, fake, batch["real_lr"][:rows])] for i in range(len(x))]
            titles = ["clean LR (G's input)", "G(clean LR)", "real LR (another scene)"]
    factor = max(3, math.ceil(SHOWN / max(line[0].shape[0] for line in lines)))
    return labelled_grid([[_enlarge(t, factor) for t in line] for line in lines], titles)

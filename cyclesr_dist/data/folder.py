"""Unpaired training batches from plain image folders (small data sets: images are held in memory).

Sample `i` of rank `r` is a pure function of (seed, r, i): a random HR crop and an independent random real-LR
crop, each with a random flip/90° rotation. So a resumed run that restarts at the consumed sample count sees
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .images import bicubic_resize, list_images, load_rgb, uint8_to_model


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    top = int(rng.integers(0, img.shape[0] - size + 1))
    left = int(rng.integers(0, img.shape[1] - size + 1))
    return img[top : top + size, left : left + size]


def random_flip_rotate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 dihedral transforms, uniformly."""
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.rot90(img, k=int(rng.integers(0, 4)))


def load_folder(root: Path, min_side: int) -> list[np.ndarray]:
    images = []
    for path in list_images(root):
        img = load_rgb(path)
        if min(img.shape[:2]) >= min_side:
            images.append(img)
    if not images:
        raise ValueError(f"no image of at least {min_side}×{min_side} pixels under {root}")
    return images


class UnpairedFolderDataset(Dataset):
    def __init__(self, hr_dir: str | Path, lr_dir: str | Path, hr_patch: int, scale: int, seed: int, rank: int):
        if hr_patch % scale:
            raise ValueError(f"hr_patch {hr_patch} must be a multiple of scale {scale}")
        self.hr_patch, self.lr_patch, self.scale = hr_patch, hr_patch // scale, scale
        self.hr_images = load_folder(Path(hr_dir), hr_patch)
        self.lr_images = load_folder(Path(lr_dir), self.lr_patch)
        self.seed, self.rank = seed, rank

    def __len__(self) -> int:  # endless stream; the sampler decides which indices are drawn
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, index])
        hr_img = self.hr_images[int(rng.integers(len(self.hr_images)))]
        lr_img = self.lr_images[int(rng.integers(len(self.lr_images)))]
        hr = uint8_to_model(random_flip_rotate(random_crop(hr_img, self.hr_patch, rng), rng))
        real_lr = uint8_to_model(random_flip_rotate(random_crop(lr_img, self.lr_patch, rng), rng))
        clean_lr = bicubic_resize(hr, 1.0 / self.scale).clamp_(-1, 1)
        return {"hr": hr, "clean_lr": clean_lr, "real_lr": real_lr}


class _CountFrom(Sampler[int]):
    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        i = self.start
        while True:
            yield i
            i += 1


class IndexedLoader:
    """Endless batches of dataset[consumed], dataset[consumed + 1], …; `state_dict` is the number of samples
    consumed. For datasets whose item i is a pure function of i: a resumed run sees exactly the batches an
    uninterrupted run would have seen."""

    def __init__(self, dataset: Dataset, *, batch_size: int, num_workers: int = 0, pin_memory: bool = False) -> None:
        self.dataset = dataset
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.consumed = 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=_CountFrom(self.consumed),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            prefetch_factor=4 if self.num_workers else None,
            # Its own generator: a DataLoader iterator otherwise draws its workers' base seed from the global
            # torch RNG, which a resumed run would then be one draw behind on (noise-fed generators read it).
            generator=torch.Generator(),
        )
        for batch in loader:
            self.consumed += self.batch_size
            yield batch

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.consumed = int(state["consumed"])

    def skipped(self) -> dict[str, int]:
        return {}


class FolderUnpairedLoader(IndexedLoader):
    """Endless iterator of batches {hr, clean_lr, real_lr} from two image folders."""

    def __init__(
        self,
        hr_dir: str | Path,
        lr_dir: str | Path,
        *,
        hr_patch: int,
        scale: int,
        batch_size: int,
        num_workers: int,
        seed: int,
        rank: int = 0,
        pin_memory: bool = False,
    ) -> None:
        dataset = UnpairedFolderDataset(hr_dir, lr_dir, hr_patch, scale, seed, rank)
        super().__init__(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)


def paired_val_images(lr_dir: str | Path, hr_dir: str | Path, max_images: int = 0):
    """(name, lr_uint8, hr_uint8) for files with the same stem in both folders."""
    hr_by_stem = {p.stem: p for p in list_images(hr_dir)}
    pairs = [(p.stem, p, hr_by_stem[p.stem]) for p in list_images(lr_dir) if p.stem in hr_by_stem]
    if max_images:
        pairs = pairs[:max_images]
    return [(name, load_rgb(lr), load_rgb(hr)) for name, lr, hr in pairs]

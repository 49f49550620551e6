"""Unpaired training batches from plain image folders (small data sets: images are held in memory).

Sample `i` of rank `r` is a pure function of (seed, r, i): a random HR patch (and its LR, `augment.HrToLr`) and an
independent random real-LR patch, by the rule of `data.augment`. So a resumed run that restarts at the consumed
sample count sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import BadInput
from .augment import HrToLr, random_patch
from .images import list_images, load_rgb, uint8_to_pixels


def load_folder(root: Path, min_side: int) -> list[np.ndarray]:
    images = [img for img in map(load_rgb, list_images(root)) if min(img.shape[:2]) >= min_side]
    if not images:
        raise BadInput(f"no image of at least {min_side}×{min_side} pixels under {root}")
    return images


class UnpairedFolderDataset(Dataset):
    def __init__(
        self,
        hr_dir: str | Path,
        lr_dir: str | Path,
        hr_patch: int,
        scale: int,
        seed: int,
        rank: int,
        *,
        hr_augment: str = "dihedral",
        lr_augment: str = "dihedral",
        hr_to_lr: str = "bicubic",
    ) -> None:
        if hr_patch % scale:
            raise ValueError(f"hr_patch {hr_patch} must be a multiple of scale {scale}")
        self.hr_patch, self.lr_patch = hr_patch, hr_patch // scale
        self.make_lr = HrToLr(hr_to_lr, scale)
        self.hr_augment, self.lr_augment = hr_augment, lr_augment
        self.hr_images = load_folder(Path(hr_dir), hr_patch)
        self.lr_images = load_folder(Path(lr_dir), self.lr_patch)
        self.seed, self.rank = seed, rank

    def __len__(self) -> int:  # endless stream; the sampler decides which indices are drawn
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, index])
        hr_img = self.hr_images[int(rng.integers(len(self.hr_images)))]
        lr_img = self.lr_images[int(rng.integers(len(self.lr_images)))]
        item = self.make_lr(random_patch(hr_img, self.hr_patch, rng, self.hr_augment), rng)
        item["real_lr"] = uint8_to_pixels(random_patch(lr_img, self.lr_patch, rng, self.lr_augment))
        return item


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
        **augment: str,
    ) -> None:
        """`augment`: hr_augment, lr_augment, hr_to_lr (see `data.augment`)."""
        dataset = UnpairedFolderDataset(hr_dir, lr_dir, hr_patch, scale, seed, rank, **augment)
        super().__init__(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)

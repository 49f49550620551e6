"""CycleGAN's history of generated images."""

from __future__ import annotations

import torch


class ImagePool:
    """D sees a mix of new and older fakes (Shrivastava et al. 2017), which keeps it from chasing G's latest output.

    Each image is stored until the pool holds `size`; after that, with probability 0.5 an incoming image is
    swapped for a random stored one (the stored one is returned). Own generator, so the pool is checkpointable.

    The choices are drawn image by image on the host (that order is the rule), then applied to the whole batch
    at once: one bank tensor and a few indexed copies instead of a copy and a concatenation per image, which on
    a GPU were about a hundred small kernel launches per pool and step at batch 64.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.bank: torch.Tensor | None = None  # [size, C, H, W], allocated at the first batch
        self.filled = 0
        self.rng = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        images = images.detach()
        if self.size == 0:
            return images
        if self.bank is None:
            self.bank = images.new_empty((self.size, *images.shape[1:]))
        elif self.bank.shape[1:] != images.shape[1:]:
            raise ValueError(f"image pool holds {tuple(self.bank.shape[1:])} images, got {tuple(images.shape[1:])}")
        holder: dict[int, int] = {}  # slot -> the batch image it holds after this call
        from_bank: tuple[list[int], list[int]] = ([], [])  # out[i] = the slot's image from before this call
        from_batch: tuple[list[int], list[int]] = ([], [])  # out[i] = images[j], put in a slot earlier in this call
        for i in range(len(images)):
            if self.filled < self.size:
                holder[self.filled] = i
                self.filled += 1
            elif torch.rand((), generator=self.rng).item() < 0.5:
                slot = int(torch.randint(0, self.size, (), generator=self.rng))
                dest, src = from_batch if slot in holder else from_bank
                dest.append(i)
                src.append(holder[slot] if slot in holder else slot)
                holder[slot] = i
        out = images.clone()
        for (dest, src), source in ((from_bank, self.bank), (from_batch, images)):
            if dest:
                out[self._index(dest, out)] = source[self._index(src, out)].to(out.dtype)
        if holder:  # after reading: a slot's old image may have been returned above
            stored = images[self._index(list(holder.values()), out)].to(self.bank.dtype)
            self.bank[self._index(list(holder), out)] = stored
        return out

    @staticmethod
    def _index(positions: list[int], like: torch.Tensor) -> torch.Tensor:
        """Positions as an index tensor on `like`'s device; to a GPU from pinned memory without waiting for it."""
        index = torch.tensor(positions, dtype=torch.long)
        if like.device.type != "cuda":
            return index
        return index.pin_memory().to(like.device, non_blocking=True)

    def state_dict(self) -> dict:
        # a copy: on the CPU `.cpu()` would return a view of the bank, which later batches overwrite
        stored = self.bank[: self.filled].to("cpu", copy=True) if self.filled else torch.empty(0)
        return {"images": stored, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        stored = state["images"]
        self.filled = len(stored) if stored.numel() else 0
        self.bank = None
        if self.filled:
            self.bank = stored.new_empty((self.size, *stored.shape[1:]), device=device)
            self.bank[: self.filled] = stored.to(device)
        self.rng.set_state(state["rng"])

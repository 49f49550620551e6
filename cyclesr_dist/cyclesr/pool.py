"""CycleGAN's history of generated images."""

from __future__ import annotations

import torch


class ImagePool:
    """D sees a mix of new and older fakes (Shrivastava et al. 2017), which keeps it from chasing G's latest output.

    Each image is stored until the pool holds `size`; after that, with probability 0.5 an incoming image is
    swapped for a random stored one (the stored one is returned). Own generator, so the pool is checkpointable.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images.detach()
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.rng).item() < 0.5:
                idx = int(torch.randint(0, self.size, (), generator=self.rng))
                out.append(self.images[idx].clone())
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        stored = torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)
        return {"images": stored, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.images = [img.unsqueeze(0).to(device) for img in state["images"]] if state["images"].numel() else []
        self.rng.set_state(state["rng"])

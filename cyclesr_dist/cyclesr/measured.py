"""Recipe settings measured on the user's real LR before training starts: `jpeg_quality: auto`.

G's JPEG stage learns its quality badly (from 90 it drifts to 83–84 whatever the truth), while the quality the
real LR photos were saved at can be read from their pixels; drawing G's quality per image from that measured
range gave +0.14 dB on the blur operator and +0.18 dB on the demo (BENCHMARKS.md, "Quality"). `auto` makes the
trainer do that measurement itself, so a config need not carry numbers that belong to one user's photos.
"""

from __future__ import annotations

import dataclasses
import os

from ..config import Config
from ..data.jpeg_estimate import estimate_quality, quality_summary
from ..data.loaders import real_lr_images
from ..errors import BadInput

AUTO = "auto"
# Images (or shard crops) read: enough for a stable 5th–95th percentile, a few seconds per process
MEASURED_IMAGES = 48


def with_measured_jpeg_quality(config: Config) -> Config:
    """`model.generator.args.jpeg_quality: auto` replaced by the range measured on the real LR ([low, high]), or by
    0 (no JPEG stage) when no image shows a JPEG quantisation; any other value is returned as is. Every process
    measures the same images, so every rank builds the same G."""
    args = config.model.generator.args
    if args.get("jpeg_quality") != AUTO:
        return config
    images = real_lr_images(config.data, MEASURED_IMAGES)
    if not images:
        d = config.data
        where = f"{d.root}/real_lr" if d.kind == "folder" else f"data.lr_shards={d.lr_shards}"
        raise BadInput(
            f"jpeg_quality: auto found no readable real-LR image in {where} to measure: add the photos, or set "
            "model.generator.args.jpeg_quality to a quality or [low, high]"
        )
    summary = quality_summary({name: estimate_quality(img) for name, img in images})
    if summary is None:
        quality: list[int] | int = 0
        found = f"none of {len(images)} real-LR images shows a JPEG quantisation: G's JPEG stage off"
    else:
        quality = [summary["low"], summary["high"]]
        found = (
            f"G's JPEG quality drawn from {quality[0]}–{quality[1]}, measured on {summary['images']} of "
            f"{len(images)} real-LR images (median {summary['median']})"
        )
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[cyclesr] jpeg_quality auto: {found}", flush=True)
    generator = dataclasses.replace(config.model.generator, args={**args, "jpeg_quality": quality})
    return dataclasses.replace(config, model=dataclasses.replace(config.model, generator=generator))

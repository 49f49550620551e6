"""The quality benchmark's photos and its per-operator data sets (see benchmarks/quality.py).

Photos: 33 photographs from four Debian packages (fetched with `apt-get download`, unpacked with `dpkg -x` into
a cache folder), split by scene so that no scene is in two splits; each split mixes nature, man-made/urban
scenes and close-up textures. Larger photos are first reduced (Lanczos, antialiased) to at most MAX_SIDE pixels
on the long side, which also makes them cleaner per pixel; every image is then cropped to a multiple of 4.
The photo-cache keeps the .deb files, so a second run needs no network.

Layout written under DATA (rebuilt when the spec in manifest.json changes):
  hr/                    clean HR scenes (PNG), shared by every operator
  clean/{hr,real_lr}/    root of the operator-independent supervised runs (bicubic-trained, blind); both folders
                         hold the HR scenes (hard links): those runs never read real_lr, the loader just needs one
  <op>/hr/               the HR scenes again (hard links): CycleSR's HR domain, the oracle's HR
  <op>/real_lr/          every real-LR scene degraded by <op>, REAL_LR_DRAWS draws each (fixed seeds)
  <op>/test/{hr,lr}/     each test scene's centre crop (≤ test_crop²) and its <op>-degraded LR (fixed seed)
  <op>/spec.json         what <op>'s folder was built from (a different one rebuilds just that folder)
  manifest.json          the spec; per scene: split, package, .deb file, path in the package, working size;
                         per operator: its spec and the test crops' sizes
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cyclesr_dist.data.degrade import DEGRADATIONS, get_degradation
from cyclesr_dist.data.images import load_rgb, save_rgb

SCALE = 4
MAX_SIDE = 2560
REAL_LR_DRAWS = 2  # degradations per real-LR photo
OPERATOR_IDS = {name: i for i, name in enumerate(DEGRADATIONS)}  # in the seeds: fixed whatever --operators says

_MATE = "usr/share/backgrounds/mate/nature/{}.jpg"
_LOMIRI = "usr/share/backgrounds/{}.jpg"
_PLASMA = "usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
PACKAGES = {  # package -> path pattern of its photos
    "mate-backgrounds": _MATE,
    "lomiri-wallpapers-16.04": _LOMIRI,
    "lomiri-wallpapers-20.04": _LOMIRI,
    "plasma-workspace-wallpapers": _PLASMA,
}
# scene -> (package, file stem). Only photographs (checked by eye on contact sheets of the whole package and
# 256² crops at the working resolution); drawings, renders and near-empty frames (sky, fog, bokeh) left out.
SCENES: dict[str, tuple[str, str]] = {
    # mate-backgrounds: macro and nature
    **{s: ("mate-backgrounds", s) for s in ["Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow"]},
    **{s: ("mate-backgrounds", s) for s in ["LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower"]},
    # lomiri-wallpapers-16.04 / -20.04: landscapes, interiors, objects, animals
    "Bridge": ("lomiri-wallpapers-16.04", "Bridge_by_Sander_Klootwijk"),
    "Dragonfly": ("lomiri-wallpapers-16.04", "Dragonfly_by_Bolly"),
    "Fig": ("lomiri-wallpapers-16.04", "Picture_0B_by_freespace"),
    "Brushes": ("lomiri-wallpapers-16.04", "Picture_1A_by_freespace"),
    "Wine": ("lomiri-wallpapers-16.04", "Wine_by_Jakkub_Mede"),
    "Aitzgorri": ("lomiri-wallpapers-16.04", "aitzgorri_by_Aitzol_Berasategi"),
    "AnalogPattern": ("lomiri-wallpapers-16.04", "analogpattern_by_Peter_Nerlich"),
    "Lamp": ("lomiri-wallpapers-16.04", "free_by_Peter_Nerlich"),
    "Friends": ("lomiri-wallpapers-16.04", "friends_by_Aitzol_Berasategi"),
    "Stream": ("lomiri-wallpapers-16.04", "life_by_Aitzol_Berasategi"),
    "PicosDeEuropa": ("lomiri-wallpapers-16.04", "picosdeeuropa_by_Aitzol_Berasategi"),
    "Seeding": ("lomiri-wallpapers-16.04", "seeding_by_Clements_Engelhardt"),
    "Sunset": ("lomiri-wallpapers-16.04", "sunset_by_Aitzol_Berasategi"),
    "Nuthatch": ("lomiri-wallpapers-20.04", "Kleiber_by_Lukas_Baubkus"),
    # plasma-workspace-wallpapers: the photographic ones
    **{s: ("plasma-workspace-wallpapers", s) for s in ["BytheWater", "ColdRipple", "ColorfulCups", "EveningGlow"]},
    **{s: ("plasma-workspace-wallpapers", s) for s in ["Grey", "OneStandsOut", "Path"]},
}
# Split by scene; the two mate-backgrounds scenes first in each list are the --quick subset (one package).
SPLITS: dict[str, list[str]] = {
    # flowers, grass, leaf veins, a road under storm clouds, a cable bridge, brushes, an interior, mountains,
    # cups, moss, a forest path, bark
    "hr": ["Blinds", "FreshFlower", "GreenMeadow", "TwoWings", "Storm", "Bridge", "Brushes", "Wine", "Aitzgorri"]
    + ["ColorfulCups", "OneStandsOut", "Path", "Nuthatch"],
    # water, flowers, raindrops, planks, foliage, fruit on stone, a rough surface, a lamp, meadow, sunset, a pier
    # in fog, a deck, rock faces
    "real_lr": ["Aqua", "Garden", "RainDrops", "Wood", "Dragonfly", "Fig", "AnalogPattern", "Lamp", "Seeding"]
    + ["Sunset", "BytheWater", "ColdRipple", "PicosDeEuropa"],
    # grass and sea, a ladybird, a flower, boats on a lake, a building facade, a forest stream, dogs at a window
    "test": ["Dune", "LadyBird", "YellowFlower", "EveningGlow", "Grey", "Stream", "Friends"],
}


class PhotoFetchError(RuntimeError):
    """A photo package could not be obtained (no network, no apt, no such package)."""


def splits_for(quick: bool) -> dict[str, list[str]]:
    return {k: v[:2] for k, v in SPLITS.items()} if quick else {k: list(v) for k, v in SPLITS.items()}


def _download(package: str, cache: Path) -> Path:
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        cmd = ["apt-get", "download", package]
        try:
            if subprocess.run(cmd, cwd=cache, capture_output=True).returncode != 0:
                subprocess.run(["apt-get", "update"], capture_output=True, check=False)
                result = subprocess.run(cmd, cwd=cache, capture_output=True, text=True)
                if result.returncode != 0:
                    raise PhotoFetchError(f"`apt-get download {package}` failed: {result.stderr.strip()[-300:]}")
        except FileNotFoundError as err:  # no apt-get on this machine
            raise PhotoFetchError(f"cannot run apt-get to fetch {package}: {err}") from None
        debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        raise PhotoFetchError(f"apt-get download {package} left no {package}_*.deb in {cache}")
    return debs[-1]


def fetch_photos(cache: Path, packages: list[str], debs: dict[str, str] | None = None) -> dict[str, Path]:
    """package -> the .deb used, each unpacked under cache/x/<package>; downloads what the cache lacks."""
    cache.mkdir(parents=True, exist_ok=True)
    used = {}
    for package in packages:
        deb = Path(debs[package]) if debs and package in debs else _download(package, cache)
        target, stamp = cache / "x" / package, cache / "x" / f"{package}.unpacked"
        if not stamp.is_file() or stamp.read_text() != deb.name:
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)  # dpkg -x creates the last level only
            subprocess.run(["dpkg", "-x", str(deb), str(target)], check=True)
            stamp.write_text(deb.name)
        used[package] = deb
    return used


def photo_path(cache: Path, scene: str) -> Path:
    package, stem = SCENES[scene]
    return cache / "x" / package / PACKAGES[package].format(stem)


def _crop_multiple(img: np.ndarray, multiple: int, max_side: int = 0) -> np.ndarray:
    """Centre crop to a multiple of `multiple` (and at most max_side x max_side when max_side > 0)."""
    h, w = img.shape[:2]
    th = (min(h, max_side) if max_side else h) // multiple * multiple
    tw = (min(w, max_side) if max_side else w) // multiple * multiple
    top, left = (h - th) // 2, (w - tw) // 2
    return np.ascontiguousarray(img[top : top + th, left : left + tw])


def load_scene(cache: Path, scene: str) -> np.ndarray:
    """The photo at working resolution (long side ≤ MAX_SIDE), cropped to a multiple of SCALE."""
    img = load_rgb(photo_path(cache, scene))
    factor = MAX_SIDE / max(img.shape[:2])
    if factor < 1:
        size = (round(img.shape[1] * factor), round(img.shape[0] * factor))
        img = np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))
    return _crop_multiple(img, SCALE)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links there
        shutil.copyfile(src, dst)


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def build_data(cache: Path, data: Path, operators: list[str], test_crop: int, quick: bool, debs: dict) -> dict:
    """Write the layout of the module docstring; only what is missing or was built from another spec. Returns
    the manifest."""
    splits = splits_for(quick)
    spec = {"splits": splits, "scale": SCALE, "max_side": MAX_SIDE, "debs": {p: Path(d).name for p, d in debs.items()}}
    manifest = _read_json(data / "manifest.json")
    if manifest is None or manifest.get("spec") != spec:
        shutil.rmtree(data, ignore_errors=True)
        scenes = {}
        for split, names in splits.items():
            for name in names:
                package, _ = SCENES[name]
                file = str(photo_path(Path(""), name).relative_to(Path("x") / package))
                scenes[name] = {"split": split, "package": package, "deb": Path(debs[package]).name, "file": file}
        for name in splits["hr"]:
            hr = load_scene(cache, name)
            scenes[name]["size"] = list(hr.shape[:2])
            save_rgb(hr, data / "hr" / f"{name}.png")
            for sub in ("clean/hr", "clean/real_lr"):
                _link(data / "hr" / f"{name}.png", data / sub / f"{name}.png")
        manifest = {"spec": spec, "scenes": scenes, "operators": {}}
        _write_json(data / "manifest.json", manifest)
    photos: dict[str, np.ndarray] = {}
    for op in operators:
        op_id = OPERATOR_IDS[op]
        op_spec = {
            "operator": op,
            "test_crop": test_crop,
            "real_lr_draws": REAL_LR_DRAWS,
            "seeds": f"real-LR draw k of scene i: default_rng([2, {op_id}, i, k]); test scene i: ([3, {op_id}, i])",
        }
        if _read_json(data / op / "spec.json") == op_spec:
            continue
        t0 = time.perf_counter()
        shutil.rmtree(data / op, ignore_errors=True)
        for name in splits["real_lr"] + splits["test"]:
            if name not in photos:
                photos[name] = load_scene(cache, name)
                manifest["scenes"][name]["size"] = list(photos[name].shape[:2])
        degrade = get_degradation(op).degrade
        for name in splits["hr"]:
            _link(data / "hr" / f"{name}.png", data / op / "hr" / f"{name}.png")
        for i, name in enumerate(splits["real_lr"]):
            for k in range(REAL_LR_DRAWS):
                lr = degrade(photos[name], np.random.default_rng([2, op_id, i, k]), SCALE)
                save_rgb(lr, data / op / "real_lr" / f"{name}__{k}.png")
        for i, name in enumerate(splits["test"]):
            hr = _crop_multiple(photos[name], SCALE, test_crop)
            save_rgb(hr, data / op / "test" / "hr" / f"{name}.png")
            lr = degrade(hr, np.random.default_rng([3, op_id, i]), SCALE)
            save_rgb(lr, data / op / "test" / "lr" / f"{name}.png")
        op_spec["test_size"] = {
            name: list(_crop_multiple(photos[name], SCALE, test_crop).shape[:2]) for name in splits["test"]
        }
        _write_json(data / op / "spec.json", {k: v for k, v in op_spec.items() if k != "test_size"})
        manifest["operators"][op] = op_spec
        _write_json(data / "manifest.json", manifest)
        print(f"built the {op} data in {data / op} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return manifest


def redraw_test_lr(operator: str, pairs: list[tuple[str, np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Each test scene's LR from another draw of the operator (its parameters and noise drawn afresh, seeds
    ([5, op_id, i])): what G would make were it the true degradation, the reference for G's translation metrics."""
    degrade = get_degradation(operator).degrade
    return [
        degrade(hr, np.random.default_rng([5, OPERATOR_IDS[operator], i]), SCALE) for i, (_, _, hr) in enumerate(pairs)
    ]


def load_test_pairs(data: Path, operator: str, scenes: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, lr_uint8, hr_uint8) of the operator's test set."""
    root = data / operator / "test"
    return [(s, load_rgb(root / "lr" / f"{s}.png"), load_rgb(root / "hr" / f"{s}.png")) for s in scenes]

"""The one rule that pairs LR and HR files (validation sets, `cyclesr eval`, validation shards).

Key of a file = its path relative to its folder, without the suffix (`scenes/0801.png` -> `scenes/0801`), so
nested folders pair as they are and `a.png` pairs with `a.jpg`. An LR key may also end with `x{scale}` (DIV2K's
`0801x4.png` pairs with `0801.png`). Two files with the same key in one folder are ambiguous: the first (in sorted
order) is kept and the other is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .images import list_images


@dataclass
class Pairing:
    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)  # (key, lr_path, hr_path), sorted by key
    lr_only: list[Path] = field(default_factory=list)
    hr_only: list[Path] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (dropped, kept)


def _by_key(root: Path, duplicates: list[tuple[Path, Path]]) -> dict[str, Path]:
    table: dict[str, Path] = {}
    for path in list_images(root):
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in table:
            duplicates.append((path, table[key]))
            continue
        table[key] = path
    return table


def pair_files(lr_dir: str | Path, hr_dir: str | Path, scale: int | None = None) -> Pairing:
    result = Pairing()
    lr = _by_key(Path(lr_dir), result.duplicates)
    hr = _by_key(Path(hr_dir), result.duplicates)
    suffix = f"x{scale}" if scale else None
    matched_hr = set()
    for key, lr_path in sorted(lr.items()):
        hr_key = key
        if hr_key not in hr and suffix and key.endswith(suffix) and key[: -len(suffix)] in hr:
            hr_key = key[: -len(suffix)]
        if hr_key in hr and hr_key not in matched_hr:
            matched_hr.add(hr_key)
            result.pairs.append((hr_key, lr_path, hr[hr_key]))
        else:
            result.lr_only.append(lr_path)
    result.hr_only = [hr[k] for k in sorted(set(hr) - matched_hr)]
    result.pairs.sort(key=lambda p: p[0])
    return result

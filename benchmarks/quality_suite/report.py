"""The quality benchmark's tables and targets (markdown, as BENCHMARKS.md holds them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

ROWS = ["bicubic", "bicubic-trained", "blind", "realsr", "cyclesr", "oracle"]
ROW_TITLES = {
    "bicubic": "bicubic (no training)",
    "bicubic-trained": "bicubic-trained (supervised, bicubic LR)",
    "blind": "blind (supervised, Real-ESRGAN degradations)",
    "realsr": "RealSR-style (supervised, degradation fitted to the real LR)",
    "cyclesr": "CycleSR (unpaired)",
    "oracle": "oracle (supervised, the true operator)",
}
METRICS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "psnr_rgb_best_shift")
MARGIN_DB = 0.1
ORACLE_SHARE = 0.7


PEERS = ("bicubic-trained", "blind", "realsr")  # the alternatives a practitioner without pairs would train


def check_targets(psnr: dict[str, float]) -> list[dict[str, Any]]:
    """The targets on mean PSNR (RGB): CycleSR ≥ bicubic + 0.1 dB; CycleSR ≥ blind; CycleSR ≥ the RealSR-style
    peer (when that row was run); CycleSR ≥ 70 % of the oracle's gain over the best of bicubic-trained, blind and
    the RealSR-style peer (those run). `met` is None when a row is missing. When the oracle does not beat that
    baseline its gain is not measurable; then the last target asks CycleSR ≥ baseline."""
    out: list[dict[str, Any]] = []

    def add(name: str, needs: tuple[str, ...], test: Callable[[], tuple[bool, str]]) -> None:
        missing = [r for r in needs if r not in psnr]
        if missing:
            out.append({"target": name, "met": None, "detail": f"not measured (no {', '.join(missing)} row)"})
        else:
            met, detail = test()
            out.append({"target": name, "met": bool(met), "detail": detail})

    c = psnr.get("cyclesr", float("nan"))
    add(
        f"CycleSR ≥ bicubic + {MARGIN_DB} dB",
        ("cyclesr", "bicubic"),
        lambda: (c - psnr["bicubic"] >= MARGIN_DB, f"{c - psnr['bicubic']:+.2f} dB"),
    )
    add("CycleSR ≥ blind", ("cyclesr", "blind"), lambda: (c >= psnr["blind"], f"{c - psnr['blind']:+.2f} dB"))
    if "realsr" in psnr:
        add("CycleSR ≥ RealSR-style", ("cyclesr",), lambda: (c >= psnr["realsr"], f"{c - psnr['realsr']:+.2f} dB"))
    peers = tuple(r for r in PEERS if r in psnr or r != "realsr")

    def oracle_share() -> tuple[bool, str]:
        best_name = max(peers, key=lambda r: psnr[r])
        best = psnr[best_name]
        gain = psnr["oracle"] - best
        if gain <= 0:
            return c >= best, f"oracle gain {gain:+.2f} dB over {best_name}: not measurable; CycleSR {c - best:+.2f} dB"
        share = (c - best) / gain
        return share >= ORACLE_SHARE, f"{100 * share:.0f} % of the oracle's {gain:+.2f} dB over {best_name}"

    add(
        f"CycleSR ≥ {ORACLE_SHARE:.0%} of the oracle's gain over max({', '.join(peers)})",
        ("cyclesr", "oracle", *peers),
        oracle_share,
    )
    return out


def format_targets(targets: list[dict[str, Any]]) -> str:
    word = {True: "**met**", False: "**NOT met**", None: "not measured"}
    return "\n".join(f"- {t['target']}: {word[t['met']]} ({t['detail']})" for t in targets)


def operator_table(results: dict[str, dict[str, Any]], walls: dict[str, float | None]) -> str:
    """Per row: PSNR of each test scene, mean PSNR / SSIM (RGB), mean PSNR-Y / SSIM-Y, training wall time."""
    rows = [r for r in ROWS if r in results]
    scenes = [im["name"] for im in results[rows[0]]["images"]]
    shift = "psnr_rgb_best_shift" in results[rows[0]]["mean"]
    shift_title = f"best-shift PSNR (±{results[rows[0]]['max_shift']} px, 1/{results[rows[0]]['subpixel']} px steps)"
    head = ["model", *scenes, "mean PSNR / SSIM", "PSNR-Y / SSIM-Y", *([shift_title] if shift else []), "wall"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = results[r]["mean"]
        wall = walls.get(r)
        cells = [ROW_TITLES[r], *(f"{im['psnr_rgb']:.2f}" for im in results[r]["images"])]
        cells += [f"{m['psnr_rgb']:.2f} / {m['ssim_rgb']:.4f}", f"{m['psnr_y']:.2f} / {m['ssim_y']:.4f}"]
        cells += [f"{m['psnr_rgb_best_shift']:.2f}"] if shift else []
        cells.append("–" if wall is None else f"{wall / 60:.1f} min")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def translation_table(fidelity: dict[str, Any]) -> str:
    head = ["vs the true LR (test scenes)", "PSNR", "spectral dist. (dB)", "high band (dB)", "noise std ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for src, m in fidelity["mean"].items():
        cells = [src, f"{m['psnr']:.2f}", f"{m['spectral_distance']:.2f}", f"{m['spectral_distance_high']:.2f}"]
        cells.append(f"{m['noise_std_ratio']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_over_operators(per_operator: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """{row: {metric: mean over the operators that have the row}}, plus "operators": how many."""
    out = {}
    for r in ROWS:
        means = [res[r]["mean"] for res in per_operator.values() if r in res]
        if means:
            keys = [k for k in METRICS if all(k in m for m in means)]
            out[r] = {k: float(np.mean([m[k] for m in means])) for k in keys} | {"operators": len(means)}
    return out


def mean_table(per_operator: dict[str, dict[str, dict[str, Any]]], means: dict[str, dict[str, float]]) -> str:
    """Per row: each operator's mean PSNR (and best-shift PSNR in parentheses), then the means over operators."""
    ops = list(per_operator)
    shift = all("psnr_rgb_best_shift" in m for m in means.values())
    head = ["model", *ops, "mean PSNR / SSIM", "PSNR-Y", *(["best-shift PSNR"] if shift else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(op: str, r: str) -> str:
        if r not in per_operator[op]:
            return "–"
        m = per_operator[op][r]["mean"]
        return f"{m['psnr_rgb']:.2f}" + (f" ({m['psnr_rgb_best_shift']:.2f})" if shift else "")

    for r, m in means.items():
        cells = [ROW_TITLES[r], *(cell(op, r) for op in ops)]
        cells += [f"{m['psnr_rgb']:.2f} / {m['ssim_rgb']:.4f}", f"{m['psnr_y']:.2f}"]
        cells += [f"{m['psnr_rgb_best_shift']:.2f}"] if shift else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

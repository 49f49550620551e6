"""Leave-one-operator-out: the score a recipe decision earns on an operator nobody tuned on.

For each operator o, the candidate recipes (CycleSR variants, each a results file of benchmarks/quality.py) are
ranked by their mean best-shift PSNR over the *other* operators; the held-out score of o is what the winner of
that ranking scores on o. A recipe that only wins on the operators it was tuned on loses here: this is the number
a user with an unseen degradation should expect, and the one README quotes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

KEY = "psnr_rgb_best_shift"  # what decides (the sampling grid's offset taken out: no unpaired method can learn it)


def results_file(work: Path, tag: str) -> Path:
    """Where quality.py wrote a variant's results: results.json for the defaults (tag "default"), else
    results-TAG.json."""
    return work / ("results.json" if tag in ("", "default") else f"results-{tag}.json")


def candidate_scores(work: Path, tags: list[str], operators: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{tag: {operator: {"psnr_rgb", "psnr_rgb_best_shift"}}} of each candidate's CycleSR row. Exits with one line
    naming the first candidate or operator without a result."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for tag in tags:
        path = results_file(work, tag)
        if not path.is_file():
            raise SystemExit(f"no results for candidate {tag!r} ({path}): run quality.py with --tag {tag} first")
        ops = json.loads(path.read_text())["operators"]
        missing = [o for o in operators if "cyclesr" not in ops.get(o, {}).get("rows", {})]
        if missing:
            raise SystemExit(f"candidate {tag!r} has no CycleSR result on {', '.join(missing)} ({path})")
        out[tag] = {o: {k: ops[o]["rows"]["cyclesr"]["mean"][k] for k in ("psnr_rgb", KEY)} for o in operators}
    return out


def leave_one_out(
    scores: dict[str, dict[str, dict[str, float]]], operators: list[str], margin: float = 0.0
) -> dict[str, dict[str, Any]]:
    """{operator: {"chosen": tag, "psnr_rgb", "psnr_rgb_best_shift", "ranking": [(tag, mean of the others)]}}.
    The first candidate given is the incumbent (the shipped recipe): another is chosen only if its mean over the
    other operators beats the incumbent's by more than `margin` dB, so a difference within run-to-run noise does
    not change the recipe (and ties keep it)."""
    out = {}
    incumbent = next(iter(scores))
    for held in operators:
        others = [o for o in operators if o != held]
        ranking = [(t, float(np.mean([s[o][KEY] for o in others]))) for t, s in scores.items()] if others else []
        chosen = incumbent
        if ranking:
            best, best_mean = max(ranking, key=lambda r: r[1])
            if best_mean > dict(ranking)[incumbent] + margin:
                chosen = best
        out[held] = {"chosen": chosen, **scores[chosen][held], "ranking": ranking}
    return out


def heldout_table(heldout: dict[str, dict[str, Any]], rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """Per operator: the variant the others chose, its held-out PSNR (plain and best-shift) beside bicubic,
    bicubic-trained, blind and the oracle, and its share of the oracle's best-shift gain over the better of
    bicubic-trained and blind; then the mean. `rows`: {operator: {row: mean metrics}} of the baselines."""
    head = ["operator", "chosen by the others", "held-out PSNR", "best-shift", "bicubic", "best baseline", "oracle"]
    head.append("share of the oracle's gain")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    shares, plain, shifted = [], [], []
    for op, h in heldout.items():
        base = rows.get(op, {})
        peers = {r: base[r][KEY] for r in ("bicubic-trained", "blind", "realsr") if r in base}
        best_name = max(peers, key=peers.get) if peers else None
        oracle = base.get("oracle", {}).get(KEY)
        share = None
        if best_name and oracle is not None and oracle > peers[best_name]:
            share = (h[KEY] - peers[best_name]) / (oracle - peers[best_name])
            shares.append(share)
        plain.append(h["psnr_rgb"])
        shifted.append(h[KEY])
        cells = [op, h["chosen"], f"{h['psnr_rgb']:.2f}", f"{h[KEY]:.2f}"]
        cells.append(f"{base['bicubic'][KEY]:.2f}" if "bicubic" in base else "–")
        cells.append(f"{peers[best_name]:.2f} ({best_name})" if best_name else "–")
        cells.append(f"{oracle:.2f}" if oracle is not None else "–")
        cells.append(f"{100 * share:.0f} %" if share is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    mean_share = f"{100 * np.mean(shares):.0f} % (per operator)" if shares else "–"
    lines.append(f"| mean | | {np.mean(plain):.2f} | {np.mean(shifted):.2f} | | | | {mean_share} |")
    return "\n".join(lines)

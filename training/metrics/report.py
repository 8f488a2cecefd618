"""Evaluation results: `results.json` and `results.md`, whose header states the protocol, and merging of results
(`evaluate --compare`) into one table when, and only when, they were measured with the same protocol.

results.json: {"format": "humangan-eval/1", "protocol": {...}, "rows": [{"name", "kind": "model" |
"ground_truth" | "bottleneck", "path", "step", "metrics": {...}}]} (bottleneck rows: the ground truth through a
lower-resolution map, evaluate --bottleneck, also with "factor"). Metric keys: fid, kid, pose_miou, pose_pixel_accuracy,
view_consistency, view_consistency_by_yaw {yaw: value}, pose_consistency, temporal_flicker, covisible_pixels,
appearance_diversity.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "write_results", "read_results", "merge_results", "markdown"]

FORMAT = "humangan-eval/1"


def _num(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * scale:.{digits}f}"


def _range(first: int, count: int) -> str:
    return f"{first}" if count == 1 else f"{first}…{first + count - 1}"


def markdown(results: dict[str, Any]) -> str:
    """The results as a markdown page: the protocol, then one row per model (and the ground truth)."""
    p = results["protocol"]
    parser = p.get("parser")
    lines = ["# Evaluation", "", "## Protocol", "",
             f"- Data: `{p['data']}` ({p['dataset_items']} items, source {p.get('dataset_source', '?')}); "
             f"resolution {p['height']}×{p['width']} (H×W); truncation ψ = {p['psi']:g} for every generated image.",
             f"- FID / KID: {p['count']} generated vs {p['count']} real images; generated sample i uses seed "
             f"{p['seed']} + i ({_range(p['seed'], p['count'])}) and the body and camera of the i-th item of a seeded "
             f"permutation (seed {p['seed']}). Features: {p['features']}. KID: {p['kid_subsets']} subsets of "
             f"≤ {p['kid_subset_size']}, reported ×10³.",
             ]
    if parser:
        lines.append(f"- Pose accuracy: mIoU (labels 1..25 present) of the judge parser `{parser['file']}` on the "
                     f"generated images against the rasterised part map of their conditioning body. The parser's "
                     f"own mIoU on {parser['holdout_items']} held-out real images is the ceiling: "
                     f"**{parser['holdout_miou']:.3f}**.")
    else:
        lines.append("- Pose accuracy: not measured (no parser given; train one with `evaluate --train-parser`).")
    yaws = ", ".join(f"{y:+g}°" for y in p["yaws"] if y != 0)
    lines += [f"- Consistency: {p['people']} people (seeds {_range(p['seed'], p['people'])}). View: yaw {yaws} "
              f"each against 0°, about the body's up axis. Pose: two articulations, root and camera kept. Temporal "
              f"flicker: {p['frames']} consecutive frames of a built-in motion, phase step {p['frame_step']:.4g}. "
              f"Mean |Δ colour| in 8-bit levels (0–255, RGB mean) over co-visible body pixels: rasterised surface "
              f"correspondences, both directions, depth-tested ({p['depth_tolerance'] * 100:g} cm + 2 pixel "
              f"footprints), one-pixel margin inside the silhouettes."]
    if "diversity_seeds" in p:  # results written before the diversity metric have neither it nor its protocol
        lines.append(f"- Diversity: persons {_range(p['seed'], p['diversity_seeds'])} on each of those people's "
                     f"bodies and cameras; mean |Δ colour| (8-bit levels) between every two persons at the same body "
                     f"pixel. A model that ignores its latent scores 0.")
    lines.append("")
    lines += ["## Results", "",
              "| model | step | FID ↓ | KID×10³ ↓ | pose mIoU ↑ | view ↓ | pose ↓ | flicker ↓ | diversity ↑ |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results["rows"]:
        m = row["metrics"]
        step = "–" if row.get("step") is None else str(row["step"])
        miou = m.get("pose_miou")
        if row["kind"] == "ground_truth" and parser:
            miou = parser["holdout_miou"]
        lines.append(f"| {row['name']} | {step} | {_num(m.get('fid'))} | {_num(m.get('kid'), 1e3, 3)} | "
                     f"{_num(miou, 1, 3)} | {_num(m.get('view_consistency'))} | {_num(m.get('pose_consistency'))} |"
                     f" {_num(m.get('temporal_flicker'))} | {_num(m.get('appearance_diversity'))} |")
    if any(r["kind"] == "ground_truth" for r in results["rows"]):
        lines += ["", "The ground-truth row is the synthetic collection's own renderer (colour fixed to the body "
                      "surface) on the same bodies and cameras; its pose mIoU is the parser's held-out ceiling. Its "
                      "consistency is not zero: fine patterns alias differently when the surface moves by a fraction "
                      "of a pixel."]
    if any(r["kind"] == "bottleneck" for r in results["rows"]):
        lines += ["", "A \"through an h×w map\" row is the ground truth area-averaged to that size and bilinearly "
                      "upsampled back, as the backbone upsamples its pose style map: a guide to what a style map of "
                      "that resolution can carry (not a bound: the backbone is non-linear and can sharpen edges)."]
    lines += ["", "Consistency alone rewards flat colour (a blank image is perfectly consistent): read it beside FID."]
    lines += ["", "## View consistency by yaw", "", "| model | " + " | ".join(f"{y:+g}°" for y in p["yaws"] if y)
              + " |", "|---|" + "---:|" * sum(1 for y in p["yaws"] if y)]
    for row in results["rows"]:
        by_yaw = row["metrics"].get("view_consistency_by_yaw", {})
        lines.append(f"| {row['name']} | " + " | ".join(_num(by_yaw.get(f"{y:g}")) for y in p["yaws"] if y) + " |")
    return "\n".join(lines) + "\n"


def write_results(out: str | Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write results.json and results.md into the folder `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"format": FORMAT, **{k: v for k, v in results.items() if k != "format"}}
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=True))
    (out / "results.md").write_text(markdown(results))
    return out / "results.json", out / "results.md"


def read_results(path: str | Path) -> dict[str, Any]:
    """A results.json (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a results.json written by `python -m training evaluate`")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} has format {data.get('format')!r}; expected {FORMAT!r}")
    return data


def merge_results(results: list[dict[str, Any]], sources: list[str] | None = None) -> dict[str, Any]:
    """One table from several results measured with the same protocol; one ground-truth row (and one row per
    bottleneck size) is kept."""
    if not results:
        raise ValueError("nothing to compare: pass at least one results.json")
    sources = sources or [f"result {i}" for i in range(len(results))]
    base = results[0]["protocol"]
    for r, src in zip(results[1:], sources[1:]):
        keys = sorted(k for k in set(base) | set(r["protocol"]) if base.get(k) != r["protocol"].get(k))
        if keys:
            raise ValueError(f"{src} was measured with another protocol than {sources[0]} (differs in "
                             f"{', '.join(keys)}); re-run `evaluate` with the same options to compare them")
    rows, truth, bottlenecks = [], None, {}
    for r in results:
        for row in r["rows"]:
            if row["kind"] == "ground_truth":
                truth = truth or row
            elif row["kind"] == "bottleneck":
                bottlenecks.setdefault(row["name"], row)
            else:
                rows.append(row)
    return {"format": FORMAT, "protocol": base, "rows": rows + ([truth] if truth else []) + list(bottlenecks.values())}

"""`python -m training.photos.calibrate --data SYNTH`: where BlazePose puts its landmarks on bodies we know.

BlazePose's shoulder, hip, ear, ... landmarks are not our joints and surface points (landmarks.py); on synthetic
people (`python -m training synth`, whose bodies and cameras are exact) they sit a few pixels off in a consistent
way. This finds, per landmark, the offset in its bone's rest frame (landmarks.frame_joint) that best moves our point
onto BlazePose's: a robust least-squares fit (Geman-McClure, σ a fortieth of the person's height, so the images
where BlazePose swaps or misplaces a limb count little) over both readings of every image (as given and mirrored,
detect.py), left and right sides sharing one mirrored offset. It prints the OFFSETS_MM table landmarks.py holds. Calibrate on a tuning collection (seed 0), never on the
images a measurement is reported on.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from neural.camera import Camera
from neural.cli import run_command

from ..data import PhotoDataset
from .detect import Detector
from .landmarks import USED, landmark_map, offset_key
from .measure import SYNTHETIC_DETECT, open_synthetic, synthetic_image

_RIDGE = 10.0  # a weak pull of every offset towards zero (metres²), for landmarks BlazePose rarely sees


def _detections(dataset: PhotoDataset, n: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """BlazePose's readings of the first n items, on each image and its mirror (detect.py): the item of each, its
    (N, 33, 2) landmarks and (N, 33) visibilities."""
    found, keypoints, visibility = [], [], []
    with Detector(SYNTHETIC_DETECT) as detector:
        for i in range(n):
            people = detector.detect(synthetic_image(dataset[i]))
            readings = [(people[0].keypoints, people[0].visibility)] if people else []
            if people and people[0].mirrored is not None:
                readings.append(people[0].mirrored)
            for k, v in readings:
                found.append(i)
                keypoints.append(k)
                visibility.append(v)
    if not found:
        raise ValueError("BlazePose found no person in the collection; nothing to calibrate")
    return found, np.stack(keypoints), np.stack(visibility)


def calibrate(data, *, limit: int | None = None, steps: int = 1500, log=print) -> dict[str, tuple[float, ...]]:
    """OFFSETS_MM estimated on the first `limit` images of a synthetic collection."""
    dataset, body = open_synthetic(data, "calibration needs exact bodies")
    found, keypoints, visibility = _detections(dataset, min(len(dataset), limit or len(dataset)))
    items = [dataset[i] for i in found]
    marks = landmark_map(body, offsets_mm={})
    with torch.no_grad():
        posed = body(**{k: torch.stack([it[k] for it in items]) for k in ("betas", "pose", "transl")})
        base = marks.points(posed)                                                     # (N, L, 3)
        rotation = posed.transforms[:, torch.as_tensor(marks.frames), :3, :3]         # (N, L, 3, 3)
        heights = torch.tensor([float(np.ptp(np.nonzero(it["mask"][0].numpy() > 0.5)[0])) for it in items])
    camera = Camera(K=torch.stack([it["K"] for it in items]),
                    world_to_camera=torch.stack([it["world_to_camera"] for it in items]), width=1, height=1)
    target = torch.as_tensor(keypoints[:, marks.indices], dtype=torch.float32)
    weight = torch.as_tensor(visibility[:, marks.indices], dtype=torch.float32)
    keys = list(dict.fromkeys(offset_key(n)[0] for n in USED))                      # landmarks.py's order
    key_of = torch.tensor([keys.index(offset_key(n)[0]) for n in USED])
    mirror = torch.tensor([[offset_key(n)[1], 1.0, 1.0] for n in USED])
    free = torch.zeros(len(keys), 3, requires_grad=True)
    sigma = heights[:, None] / 40

    def residual(offsets: torch.Tensor) -> torch.Tensor:
        xy, _ = camera.project(base + torch.einsum("nlij,lj->nli", rotation, offsets))
        return (xy - target).norm(dim=-1)                                              # (N, L) px

    optimiser = torch.optim.Adam([free], lr=0.003)
    for _ in range(steps):
        optimiser.zero_grad()
        r2 = (residual(free[key_of] * mirror) / sigma).square()
        loss = (weight * r2 / (r2 + 1)).mean() + _RIDGE * free.square().mean()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        before, after = residual(torch.zeros(len(USED), 3)), residual(free[key_of] * mirror)
    for l, name in enumerate(USED):
        log(f"{name}: median {before[:, l].median():.2f} → {after[:, l].median():.2f} px")
    log(f"all landmarks, {len(items)} readings: median {before.median():.2f} → {after.median():.2f} px")
    return {k: tuple(round(float(v) * 1000, 1) for v in free[i].detach()) for i, k in enumerate(keys)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.photos.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a synthetic collection (python -m training synth --seed 0)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    def run() -> None:
        offsets = calibrate(args.data, limit=args.limit)
        print("OFFSETS_MM = {" + ", ".join(f'"{k}": {v}' for k, v in offsets.items()) + "}")

    return run_command("python -m training.photos.calibrate", run)


if __name__ == "__main__":
    sys.exit(main())

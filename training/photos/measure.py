"""`python -m training.photos.measure --data SYNTH --out DIR`: the detector and the fitter against exact truth.

On a synthetic collection (`python -m training synth`), every image has its exact body, camera, mask and part map.
Each image is fitted twice, with the dataset's K as the camera intrinsics (the EXIF case):
- from BlazePose (its landmarks on the image and on its mirror, and its mask): the whole front end;
- from the true 2D landmarks (the true body's landmark points, landmarks.py, projected) and the true mask: the
  fitter alone, so the two error sources are apart.
Reported: MPJPE and PA-MPJPE (mm, 24 joints, pelvis-aligned / similarity-aligned, camera frame), the 2D error of
BlazePose's landmarks against the true ones and of the fit's reprojected landmarks (px), silhouette IoU of the
fitted body against the true mask, and the part-map mIoU against the true part map (training/metrics/
pose_accuracy.py: one confusion matrix over the set, labels 1..25 present in either map). Markdown + JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neural.body import BodyModel
from neural.camera import Camera
from neural.cli import run_command
from neural.files import write_text_atomic

from ..arguments import positive_int
from ..data import PhotoDataset, read_manifest, write_json_atomic
from ..metrics.pose_accuracy import Confusion
from ..prepare import _rasterize_parts
from ..fits import Fit
from .detect import DetectConfig, Detector
from .fit import FitConfig, Fitter, Target
from .landmarks import LANDMARK_NAMES


def _camera_joints(body: BodyModel, pose, betas, transl, world_to_camera) -> np.ndarray:
    """(24, 3) joints in the camera frame, metres."""
    with torch.no_grad():
        posed = body(betas=torch.as_tensor(betas[None], dtype=torch.float32)[:, : body.num_betas],
                     pose=torch.as_tensor(pose[None], dtype=torch.float32),
                     transl=torch.as_tensor(transl[None], dtype=torch.float32))
    j = posed.joints[0].double().numpy()
    return j @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]


def procrustes(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """source (N, 3) moved onto target (N, 3) by the least-squares similarity (Umeyama 1991)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    U, S, Vt = np.linalg.svd(t.T @ s)
    D = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    scale = (S * np.diag(D)).sum() / (s ** 2).sum()
    return scale * s @ R.T + mu_t


# one person per synthetic image, centred and whole: no window search, and the small ones kept
SYNTHETIC_DETECT = DetectConfig(window_levels=0, min_height=50)


def open_synthetic(data: Path, why: str) -> tuple[PhotoDataset, BodyModel]:
    """A synthetic collection (`python -m training synth`) and its body; any other dataset is refused, saying why
    it must be synthetic."""
    manifest = read_manifest(data)
    if manifest.get("source") != "synth":
        raise ValueError(f"{data} is a {manifest.get('source')!r} dataset; {why}: make one with "
                         "`python -m training synth`")
    return PhotoDataset(data), BodyModel.load(manifest["body"]["file"])


def synthetic_image(item: dict) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a dataset item's image ([-1, 1], channels first), as a photo would be read."""
    return ((item["image"].permute(1, 2, 0).numpy() + 1) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)


def true_landmarks(fitter: Fitter, item: dict) -> np.ndarray:
    """(33, 2) the true body's landmark points projected into the item's image (unused landmarks: -1)."""
    with torch.no_grad():
        posed = fitter.body(betas=item["betas"][None], pose=item["pose"][None], transl=item["transl"][None])
        cam = Camera(K=item["K"][None], world_to_camera=item["world_to_camera"][None], width=1, height=1)
        xy, _ = cam.project(fitter.landmarks.points(posed))
    out = np.full((len(LANDMARK_NAMES), 2), -1.0)
    out[fitter.landmarks.indices] = xy[0].double().numpy()
    return out


def measure(data: Path, *, limit: int | None = None, fit_config: FitConfig = FitConfig(), batch: int = 8,
            log=print) -> dict:
    """The table's numbers for the first `limit` items of a synthetic collection."""
    dataset, body = open_synthetic(data, "the measurement needs exact truth")
    fitter = Fitter(body, fit_config)
    n = min(len(dataset), limit or len(dataset))
    rows = {"blazepose": [], "true_keypoints": []}
    confusion = {k: Confusion.empty() for k in rows}
    items, targets, detector_px, detect_s = [], {k: {} for k in rows}, {}, {}
    with Detector(SYNTHETIC_DETECT) as detector:
        for i in range(n):
            item = dataset[i]
            image = synthetic_image(item)
            mask = item["mask"][0].numpy() > 0.5
            H, W = mask.shape
            truth = true_landmarks(fitter, item)
            K = item["K"].double().numpy()
            start = time.perf_counter()
            people = detector.detect(image)
            detect_s[i] = time.perf_counter() - start
            targets["true_keypoints"][i] = Target(keypoints=np.where(truth < 0, 0, truth), mask=mask, K=K,
                                                  visibility=(truth[:, 0] >= 0).astype(float), width=W, height=H)
            used = fitter.landmarks.indices
            if people:
                targets["blazepose"][i] = Target(keypoints=people[0].keypoints, visibility=people[0].visibility,
                                                 mask=people[0].mask, K=K, width=W, height=H,
                                                 alternatives=people[0].alternatives)
                detector_px[i] = float(np.linalg.norm(people[0].keypoints[used] - truth[used], axis=1).mean())
            items.append(item)
    for kind, chosen in targets.items():
        order = sorted(chosen)
        fits = [f for lo in range(0, len(order), batch)
                for f in fitter.fit([chosen[i] for i in order[lo:lo + batch]])]
        for i, fit in zip(order, fits):
            item = items[i]
            parts = item["parts"].numpy().astype(np.int64)
            mask = item["mask"][0].numpy() > 0.5
            true_j = _camera_joints(body, item["pose"].numpy(), item["betas"].numpy(), item["transl"].numpy(),
                                    item["world_to_camera"].double().numpy())
            j = _camera_joints(body, fit.pose, fit.betas, fit.transl, fit.world_to_camera)
            mpjpe = np.linalg.norm((j - j[0]) - (true_j - true_j[0]), axis=1).mean() * 1000
            pa = np.linalg.norm(procrustes(j, true_j) - true_j, axis=1).mean() * 1000
            fitted = _rasterize_parts(body, Fit(pose=fit.pose, betas=fit.betas, transl=fit.transl, K=fit.K,
                                                world_to_camera=fit.world_to_camera), fit.K,
                                      fit.world_to_camera, W, H).astype(np.int64)
            sil = fitted > 1
            iou = (sil & mask).sum() / max((sil | mask).sum(), 1)
            confusion[kind] += Confusion.of(torch.as_tensor(fitted)[None], torch.as_tensor(parts)[None])
            rows[kind].append({"item": i, "mpjpe_mm": float(mpjpe), "pa_mpjpe_mm": float(pa),
                               "fit_keypoint_px": fit.keypoint_error_px, "silhouette_iou": float(iou),
                               "detector_keypoint_px": detector_px.get(i, float("nan")), "detect_s": detect_s[i],
                               "fit_s": fit.seconds, "yaw_deg": fit.yaw_deg, "reading": fit.reading})
            log(f"{kind} item {i}: MPJPE {mpjpe:.0f} mm, PA {pa:.0f} mm, IoU {iou:.2f}")
    summary = {}
    for kind, r in rows.items():
        if not r:
            continue
        mean = {k: float(np.nanmean([x[k] for x in r])) for k in r[0] if k not in ("item", "yaw_deg", "reading")}
        median = {k: float(np.nanmedian([x[k] for x in r])) for k in ("mpjpe_mm", "pa_mpjpe_mm")}
        summary[kind] = {"items": len(r), "mean": mean, "median": median, "part_miou": confusion[kind].miou()}
    return {"data": str(data), "items": n, "detected": len(rows["blazepose"]), "image_size": [H, W],
            "fit_config": {k: getattr(fit_config, k) for k in fit_config.__dataclass_fields__},
            "summary": summary, "rows": rows}


def markdown(result: dict) -> str:
    head = (f"Synthetic collection `{Path(result['data']).name}`: {result['items']} images "
            f"{result['image_size'][0]}×{result['image_size'][1]}, BlazePose found a person in {result['detected']}. "
            "Camera intrinsics given (the dataset's K).\n\n"
            "| fitted from | MPJPE mm (median) | PA-MPJPE mm (median) | detector 2D px | fit 2D px | silhouette IoU "
            "| part mIoU | fit s/person |\n|---|---|---|---|---|---|---|---|\n")
    lines = []
    for kind, s in result["summary"].items():
        m = s["mean"]
        detector = f"{m['detector_keypoint_px']:.1f}" if kind == "blazepose" else "0 (truth)"
        lines.append(f"| {kind.replace('_', ' ')} | {m['mpjpe_mm']:.0f} ({s['median']['mpjpe_mm']:.0f}) | "
                     f"{m['pa_mpjpe_mm']:.0f} ({s['median']['pa_mpjpe_mm']:.0f}) | {detector} | "
                     f"{m['fit_keypoint_px']:.1f} | {m['silhouette_iou']:.3f} | {s['part_miou']:.3f} | "
                     f"{m['fit_s']:.1f} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.photos.measure", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a synthetic collection (python -m training synth)")
    p.add_argument("--out", type=Path, required=True, help="folder for measure.md and measure.json")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--threads", type=positive_int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    def run() -> None:
        result = measure(args.data, limit=args.limit)
        args.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out / "measure.json", result)
        write_text_atomic(args.out / "measure.md", markdown(result))
        print(markdown(result))

    return run_command("python -m training.photos.measure", run)


if __name__ == "__main__":
    sys.exit(main())

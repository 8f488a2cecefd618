"""A folder of photos → per-person fits and masks in the forms `training prepare` reads (detect.py, then fit.py).

Camera intrinsics per photo: the focal length from EXIF (`FocalLengthIn35mmFilm`, converted over the image diagonal)
when present, else a 50 mm-equivalent lens (a "normal" lens: f = 50 · diagonal / 43.27 mm); the principal point at
the image centre. Items are named after the photo (`<stem>`), or `<stem>_p1`, `<stem>_p2`, ... when it holds several
people. Written to `work/`: `fits/<item>.json` (pose, betas, transl, K, world_to_camera), `masks/<item>.png`
(BlazePose's person mask at the photo's size) and `detections.json` (per item: problem or fit, focal source, timing).
Photos are read as stored, without applying an EXIF rotation, exactly as `prepare` reads them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from neural.body import BodyModel

from ..data import write_json_atomic
from .detect import DetectConfig, Detector, Person
from .fit import FitConfig, Fitter, Target

DEFAULT_FOCAL_35MM = 50.0
# A fit whose landmarks reproject farther than this share of the person's height on average is not kept: no pose
# of the body explains them. Measured on real photos, whole people fit within 0.6-3.5% (and one walker varied by
# 2% of its height between runs), so the bound catches only gross failures: landmarks that belong to no one pose.
MAX_KEYPOINT_ERROR = 0.10
_FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
_EXIF_IFD, _FOCAL_35MM = 0x8769, 0xA405


def intrinsics(image: Image.Image) -> tuple[np.ndarray, str]:
    """K (3, 3) pixels of the image as stored, and where its focal length came from."""
    W, H = image.size
    exif = image.getexif()
    f35 = exif.get_ifd(_EXIF_IFD).get(_FOCAL_35MM) or exif.get(_FOCAL_35MM)
    source = f"EXIF 35 mm-equivalent {float(f35):g} mm" if f35 else f"default {DEFAULT_FOCAL_35MM:g} mm-equivalent"
    f = float(f35 or DEFAULT_FOCAL_35MM) * math.hypot(W, H) / _FULL_FRAME_DIAGONAL_MM
    return np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]]), source


@dataclass
class PhotoFits:
    """images: item → photo; fits: item → raw fit (K + world_to_camera form); masks: item → mask PNG;
    problems: item → why it was not fitted; info: item → focal source, timing and fit error."""

    images: dict[str, Path] = field(default_factory=dict)
    fits: dict[str, dict] = field(default_factory=dict)
    masks: dict[str, Path] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)


def detect_and_fit(photos: dict[str, Path], *, body: BodyModel, work: Path,
                   detect_config: DetectConfig = DetectConfig(), fit_config: FitConfig = FitConfig(),
                   batch: int = 8, log=print) -> PhotoFits:
    """Detect and fit every person of `photos` (stem → path); write work/{fits,masks}/ and work/detections.json."""
    work = Path(work)
    (work / "fits").mkdir(parents=True, exist_ok=True)
    (work / "masks").mkdir(exist_ok=True)
    out = PhotoFits()
    pending: list[tuple[str, Person, np.ndarray, int, int]] = []
    with Detector(detect_config) as detector:
        for stem, path in sorted(photos.items()):
            out.images[stem] = path
            try:
                with Image.open(path) as img:
                    img.load()
                    K, focal = intrinsics(img)
                    rgb = np.asarray(img.convert("RGB"))
            except OSError as error:  # PIL's errors for unreadable files
                out.problems[stem] = f"unreadable image ({type(error).__name__}: {error})"
                continue
            start = time.perf_counter()
            people = detector.detect(rgb)
            seconds = time.perf_counter() - start
            if not people:
                out.problems[stem] = "no person found"
                out.info[stem] = {"detect_s": seconds, "focal": focal}
                continue
            for k, person in enumerate(people, 1):
                item = stem if len(people) == 1 else f"{stem}_p{k}"
                out.images[item] = path
                out.info[item] = {"detect_s": seconds / len(people), "focal": focal,
                                  "height_px": person.height_px, "people_in_image": len(people)}
                if person.problem:
                    out.problems[item] = person.problem
                else:
                    pending.append((item, person, K, rgb.shape[1], rgb.shape[0]))
            if len(people) > 1:
                out.images.pop(stem)
    if pending:
        fitter = Fitter(body, fit_config)
        for lo in range(0, len(pending), batch):
            chunk = pending[lo:lo + batch]
            fits = fitter.fit([Target(keypoints=p.keypoints, visibility=p.visibility, mask=p.mask, K=K, width=W,
                                      height=H, alternatives=p.alternatives) for _, p, K, W, H in chunk])
            for (item, person, *_), fit in zip(chunk, fits):
                out.info[item].update(fit_s=fit.seconds, keypoint_error_px=fit.keypoint_error_px, yaw_deg=fit.yaw_deg,
                                      reading=fit.reading)
                if fit.keypoint_error_px > MAX_KEYPOINT_ERROR * person.height_px:
                    out.problems[item] = (f"the fitted body does not explain the landmarks (off by "
                                          f"{fit.keypoint_error_px:.0f} px on average, more than "
                                          f"{MAX_KEYPOINT_ERROR:.0%} of its {person.height_px:.0f} px height): "
                                          "not a whole person, or not a person")
                    continue
                (work / "fits" / f"{item}.json").write_text(json.dumps(fit.as_raw_fit()))
                Image.fromarray(person.mask.astype(np.uint8) * 255).save(work / "masks" / f"{item}.png")
                out.fits[item] = fit.as_raw_fit()
                out.masks[item] = work / "masks" / f"{item}.png"
            log(f"photos: fitted {min(lo + batch, len(pending))} of {len(pending)} people")
    write_json_atomic(work / "detections.json", {"problems": out.problems, "items": out.info})
    return out

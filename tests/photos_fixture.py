"""Shared inputs of the photo tests: real video frames from sports2d's demo (BSD-3-Clause) and a real street photo
from ultralytics' assets (AGPL-3.0), both read from the installed package, never copied into the repository; and
synthetic people with their exact keypoints and masks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from neural.body import BodyModel, free_body_path
from neural.camera import Camera
from neural.raster import rasterize

SPORTS2D_VIDEO = ("Sports2D", "Demo/demo.mp4")
ULTRALYTICS_BUS = ("ultralytics", "assets/bus.jpg")


def _package_file(module: str, member: str) -> Path | None:
    spec = importlib.util.find_spec(module)  # finds the package without importing it (ultralytics imports torch etc.)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / member
    return path if path.is_file() else None


def sports2d_video() -> Path | None:
    return _package_file(*SPORTS2D_VIDEO)


def bus_photo() -> np.ndarray:
    """RGB (1080, 810, 3) uint8: ultralytics' bus.jpg, two men walking past a bus in Madrid and two more cut by the
    frame edges; skips the test, saying why, without the package."""
    path = _package_file(*ULTRALYTICS_BUS)
    if path is None:
        pytest.skip("ultralytics==8.4.190 (its AGPL-3.0 street photo bus.jpg) is not installed; `make venv` installs "
                    "it with --no-deps")
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def real_frames(indices: list[int]) -> dict[int, np.ndarray]:
    """RGB frames (H, W, 3) uint8 of sports2d's demo video; skips the test, saying why, without the package."""
    video = sports2d_video()
    if video is None:
        pytest.skip("sports2d==0.8.34 (its BSD-3 demo video of two real people) is not installed; `make venv` "
                    "installs it")
    cv2 = pytest.importorskip("cv2", reason="opencv (installed with mediapipe by `make venv`) decodes the video")
    capture = cv2.VideoCapture(str(video))
    frames, i = {}, 0
    while len(frames) < len(indices):
        ok, frame = capture.read()
        assert ok, f"{video} ended at frame {i}; wanted frames {indices}"
        if i in indices:
            frames[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        i += 1
    capture.release()
    return frames


def synthetic_people(indices: list[int], *, height: int = 256, width: int = 128, seed: int = 0):
    """Synthetic people of the synth collection: images (B, H, W, 3) uint8, masks (B, H, W) bool, posed bodies and
    cameras (the truth)."""
    from training.synth import render_people, sample_people

    body = BodyModel.load(free_body_path())
    posed, camera, appearance, pose, betas = sample_people(body, indices, seed=seed, height=height, width=width)
    with torch.no_grad():
        rest_joints = body().joints[0]
        rgb, coverage, _ = render_people(posed, camera, {k: torch.as_tensor(v) for k, v in appearance.items()},
                                         rest_joints)
    images = (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    return body, images, (coverage >= 0.5).numpy(), posed, camera, pose, betas


def mask_of(body: BodyModel, posed, camera: Camera) -> np.ndarray:
    with torch.no_grad():
        return rasterize(posed.vertices, body.faces, camera).mask.numpy()


def needs_mediapipe():
    return pytest.importorskip("mediapipe", reason="mediapipe==0.10.21 (BlazePose) is not installed; `make venv` "
                                                   "installs it")

"""`python -m neural demo --out DIR`: the free body in eight poses, rasterised, as PNGs and a contact sheet.

A check anyone can run without weights or a GPU that the geometry under the generator is right: the body model
(paper §3.1, SMPL-format LBS), the crop camera that frames a body like the generator's training images (2:1), and the
part labels the generator and discriminator are conditioned on (paper §3.3, labels 2..25). Each pose is drawn as a
flat-shaded grey panel beside its part-colour panel.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from neural.body import BodyModel, free_body_path
from neural.camera import Camera, crop_camera
from neural.raster import part_map, part_palette, rasterize
from neural.skeleton import JOINT_NAMES

# Axis-angle per joint, in degrees (direction = axis in the parent's frame, length = angle); body frame: Y up,
# facing +Z, left = +X. Arms point along ±X in the T-pose, so ±Z turns raise or lower them; legs point down, so
# -X turns swing a leg forward and +X bends a knee.
ARMS_DOWN = {"left_shoulder": (0, 0, -70), "right_shoulder": (0, 0, 70)}


def _walk(phase: float) -> dict[str, tuple[float, float, float]]:
    """A walk cycle at `phase` in [0, 1): legs swing ±30°, the trailing knee bends, the arms swing opposite."""
    s = math.sin(2 * math.pi * phase)
    return {"left_hip": (-30 * s, 0, 0), "right_hip": (30 * s, 0, 0),
            "left_knee": (40 * max(0.0, -s) + 5, 0, 0), "right_knee": (40 * max(0.0, s) + 5, 0, 0),
            "left_shoulder": (25 * s, 0, -70), "right_shoulder": (-25 * s, 0, 70),
            "left_elbow": (0, -20, 0), "right_elbow": (0, 20, 0)}


POSES: dict[str, dict[str, tuple[float, float, float]]] = {
    "t-pose": {},
    "walk 0": _walk(0.25),
    "walk 1": _walk(0.5),
    "walk 2": _walk(0.75),
    "sitting": {"left_hip": (-90, 0, 0), "right_hip": (-90, 0, 0), "left_knee": (90, 0, 0), "right_knee": (90, 0, 0),
                **ARMS_DOWN, "left_elbow": (0, -40, 0), "right_elbow": (0, 40, 0)},
    "arms raised": {"left_shoulder": (0, 0, 70), "right_shoulder": (0, 0, -70)},
    "lunge": {"left_hip": (-70, 0, 0), "left_knee": (80, 0, 0), "right_hip": (30, 0, 0), "right_knee": (20, 0, 0),
              "spine1": (10, 0, 0), **ARMS_DOWN},
    "wave": {"left_shoulder": (0, 0, -70), "right_shoulder": (0, 0, -10), "right_elbow": (0, 0, -100),
             "right_wrist": (0, 0, 20), "head": (0, -15, 0)},
}


def pose_tensor(joint_degrees: dict[str, tuple[float, float, float]]) -> torch.Tensor:
    """Named joint rotations (degrees) → SMPL pose (24, 3) axis-angle radians. Unknown names fail, listing valid."""
    pose = torch.zeros(len(JOINT_NAMES), 3)
    for name, rotation in joint_degrees.items():
        if name not in JOINT_NAMES:
            raise ValueError(f"unknown joint {name!r}; valid names: {', '.join(JOINT_NAMES)}")
        pose[JOINT_NAMES.index(name)] = torch.deg2rad(torch.tensor(rotation, dtype=torch.float32))
    return pose


def render_panels(vertices: torch.Tensor, faces: torch.Tensor, parts: torch.Tensor, camera: Camera) -> np.ndarray:
    """One body → (H, 2W, 3) uint8: flat-shaded grey | part colours, white background.

    vertices (1, V, 3) in the camera's world frame; faces (F, 3); parts (V,) labels 2..25.
    """
    frags = rasterize(vertices, faces, camera)
    labels = part_map(frags, faces, parts)[0]
    tri = vertices[0][faces]                                                          # (F, 3, 3)
    normals = torch.nn.functional.normalize(torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), dim=-1)
    _, rays = camera.rays()
    facing = (normals[frags.face_ids[0].clamp(min=0)].reshape(-1, 3) * rays[0]).sum(-1).abs()
    shade = (0.25 + 0.75 * facing).reshape(camera.height, camera.width)              # head-light, both sides lit
    mask = frags.mask[0]
    grey = torch.where(mask, 0.8 * shade, torch.ones_like(shade))
    grey_rgb = (255 * grey).round().to(torch.uint8)[..., None].expand(-1, -1, 3).numpy()
    colour = part_palette()[labels.numpy()]
    return np.concatenate([grey_rgb, colour], axis=1)


def render_demo(out: Path, *, body_path: Path | None = None, width: int = 256, height: int = 512) -> list[Path]:
    """Render POSES into `out`: one PNG per pose and `contact_sheet.png` (4 × 2 poses). Returns the paths."""
    from PIL import Image, ImageDraw

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    body = BodyModel.load(body_path or free_body_path())
    poses = torch.stack([pose_tensor(p) for p in POSES.values()])
    posed = body(pose=poses)
    tiles, paths = [], []
    for i, name in enumerate(POSES):
        verts = posed.vertices[i:i + 1]
        centre = 0.5 * (verts[0].amin(0) + verts[0].amax(0))
        # a scene camera 25° to the body's left and a little above; the crop camera frames the body 2:1
        scene = Camera.orbit(centre, 4.0, 25.0, 8.0, fov_y_deg=40.0, width=640, height=480)
        camera, _ = crop_camera(scene, verts, width=width, height=height, margin=0.05)
        tile = Image.fromarray(render_panels(verts, posed.faces, posed.parts, camera))
        ImageDraw.Draw(tile).text((8, 8), name, fill=(0, 0, 0))
        path = out / f"pose_{i}_{name.replace(' ', '_')}.png"
        tile.save(path)
        tiles.append(tile)
        paths.append(path)
    sheet = Image.new("RGB", (4 * 2 * width, 2 * height), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % 4) * 2 * width, (i // 4) * height))
    sheet_path = out / "contact_sheet.png"
    sheet.save(sheet_path)
    return [sheet_path, *paths]

"""docs/images/unusual_poses.png: the default model on a body lying on the floor, upside down (rolled 180° about
the view axis), in a handstand and in a cartwheel, each seen by a camera a standing person would hold, over grey.

    python tools/pose_sheet.py --out docs/images/unusual_poses.png
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from neural.camera import Camera
from neural.renderer import Character, FrameRequest, Renderer


def rotvec(axis, degrees):
    return np.asarray(axis, float) / np.linalg.norm(axis) * math.radians(degrees)


def poses() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name → (pose (24, 3), body_to_world (4, 4))."""
    a = np.zeros((24, 3))
    a[16, 2], a[17, 2] = -1.0, 1.0
    lying = a.copy()
    lying[0] = Rotation.from_matrix(np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], float)).as_rotvec()
    flipped = np.eye(4)
    flipped[:3, :3] = Rotation.from_rotvec(rotvec((0, 0, 1), 180)).as_matrix()
    flipped[1, 3] = 1.8  # turned about the view axis through the body's middle
    handstand = np.zeros((24, 3))
    handstand[0] = rotvec((0, 0, 1), 180)
    handstand[16, 2], handstand[17, 2] = 1.3, -1.3
    cartwheel = np.zeros((24, 3))
    cartwheel[0] = rotvec((0, 0, 1), 90)
    cartwheel[16, 2], cartwheel[17, 2] = 0.5, -0.5
    cartwheel[1, 2], cartwheel[2, 2] = -0.6, 0.6
    return {"lying": (lying, np.eye(4)), "upside down": (a, flipped), "handstand": (handstand, np.eye(4)),
            "cartwheel": (cartwheel, np.eye(4))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("docs/images/unusual_poses.png"))
    p.add_argument("--size", type=int, default=540)
    args = p.parse_args()
    renderer = Renderer(device="cpu")
    tiles = []
    for name, (pose, placement) in poses().items():
        with torch.no_grad():
            v = renderer.body(pose=torch.as_tensor(pose[None], dtype=torch.float32)).vertices[0].double().numpy()
        v = v @ placement[:3, :3].T + placement[:3, 3]
        centre = 0.5 * (v.min(0) + v.max(0))
        camera = Camera.look_at(torch.tensor(centre + np.array([0.0, 1.2, 3.5])), torch.tensor(centre),
                                fov_y_deg=40, width=args.size, height=args.size, dtype=torch.float64)
        request = FrameRequest(K=camera.K[0].numpy(), world_to_camera=camera.world_to_camera[0].numpy(),
                               width=args.size, height=args.size,
                               characters=(Character(pose=pose, seed=1, body_to_world=placement),))
        rgba = renderer.render(request).rgba
        tiles.append(rgba[..., :3] * rgba[..., 3:] + 0.3 * (1 - rgba[..., 3:]))
        print(name)
    sheet = (np.concatenate(tiles, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(sheet).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""`python -m neural render`: render a motion (AMASS-style .npz) or a T-pose from orbit cameras to PNGs.

Headless use of the Renderer (docs/overview.md §Data flow) without Blender: the camera orbits the body at each requested
yaw (the paper's view sweep is ±30°), following the body's centre from frame to frame.

AMASS files (SMPL (T, 72), SMPL-H (T, 156) or SMPL-X (T, 165) axis-angle poses in a Z-up world) are read as SMPL's
24 joints by neural/amass.py. The Z-up world becomes the body frame's Y-up by rotating the root: R_root' = Q·R_root
and, because SMPL rotates about the pelvis J₀, transl' = Q·(J₀ + transl) − J₀, with Q = Rx(−90°). Then every vertex
moves exactly by Q.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neural.amass import read_amass
from neural.body import BodyModel
from neural.cli import check_finite_image, psi_argument, seed_argument
from neural.memory import check_render_size
from neural.rotations import axis_angle_to_matrix, matrix_to_axis_angle

Z_UP_TO_Y_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # Rx(−90°): +Z → +Y, +Y → −Z


@dataclass(frozen=True, kw_only=True)
class Motion:
    """poses (T, 24, 3) axis-angle in the body frame (Y up), betas (n,), transl (T, 3) metres."""

    poses: np.ndarray
    betas: np.ndarray
    transl: np.ndarray


def t_pose() -> Motion:
    return Motion(poses=np.zeros((1, 24, 3)), betas=np.zeros(0), transl=np.zeros((1, 3)))


def load_motion(path: str | Path, body: BodyModel, *, z_up: bool = True) -> Motion:
    """Read an AMASS-style .npz (neural.amass.read_amass: `poses` (T, 72 | 156 | 165 | 3·J ≥ 66), optional `betas`,
    `trans` (T, 3)) in the body frame: turned from Z up to Y up unless z_up=False; betas cut to the body's count."""
    read = read_amass(path)
    pose, trans, betas = read.poses, read.trans, read.betas[:body.num_betas]
    if z_up:
        pose, trans = _z_up_to_y_up(pose, trans, betas, body)
    return Motion(poses=pose, betas=betas, transl=trans)


def _z_up_to_y_up(pose: np.ndarray, trans: np.ndarray, betas: np.ndarray, body: BodyModel):
    pose = pose.copy()
    pose[:, 0] = matrix_to_axis_angle(Z_UP_TO_Y_UP @ axis_angle_to_matrix(pose[:, 0]))
    with torch.no_grad():
        j0 = body(betas=torch.as_tensor(betas[None], dtype=torch.float32)).joints[0, 0].double().numpy()
    return pose, (trans + j0) @ Z_UP_TO_Y_UP.T - j0


def orbit_request(vertices: np.ndarray, character, *, yaw_deg: float, width: int, height: int,
                  fov_y_deg: float = 30.0, pitch_deg: float = 0.0):
    """A FrameRequest whose camera orbits the posed body (vertices (V, 3), body frame = world) at yaw_deg,
    framing its bounding sphere; yaw 0 looks at the body's front (from +Z)."""
    from neural.camera import Camera
    from neural.renderer import FrameRequest

    center = 0.5 * (vertices.min(0) + vertices.max(0))
    radius = float(np.linalg.norm(vertices - center, axis=1).max())
    half_fov = math.radians(fov_y_deg) / 2
    half_fov = min(half_fov, math.atan(math.tan(half_fov) * width / height))
    camera = Camera.orbit(torch.as_tensor(center, dtype=torch.float64), 1.05 * radius / math.sin(half_fov),
                          yaw_deg, pitch_deg, fov_y_deg=fov_y_deg, width=width, height=height, dtype=torch.float64)
    return FrameRequest(K=camera.K[0].numpy(), world_to_camera=camera.world_to_camera[0].numpy(), width=width,
                        height=height, characters=(character,))


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT in pixels (e.g. 256x512), got {text!r}")
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"--size must be positive, got {text!r}")
    return w, h


def _yaws(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--yaw must be comma-separated degrees (e.g. --yaw=-30,0,30), got {text!r}")


def _frames(text: str) -> slice:
    try:
        start, _, stop = text.partition(":")
        return slice(int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frames must be A:B (Python slice, e.g. 0:10), got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="generator checkpoint .safetensors (default: the shipped model)")
    parser.add_argument("--body", type=Path, help="SMPL-format body .npz (default: the free body)")
    parser.add_argument("--pose", type=Path, help="AMASS-style .npz with poses (T, 72|156|165), betas, trans; "
                        "Z-up (default: a T-pose)")
    parser.add_argument("--y-up", action="store_true", help="the pose file is already Y-up (SMPL body frame)")
    parser.add_argument("--yaw", type=_yaws, default=[0.0], help="camera yaws in degrees, e.g. --yaw=-30,0,30")
    parser.add_argument("--seed", type=seed_argument, default=0, help="appearance seed")
    parser.add_argument("--psi", type=psi_argument, default=0.7, help="truncation ψ (1 = no truncation)")
    parser.add_argument("--frames", type=_frames, default=slice(None), help="frames A:B of the motion")
    parser.add_argument("--size", type=_size, help="output WIDTHxHEIGHT (default: the model's frame, e.g. 256x512)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU) or a torch device")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the PNGs")


def run(args: argparse.Namespace) -> list[Path]:
    """Render every (frame, yaw) to OUT/frame_TTTTT_yaw±D.png (D in degrees, e.g. yaw-30; RGBA, straight
    alpha), each written atomically; returns the paths. Any image that cannot be rendered raises (naming the
    file or value): nothing is written for it, and `python -m neural render` exits 1 (130 on Ctrl+C)."""
    from PIL import Image

    from neural.files import refuse_overwriting_input, write_atomic
    from neural.renderer import Character, Renderer

    renderer = Renderer(model_path=args.model, body_path=args.body, device=args.device)
    motion = load_motion(args.pose, renderer.body, z_up=not args.y_up) if args.pose else t_pose()
    indices = range(len(motion.poses))[args.frames]
    if len(indices) == 0:
        raise ValueError(f"--frames selects no frame of the {len(motion.poses)} in {args.pose or 'the T-pose'}")
    width, height = args.size or (renderer.config.width, renderer.config.height)
    check_render_size(width, height)
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for t in indices:
        character = Character(pose=motion.poses[t], betas=motion.betas, transl=motion.transl[t], seed=args.seed,
                              psi=args.psi)
        with torch.no_grad():
            posed = renderer.body(betas=torch.as_tensor(motion.betas[None], dtype=torch.float32),
                                  pose=torch.as_tensor(motion.poses[t][None], dtype=torch.float32),
                                  transl=torch.as_tensor(motion.transl[t][None], dtype=torch.float32))
        vertices = posed.vertices[0].double().cpu().numpy()
        for yaw in args.yaw:
            result = renderer.render(orbit_request(vertices, character, yaw_deg=yaw, width=width, height=height))
            path = args.out / f"frame_{t:05d}_yaw{yaw:+g}.png"
            refuse_overwriting_input(path, *(p for p in (args.model, args.body, args.pose) if p))
            check_finite_image(result.rgba, path)
            image = Image.fromarray(np.round(result.rgba * 255).astype(np.uint8), "RGBA")
            write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))  # whole or not at all (Ctrl+C, crash)
            print(path, flush=True)
            written.append(path)
    print(f"wrote {len(written)} images to {args.out}")
    return written

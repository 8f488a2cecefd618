"""Mocap for the retargeting tests (tests/test_bvh.py, test_retarget.py, test_addon_retarget.py).

- Real CMU-skeleton BVH files from Debian's `assimp-testmodels` (CMU: free for research and commercial use), which
  `make test` extracts into .cache/assimp-testmodels (or a system install under /usr/share). Where there is none,
  a CMU-named clip written from a known motion stands in, and the reason is given as a warning.
- SMPL motions written as BVH by our writer, optionally with another rest pose (per-joint rest rotations), another
  world (Z up) and other units, for round trips that must come back to the SMPL motion.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from neural.bvh import BvhMotion, BvhSkeleton, channel_values, write_bvh
from neural.rotations import axis_angle_to_matrix
from neural.skeleton import JOINT_NAMES, PARENTS

ROOT = Path(__file__).resolve().parents[1]
CMU_PLACES = (ROOT / ".cache/assimp-testmodels/usr/share/assimp/models/BVH", Path("/usr/share/assimp/models/BVH"))


def smooth_poses(T: int, seed: int, scale: float = 0.4) -> np.ndarray:
    """(T, 24, 3) axis-angle: each joint swings along its own random axis (a smooth, known motion)."""
    rng = np.random.default_rng(seed)
    amplitude = rng.normal(scale=scale, size=(24, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(24, 1))
    t = np.linspace(0, 2 * np.pi, T)[:, None, None]
    return amplitude[None] * np.sin(t + phase[None])


def smpl_bvh(path: Path, poses: np.ndarray, trans: np.ndarray, joints: np.ndarray, *, fps: float = 30.0,
             names: tuple[str, ...] = JOINT_NAMES, rest: np.ndarray | None = None, world: np.ndarray | None = None,
             metres_per_unit: float = 0.01, order: str = "ZXY") -> Path:
    """Write the SMPL motion (poses (T, 24, 3), trans (T, 3), rest joints (24, 3), Y up, metres) as a BVH whose
    rest skeleton is SMPL's posed by the global rotations `rest` (24, 3, 3) (default: SMPL's T-pose), in the world
    `world` (3, 3) · SMPL world (default: the same) and in the given units. The drawn motion is the same."""
    rest = np.broadcast_to(np.eye(3), (24, 3, 3)) if rest is None else rest
    W = np.eye(3) if world is None else world
    R = axis_angle_to_matrix(poses)
    G = np.zeros_like(R)
    for k, p in enumerate(PARENTS):
        G[:, k] = R[:, k] if p < 0 else G[:, p] @ R[:, k]
    offsets = np.zeros((24, 3))
    for k, p in enumerate(PARENTS):
        if p >= 0:
            offsets[k] = W @ rest[p] @ (joints[k] - joints[p]) / metres_per_unit
    source = W @ G @ np.swapaxes(rest, -1, -2) @ W.T                       # (T, 24, 3, 3) source global rotations
    local = source.copy()
    local[:, 1:] = np.swapaxes(source[:, list(PARENTS[1:])], -1, -2) @ source[:, 1:]
    ends = np.full((24, 3), np.nan)
    for leaf in (10, 11, 15, 22, 23):
        tip = np.array([0, 0.1, 0]) if leaf == 15 else 0.3 * (joints[leaf] - joints[PARENTS[leaf]])
        ends[leaf] = W @ rest[leaf] @ tip / metres_per_unit
    rotations = tuple(f"{axis}rotation" for axis in order)
    skeleton = BvhSkeleton(names=names, parents=PARENTS, offsets=offsets, end_sites=ends,
                           channels=tuple((("Xposition", "Yposition", "Zposition") if p < 0 else ()) + rotations
                                          for p in PARENTS))
    root = (joints[0] + trans) @ W.T / metres_per_unit
    values = channel_values(skeleton, local, root)
    return write_bvh(path, BvhMotion(path=None, skeleton=skeleton, values=values, frame_time=1.0 / fps))


def cmu_like_bvh(path: Path, T: int = 240) -> Path:
    """A CMU-named, CMU-structured skeleton (LowerBack at Hips, Neck and the shoulders at Spine1, hip joints ahead
    of the root) walking in place, 120 fps, cm-like units: the stand-in when no CMU file is installed."""
    from neural.retarget import free_body_target

    target = free_body_target()
    J = target.joints
    cmu = {"pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg", "spine1": "LowerBack",
           "left_knee": "LeftLeg", "right_knee": "RightLeg", "spine2": "Spine", "left_ankle": "LeftFoot",
           "right_ankle": "RightFoot", "spine3": "Spine1", "left_foot": "LeftToeBase", "right_foot": "RightToeBase",
           "neck": "Neck1", "left_collar": "LeftShoulder", "right_collar": "RightShoulder", "head": "Head",
           "left_shoulder": "LeftArm", "right_shoulder": "RightArm", "left_elbow": "LeftForeArm",
           "right_elbow": "RightForeArm", "left_wrist": "LeftHand", "right_wrist": "RightHand",
           "left_hand": "LeftFingerBase", "right_hand": "RightFingerBase"}
    joints = J.copy()
    joints[3] = joints[0]                                  # LowerBack at Hips
    joints[[13, 14]] = joints[9]                           # the shoulders start at Spine1
    joints[[1, 2], 2] += 0.05                              # hip joints ahead of the root
    poses = np.zeros((T, 24, 3))
    t = np.linspace(0, 4 * np.pi, T)
    for side, sign in ((1, 1), (2, -1)):
        poses[:, side, 0] = 0.25 * sign * np.sin(t)                       # thighs swing
        poses[:, side + 3, 0] = 0.3 * (1 + sign * np.sin(t - 0.8)) / 2   # knees bend
    poses[1:, 16, 2], poses[1:, 17, 2] = -1.2, 1.2                        # arms down after a T-pose
    poses[:, 18, 1] = 0.3 * np.sin(t)
    trans = np.zeros((T, 3))
    trans[:, 1] = -target.sole  # the soles on the floor
    return smpl_bvh(path, poses, trans, joints, fps=120.0, names=tuple(cmu[n] for n in JOINT_NAMES),
                    metres_per_unit=0.0254 / 0.45, order="ZYX")


def cmu_clip(tmp_path: Path, name: str = "01_01.bvh") -> Path:
    """A real CMU clip where one is installed, else the written stand-in (with a warning saying why)."""
    for folder in CMU_PLACES:
        if (folder / name).is_file():
            return folder / name
    warnings.warn(f"no CMU BVH {name} in {', '.join(map(str, CMU_PLACES))} (run `make test`, which extracts "
                  "Debian's assimp-testmodels): using a CMU-like clip written from a known motion instead")
    return cmu_like_bvh(tmp_path / name)

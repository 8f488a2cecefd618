"""The SMPL skeleton: its 24 joint names and kinematic tree (docs/conventions.md §Body frame), and the axis snap
that rig and mocap readers use on rest poses.

Plain Python and numpy, no torch: the Blender add-on reads these at registration (a CUDA torch chosen in its
preferences must be found before anything imports torch); neural.body, neural.retarget_names and addon.rig all
take them from here.
"""
from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_JOINTS = len(JOINT_NAMES)


def snap_to_axis(v: np.ndarray) -> np.ndarray:
    """v (3,) normalised, snapped to the nearest ±axis when within ~8° of it: every known rig and mocap rest pose
    is axis-aligned, and a snapped frame keeps a slightly bent rest from tilting the whole body."""
    v = v / np.linalg.norm(v)
    k = int(np.abs(v).argmax())
    if abs(v[k]) > 0.99:
        snapped = np.zeros(3)
        snapped[k] = np.sign(v[k])
        return snapped
    return v

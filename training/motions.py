"""Built-in motions for the synthetic collection: parametric poses of the 24 SMPL joints, by phase.

Each motion maps a phase in [0, 1) to joint rotations in degrees (axis-angle: direction = axis in the parent's
frame, length = angle), in the body frame of docs/conventions.md (Y up, facing +Z, left = +X, T-pose rest). Arms
point along ±X in the T-pose, so ±Z turns lower or raise them; legs point down, so −X swings a leg forward and +X
bends a knee. `sample_pose` adds a random perturbation, so no two synthetic people stand exactly alike.
"""

from __future__ import annotations

import math

import numpy as np

from neural.skeleton import JOINT_NAMES

Pose = dict[str, tuple[float, float, float]]


def _arms_down(angle: float = 70.0) -> Pose:
    return {"left_shoulder": (0, 0, -angle), "right_shoulder": (0, 0, angle)}


def walk(phase: float, stride: float = 30.0) -> Pose:
    s = math.sin(2 * math.pi * phase)
    return {"left_hip": (-stride * s, 0, 0), "right_hip": (stride * s, 0, 0),
            "left_knee": (1.4 * stride * max(0.0, -s) + 5, 0, 0), "right_knee": (1.4 * stride * max(0.0, s) + 5, 0, 0),
            "left_shoulder": (0.8 * stride * s, 0, -72), "right_shoulder": (-0.8 * stride * s, 0, 72),
            "left_elbow": (0, -20, 0), "right_elbow": (0, 20, 0)}


def run(phase: float) -> Pose:
    pose = walk(phase, stride=45.0)
    pose.update({"left_elbow": (0, -80, 0), "right_elbow": (0, 80, 0), "spine1": (8, 0, 0)})
    return pose


def idle(phase: float) -> Pose:
    s = math.sin(2 * math.pi * phase)
    return {**_arms_down(75 + 5 * s), "spine2": (0, 5 * s, 0), "head": (0, 15 * s, 0), "left_hip": (0, 0, 4),
            "right_hip": (0, 0, -4), "left_elbow": (0, -10, 0), "right_elbow": (0, 10, 0)}


def wave(phase: float) -> Pose:
    s = math.sin(2 * math.pi * phase)
    return {"left_shoulder": (0, 0, -72), "right_shoulder": (0, 0, -15), "right_elbow": (0, 0, -90 - 20 * s),
            "right_wrist": (0, 0, 20 * s), "head": (0, -15, 0)}


def cheer(phase: float) -> Pose:
    s = math.sin(2 * math.pi * phase)
    return {"left_shoulder": (0, 0, 50 + 15 * s), "right_shoulder": (0, 0, -50 - 15 * s),
            "left_elbow": (0, 0, 20), "right_elbow": (0, 0, -20), "head": (-10, 0, 0)}


def squat(phase: float) -> Pose:
    depth = 0.5 - 0.5 * math.cos(2 * math.pi * phase)
    return {"left_hip": (-80 * depth, 0, 0), "right_hip": (-80 * depth, 0, 0), "left_knee": (100 * depth, 0, 0),
            "right_knee": (100 * depth, 0, 0), "left_ankle": (-25 * depth, 0, 0), "right_ankle": (-25 * depth, 0, 0),
            "spine1": (25 * depth, 0, 0), "left_shoulder": (-60 * depth, 0, -70), "right_shoulder": (-60 * depth, 0, 70)}


def point(phase: float) -> Pose:
    s = math.sin(2 * math.pi * phase)
    return {**_arms_down(), "left_shoulder": (0, 40 + 20 * s, -10), "spine2": (0, 10 * s, 0), "head": (0, 20, 0),
            "right_elbow": (0, 30, 0)}


def hands_on_hips(phase: float) -> Pose:
    s = math.sin(2 * math.pi * phase)
    return {"left_shoulder": (0, 20, -55), "right_shoulder": (0, -20, 55), "left_elbow": (0, -100, 0),
            "right_elbow": (0, 100, 0), "spine2": (0, 8 * s, 0), "left_hip": (0, 0, 6), "right_hip": (0, 0, -6)}


MOTIONS = {"walk": walk, "run": run, "idle": idle, "wave": wave, "cheer": cheer, "squat": squat, "point": point,
           "hands_on_hips": hands_on_hips}


def pose_array(joint_degrees: Pose) -> np.ndarray:
    """Named joint rotations (degrees) → (24, 3) axis-angle radians. Unknown names fail, listing the valid ones."""
    pose = np.zeros((len(JOINT_NAMES), 3))
    for name, rotation in joint_degrees.items():
        if name not in JOINT_NAMES:
            raise ValueError(f"unknown joint {name!r}; valid names: {', '.join(JOINT_NAMES)}")
        pose[JOINT_NAMES.index(name)] += np.radians(rotation)
    return pose


def sample_pose(rng: np.random.Generator, *, jitter_deg: float = 6.0) -> tuple[np.ndarray, str, float]:
    """A random motion at a random phase, every joint perturbed by N(0, jitter_deg²) per axis and the root turned
    by up to ±20° about +Y. Returns (pose (24, 3) axis-angle radians, motion name, phase)."""
    name = str(rng.choice(sorted(MOTIONS)))
    phase = float(rng.uniform())
    pose = pose_array(MOTIONS[name](phase))
    pose[1:] += np.radians(rng.normal(scale=jitter_deg, size=(23, 3)))
    pose[0] = np.radians([rng.normal(scale=3.0), rng.uniform(-20, 20), rng.normal(scale=3.0)])
    return pose, name, phase

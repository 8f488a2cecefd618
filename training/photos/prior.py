"""Pose and shape priors of the fitter, free of licence-gated data.

- Pose prior: a Gaussian over the 23 body-joint rotations (69 axis-angle values) fitted to poses drawn from the
  built-in motions (training/motions.py: walk, run, idle, wave, cheer, squat, point, hands on hips, each joint
  jittered), with a floor on every variance so poses outside those motions stay reachable. The cost is the
  Mahalanobis distance per degree of freedom. SMPLify uses a GMM fitted to CMU mocap; this is the same idea on the
  motions we own.
- Joint limits: knees bend only forwards (+X about the knee), elbows only inwards (the left about −Y, the right
  about +Y); the cost is the squared overshoot in radians.
- Shape prior: the mean squared beta (betas are unit-variance by construction in SMPL-format bodies).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neural.skeleton import JOINT_NAMES

from ..motions import sample_pose

_FLOOR_DEG = 8.0  # minimum standard deviation per axis-angle component
# (joint, axis, sign): the rotation component must keep this sign (a little slack is allowed)
_LIMITS = ((JOINT_NAMES.index("left_knee"), 0, 1), (JOINT_NAMES.index("right_knee"), 0, 1),
           (JOINT_NAMES.index("left_elbow"), 1, -1), (JOINT_NAMES.index("right_elbow"), 1, 1))
_SLACK = math.radians(5.0)


@dataclass(frozen=True)
class PosePrior:
    """mean (69,), precision (69, 69): the Gaussian of body poses (joints 1..23), radians."""

    mean: np.ndarray
    precision: np.ndarray

    def cost(self, body_pose: Tensor) -> Tensor:
        """body_pose (B, 23, 3) axis-angle → (B,) Mahalanobis² / 69."""
        d = body_pose.reshape(body_pose.shape[0], -1) - torch.as_tensor(self.mean, dtype=body_pose.dtype)
        P = torch.as_tensor(self.precision, dtype=body_pose.dtype)
        return ((d @ P) * d).sum(1) / d.shape[1]


@functools.lru_cache(maxsize=1)
def motion_prior(samples: int = 8000, seed: int = 0) -> PosePrior:
    """The PosePrior fitted to `samples` poses of the built-in motions (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    poses = np.stack([sample_pose(rng)[0][1:].reshape(-1) for _ in range(samples)])
    cov = np.cov(poses, rowvar=False) + np.eye(poses.shape[1]) * math.radians(_FLOOR_DEG) ** 2
    return PosePrior(mean=poses.mean(0), precision=np.linalg.inv(cov))


def joint_limit_cost(pose: Tensor) -> Tensor:
    """pose (B, 24, 3) axis-angle → (B,) squared overshoot of the knee and elbow limits, radians²."""
    cost = torch.zeros(pose.shape[0], dtype=pose.dtype, device=pose.device)
    for joint, axis, sign in _LIMITS:
        cost = cost + torch.relu(-sign * pose[:, joint, axis] - _SLACK) ** 2
    return cost


def shape_cost(betas: Tensor) -> Tensor:
    """betas (B, n) → (B,) mean squared beta."""
    return betas.square().mean(1)

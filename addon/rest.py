"""A rig's rest skeleton against the body model's: rest orientation, proportions and a betas fit.

The generator is conditioned on SMPL joint rotations measured from SMPL's rest pose, the T-pose (paper §3.1). A
rig whose rest pose is something else (an A-pose applied as rest pose, bent knees) shows its bones' rotations
relative to *that* rest: read as they are, an unposed A-pose rig would render in a T-pose. Here each bone's rest
orientation relative to the T-pose is measured from joint positions (the direction from a joint to its children
in the rig's rest skeleton versus the body model's T-pose), so that rig.read_pose can compose it in and the render
shows what the bones show. Twist about a bone cannot be seen from joint positions and is taken as SMPL's.

The body model's rest joints are linear in the betas, J(β) = J_regressor · (template + shapedirs · β): a rig's
proportions are compared with them (the largest joint offset is reported), and the betas that best fit a rig's
joints are a small linear least-squares solve.

Every array here is in the body frame (metres, Y up, subject faces +Z), joints (24, 3) in SMPL order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from neural.rotations import matrix_to_axis_angle

if TYPE_CHECKING:
    from neural.body import BodyModel

PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)  # as neural.body
CHILDREN = tuple(tuple(c for c, p in enumerate(PARENTS) if p == k) for k in range(24))
REST_TOLERANCE = np.radians(3.0)  # closer to the T-pose than this is the T-pose (betas move joints a little)
PROPORTION_TOLERANCE = 0.02       # metres: rig joints farther than this from the body's are reported


@dataclass(frozen=True)
class JointModel:
    """The body model's rest joints as a linear function of the betas: base (24, 3) + per_beta (24, 3, n) · β."""

    base: np.ndarray
    per_beta: np.ndarray

    @classmethod
    def of(cls, body: BodyModel) -> JointModel:
        import torch

        with torch.no_grad():
            regressor = body.J_regressor.double()                                                  # (24, V)
            base = (regressor @ body.template.double()).cpu().numpy()
            per_beta = torch.einsum("jv,vcl->jcl", regressor, body.shapedirs.double()).cpu().numpy()
        return cls(base=base, per_beta=per_beta)

    @property
    def num_betas(self) -> int:
        return self.per_beta.shape[2]

    def joints(self, betas: np.ndarray) -> np.ndarray:
        """(24, 3) rest joints for betas (n,) (cut to the model's count; missing ones are 0)."""
        betas = np.asarray(betas, np.float64)[: self.num_betas]
        return self.base + self.per_beta[:, :, : len(betas)] @ betas

    def fit(self, target: np.ndarray, present: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Betas (n,) whose T-pose joints best match target (24, 3) up to a translation (least squares over the
        present joints, offsets from their mean), and the largest remaining joint offset in metres."""
        keep = np.ones(24, bool) if present is None else np.asarray(present, bool)
        A = self.per_beta[keep] - self.per_beta[keep].mean(0)                     # (k, 3, n)
        b = (target[keep] - target[keep].mean(0)) - (self.base[keep] - self.base[keep].mean(0))
        betas = np.linalg.lstsq(A.reshape(-1, self.num_betas), b.reshape(-1), rcond=None)[0]
        fitted = self.joints(betas)[keep]
        residual = (target[keep] - target[keep].mean(0)) - (fitted - fitted.mean(0))
        return betas, float(np.linalg.norm(residual, axis=1).max())


def _align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The rotation (3, 3) taking the directions source (k, 3) closest onto target (k, 3): the minimal rotation for
    one direction, the least-squares one (Kabsch) for several."""
    source = source / np.linalg.norm(source, axis=1, keepdims=True)
    target = target / np.linalg.norm(target, axis=1, keepdims=True)
    if len(source) == 1:
        a, b = source[0], target[0]
        axis, cos = np.cross(a, b), float(a @ b)
        sin = np.linalg.norm(axis)
        if sin < 1e-12:
            if cos > 0:
                return np.eye(3)
            other = np.eye(3)[int(np.abs(a).argmin())]  # opposite: half a turn about any perpendicular
            axis = np.cross(a, other) / np.linalg.norm(np.cross(a, other))
            return 2 * np.outer(axis, axis) - np.eye(3)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]) / sin
        return np.eye(3) + sin * k + (1 - cos) * k @ k
    u, _, vt = np.linalg.svd(target.T @ source)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def rest_rotations(rig_joints: np.ndarray, tpose: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """(24, 3, 3) global rest orientation of each of the rig's bones relative to the T-pose: the rotation taking the
    T-pose offsets to the joint's children onto the rig's. Leaves (and joints whose children are missing) follow
    their parent; a bone within REST_TOLERANCE of the T-pose counts as the T-pose (betas alone turn bones a little)."""
    keep = np.ones(24, bool) if present is None else np.asarray(present, bool)
    out = np.zeros((24, 3, 3))
    for k in range(24):
        parent = np.eye(3) if PARENTS[k] < 0 else out[PARENTS[k]]
        children = [c for c in CHILDREN[k] if keep[c] and np.linalg.norm(rig_joints[c] - rig_joints[k]) > 1e-6]
        if not keep[k] or not children:
            out[k] = parent
            continue
        rotation = _align(tpose[children] - tpose[k], rig_joints[children] - rig_joints[k])
        if np.linalg.norm(matrix_to_axis_angle(rotation)) < REST_TOLERANCE:
            rotation = np.eye(3)
        out[k] = rotation
    return out


def unposed(rig_joints: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """The rig's rest skeleton (24, 3) carried to the T-pose: each bone turned back by its parent's rest rotation."""
    out = rig_joints.copy()
    for k in range(1, 24):
        p = PARENTS[k]
        out[k] = out[p] + rotations[p].T @ (rig_joints[k] - rig_joints[p])
    return out


def largest_offset(rig_tpose: np.ndarray, body_tpose: np.ndarray,
                   present: np.ndarray | None = None) -> tuple[float, int]:
    """(metres, joint index) of the largest distance between two T-pose skeletons (24, 3), pelvises aligned."""
    keep = np.ones(24, bool) if present is None else np.asarray(present, bool)
    distance = np.linalg.norm((rig_tpose - rig_tpose[0]) - (body_tpose - body_tpose[0]), axis=1)
    distance[~keep] = 0
    k = int(distance.argmax())
    return float(distance[k]), k

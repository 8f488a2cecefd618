"""How well a retargeted SMPL motion follows its mocap source (neural/retarget.py), per clip:

- segment angle: the angle between each SMPL body segment (joint → mapped child, posed by forward kinematics) and
  the source's segment between the same bones; mean and max over frames and segments, and the mean per segment;
- foot sliding: the horizontal speed of a foot joint (ankles and toes) while it is on the ground, mm per frame,
  for the SMPL body and for the source at the character's size; a joint is on the ground on frames where it is
  within `contact` metres of its lowest height in the clip, on this frame and the next;
- penetration: the depth below the floor (y = 0) of SMPL's lowest sole point (each foot joint's height minus its
  rest height above the rest sole) and of the source's foot joints, mean over frames and max, mm. (How far the
  clip was shifted to stand on the floor is Retargeted.ground_shift.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .retarget import FEET, Retargeted, SourceMotion, TargetSkeleton, _body_axes, segments, smpl_joints, world_positions
from .skeleton import JOINT_NAMES

@dataclass(frozen=True, kw_only=True)
class RetargetMetrics:
    """Angles in degrees, lengths in mm (per frame at the motion's fps for sliding)."""

    frames: int
    angle_mean: float
    angle_max: float
    per_segment: tuple[tuple[str, float], ...]
    slide: float
    source_slide: float
    penetration_mean: float
    penetration_max: float
    source_penetration_mean: float
    source_penetration_max: float

    def table(self) -> str:
        """The numbers as a markdown table."""
        rows = [("segment angle, mean / max (°)", f"{self.angle_mean:.2f} / {self.angle_max:.2f}", "—"),
                ("foot sliding on the ground (mm/frame)", f"{self.slide:.2f}", f"{self.source_slide:.2f}"),
                ("penetration below the floor, mean / max (mm)",
                 f"{self.penetration_mean:.1f} / {self.penetration_max:.1f}",
                 f"{self.source_penetration_mean:.1f} / {self.source_penetration_max:.1f}")]
        return "\n".join([f"| {self.frames} frames | SMPL | source, at the character's size |", "|---|---|---|",
                          *(f"| {a} | {b} | {c} |" for a, b, c in rows)])


def _contacts(height: np.ndarray, contact: float) -> np.ndarray:
    """(T−1, n) True where a joint (heights (T, n)) is on the ground on frames t and t+1."""
    down = height < height.min(0) + contact
    return down[1:] & down[:-1]


def _slide(points: np.ndarray, on: np.ndarray) -> float:
    """Mean horizontal step (mm) of points (T, n, 3) over the (T−1, n) steps marked on."""
    step = np.linalg.norm((points[1:] - points[:-1])[..., [0, 2]], axis=-1)
    return float(1000 * step[on].mean()) if on.any() else 0.0


def measure(source: SourceMotion, motion: Retargeted, target: TargetSkeleton, *, contact: float = 0.03
            ) -> RetargetMetrics:
    """Compare a retargeted motion with its source (both in the output world, the source at the character's size);
    contact: metres above a foot joint's lowest height that still count as on the ground."""
    J = np.asarray(target.joints, np.float64)
    X = smpl_joints(motion.poses, motion.trans, J)
    index = {name: i for i, name in enumerate(source.names)}
    m = [index[b] if b is not None else None for b in motion.bones]
    C = _body_axes(source.rest, m, source.label)
    S = world_positions(source, C, motion.scale, motion.metres_per_unit, m[0])
    angles, per = [], []
    for k, ds in segments(tuple(m), J, source.rest @ C).items():
        for d in ds:
            a, b = X[:, d] - X[:, k], S[:, m[d]] - S[:, m[k]]
            cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
            angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
            angles.append(angle)
            per.append((f"{JOINT_NAMES[k]}→{JOINT_NAMES[d]}", float(angle.mean())))
    angles = np.stack(angles, 1)

    feet = [k for k in FEET if m[k] is not None]
    above_sole = J[feet, 1] - target.sole                      # rest height of each foot joint above the sole
    sole = X[:, feet, 1] - above_sole                          # (T, n) the sole under each foot joint
    on = _contacts(X[:, feet, 1], contact)
    src_feet = S[:, [m[k] for k in feet]]
    src_on = _contacts(src_feet[..., 1], contact)
    depth = np.maximum(0.0, -sole.min(1))
    src_depth = np.maximum(0.0, -src_feet[..., 1].min(1))
    return RetargetMetrics(
        frames=len(X), angle_mean=float(angles.mean()), angle_max=float(angles.max()), per_segment=tuple(per),
        slide=_slide(X[:, feet], on), source_slide=_slide(src_feet, src_on),
        penetration_mean=float(1000 * depth.mean()), penetration_max=float(1000 * depth.max()),
        source_penetration_mean=float(1000 * src_depth.mean()), source_penetration_max=float(1000 * src_depth.max()))

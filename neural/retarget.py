"""Retarget motion capture of any common skeleton (BVH file, or an armature the add-on samples) onto SMPL: per frame
the 24 local joint rotations and the root translation that the generator is conditioned on (paper §3.1).

Method (rest-pose aware segment orientation transfer, our own):
1. Bones are matched to SMPL joints by name (neural/retarget_names.py). The source's rest skeleton gives its body
   frame C (left = right hip → left hip, up = pelvis → head, snapped to the nearest axes), in which both skeletons
   are compared; the output world is the source's world turned so that its up axis is +Y (metres, floor at 0).
2. Each SMPL joint k rotates a body segment: from k to its nearest mapped children. At rest, an alignment A_k
   takes SMPL's rest segment directions onto the source's (a T-pose SMPL onto an A-pose or a CMU skeleton).
   Posed, with D_k the source bone's world rotation since its rest:
   - one child (limbs, neck): G_k = S·D_k·A_k, twist from the source bone, S the smallest swing that lays the
     segment exactly along the source's posed segment (which may span several source bones);
   - a spine child and a left/right pair (pelvis, chest): the frame (up the spine, right → left) follows the
     source's frame, G_k = F_source(t)·F_SMPLᵀ; the fan of child directions itself differs between skeletons;
   - no child (head, toes, hands): the source's rotation relative to its parent, G_k = G_p·A_pᵀ·D_pᵀ·D_k·A_p;
   - no bone: the joint follows its parent (local identity), and is reported as unmapped.
   Local rotations are then G_parentᵀ·G_k. Raw local rotations are never copied: rest poses and bone axes differ.
3. The hip joints follow the source's, scaled by the ratio of leg lengths (hip → knee → ankle, SMPL over source),
   so strides keep the character's size: heights s·y(t), horizontal position from frame 0 (in metres, by the
   clip's units) plus s·(x(t) − x(0)); the pelvis hangs from them as SMPL's does. Units (m, cm, mm, inch, or CMU's
   1/0.45 inch) are detected from the leg length, or set. One vertical shift then puts SMPL's soles on the floor
   where they are lowest (skeletons carry their ankles at different heights above it).

Frame rate changes with `resample` (slerp). Metrics live in neural/retarget_metrics.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .bvh import BvhMotion, read_bvh
from .retarget_names import check_bone_map, match_bones, require_body
from .rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quaternion, quaternion_to_matrix
from .skeleton import JOINT_NAMES, PARENTS, snap_to_axis

Units = Literal["auto", "m", "cm", "mm", "inch", "cmu"]
METRES_PER_UNIT = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.0254 / 0.45}
TYPICAL_LEG = 0.8  # metres, hip → knee → ankle of an adult: what "auto" units compare against
FEET = (7, 8, 10, 11)  # SMPL ankles and toes
Y_UP_TO_Z_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # Rx(+90°): the AMASS / Blender world


@dataclass(frozen=True, kw_only=True)
class RetargetConfig:
    """bone_map: (smpl_joint, source bone) entries over the automatic match ('' unmaps); units: of the source's
    lengths, 'auto' detects them from the leg length (they place frame 0; the leg ratio scales the rest);
    ground: shift the clip up or down by one constant so that SMPL's soles stand on the floor where its feet are
    lowest (5th percentile of frames): skeletons carry their ankles at different heights above the floor."""

    bone_map: tuple[tuple[str, str], ...] = ()
    units: Units = "auto"
    ground: bool = True

    def __post_init__(self):
        check_bone_map(self.bone_map)
        if self.units not in ("auto", *METRES_PER_UNIT):
            raise ValueError(f"units {self.units!r}; expected auto or one of {', '.join(METRES_PER_UNIT)}")


@dataclass(frozen=True, kw_only=True)
class SourceMotion:
    """A mocap skeleton in motion, in its own world (any up axis, any units).

    names/parents: J bones, parents before children. rest: (J, 3) rest joint positions. positions: (T, J, 3) posed
    joint positions. rotations: (T, J, 3, 3) each bone's world rotation since its rest. fps: frames per second.
    label: what error messages call it (a file or an armature). metres_per_unit: known units (an armature), or None.
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    rest: np.ndarray
    positions: np.ndarray
    rotations: np.ndarray
    fps: float
    label: str
    metres_per_unit: float | None = None


@dataclass(frozen=True, kw_only=True)
class TargetSkeleton:
    """The SMPL body to retarget onto: joints (24, 3) rest joints in the body frame (metres, Y up); sole: the rest
    height (body-frame y) of the lowest point of the feet."""

    joints: np.ndarray
    sole: float


@dataclass(frozen=True, kw_only=True)
class Retargeted:
    """The SMPL motion, Y-up world, floor at y = 0, metres: poses (T, 24, 3) local axis-angle, root first; trans
    (T, 3) with posed pelvis = rest pelvis + trans; fps. bones: source bone per SMPL joint (None: unmapped);
    convention: the name map that matched; scale: metres of SMPL per source unit (leg ratio); units and
    metres_per_unit: the source's (they place frame 0);
    ground_shift: metres the clip was moved up to stand on the floor (RetargetConfig.ground)."""

    poses: np.ndarray
    trans: np.ndarray
    fps: float
    bones: tuple[str | None, ...]
    convention: str
    scale: float
    units: str
    metres_per_unit: float
    ground_shift: float = 0.0

    @property
    def unmapped(self) -> tuple[str, ...]:
        return tuple(j for j, b in zip(JOINT_NAMES, self.bones) if b is None)


def source_from_bvh(motion: BvhMotion) -> SourceMotion:
    """A BVH clip as a SourceMotion (rest = every channel at zero, so rotations are the global ones)."""
    sk = motion.skeleton
    rest = np.zeros((len(sk.names), 3))
    for j, p in enumerate(sk.parents):
        rest[j] = sk.offsets[j] + (rest[p] if p >= 0 else 0)
    positions, rotations = motion.forward_kinematics()
    return SourceMotion(names=sk.names, parents=sk.parents, rest=rest, positions=positions, rotations=rotations,
                        fps=motion.fps, label=f"BVH file {motion.path}")


def free_body_target() -> TargetSkeleton:
    """The shipped free body (mean shape) as the target, read with numpy only."""
    path = Path(__file__).resolve().parent / "assets" / "free_body.npz"
    with np.load(path, allow_pickle=False) as data:
        return target_from_arrays(data["v_template"], data["J_regressor"])


def target_from_arrays(vertices: np.ndarray, J_regressor: np.ndarray) -> TargetSkeleton:
    """A target from a shaped rest mesh (V, 3) and its joint regressor (24, V)."""
    return TargetSkeleton(joints=np.asarray(J_regressor, np.float64) @ np.asarray(vertices, np.float64),
                          sole=float(np.min(np.asarray(vertices)[:, 1])))


def leg_length(points: np.ndarray, hip: int, knee: int, ankle: int) -> float:
    """Mean over both sides of hip → knee → ankle; points (..., N, 3) rest positions, indices (2,) left, right."""
    return float(np.mean([np.linalg.norm(points[knee[s]] - points[hip[s]]) +
                          np.linalg.norm(points[ankle[s]] - points[knee[s]]) for s in (0, 1)]))


def _body_axes(rest: np.ndarray, m: list, label: str) -> np.ndarray:
    """(3, 3) columns: the source's body axes (left, up, forward) in its world, from its rest joints."""
    left = rest[m[1]] - rest[m[2]]
    top = next(m[k] for k in (15, 12, 9, 6, 3) if m[k] is not None)
    up = rest[top] - rest[m[0]]
    if np.linalg.norm(left) < 1e-9 or np.linalg.norm(up) < 1e-9:
        raise ValueError(f"{label}: in the rest pose the hips, or the pelvis and the top of the spine, coincide; "
                         "the rest pose must stand (all channels zero should draw a standing skeleton)")
    x = snap_to_axis(left)
    up = up - x * (up @ x)
    y = snap_to_axis(up / np.linalg.norm(up))
    return np.stack([x, y, np.cross(x, y)], 1)


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3, 3) smallest rotations taking unit vectors a onto unit vectors b (..., 3); a half turn about an axis
    perpendicular to a where they are opposite."""
    v, c = np.cross(a, b), np.sum(a * b, -1)
    opposite = c < -1 + 1e-9
    # q = (1 + c, v) normalised is the half-angle quaternion of the swing
    perpendicular = np.cross(a, np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0, 0], [0, 1.0, 0]))
    q = np.concatenate([(1 + c)[..., None], v], -1)
    q = np.where(opposite[..., None], np.concatenate([np.zeros_like(c)[..., None], perpendicular], -1), q)
    return quaternion_to_matrix(q / np.linalg.norm(q, axis=-1, keepdims=True))


def _fan(ds: list[int], a: np.ndarray, r: np.ndarray) -> tuple[int, int, int] | None:
    """For a joint with several segments (pelvis, chest): (spine, left, right) positions in ds when it has a
    spine segment and a left/right pair that spans a width in both rest skeletons (directions a, r (n, 3)), else
    None (e.g. collars that start where the neck does)."""
    names = [JOINT_NAMES[d] for d in ds]
    mid = [i for i, n in enumerate(names) if not n.startswith(("left_", "right_"))]
    left = [i for i, n in enumerate(names) if n.startswith("left_")]
    right = [i for i, n in enumerate(names) if n.startswith("right_")]
    if not (mid and left and right):
        return None
    spine, lt, rt = mid[0], left[0], right[0]
    for dirs in (a, r):
        width = dirs[lt] - dirs[rt]
        if np.linalg.norm(width - dirs[spine] * (width @ dirs[spine])) < 0.05:
            return None
    return spine, lt, rt


def _axes(up: np.ndarray, left: np.ndarray) -> np.ndarray:
    """(..., 3, 3) columns left⊥, up, forward: the frame of a pelvis or chest from its up and left directions."""
    y = _unit(up)
    x = _unit(left - y * np.sum(left * y, -1, keepdims=True))
    return np.stack([x, y, np.cross(x, y)], -1)


def _fan_rotation(fan: tuple[int, int, int], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3, 3) the rotation taking the frame of directions a (n, 3) (spine up, right → left) onto that of b
    (..., n, 3). Frames, not a fit of all directions: the skeletons' hip and collar offsets differ in shape (CMU's
    hips sit forward of its root), and a fit would tilt the pelvis to match them."""
    spine, lt, rt = fan
    frame_a = _axes(a[spine], a[lt] - a[rt])
    return _axes(b[..., spine, :], b[..., lt, :] - b[..., rt, :]) @ np.swapaxes(frame_a, -1, -2)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def segments(mapping: tuple[int | None, ...], target: np.ndarray, rest: np.ndarray) -> dict[int, list[int]]:
    """Per mapped SMPL joint k, its segments: on each child branch the nearest mapped SMPL descendant d whose rest
    vector from k is not degenerate in either skeleton (CMU puts LowerBack at Hips, Neck and its shoulders at
    Spine1: the pelvis then runs to Spine, the chest to the arms)."""
    children = {k: [c for c, p in enumerate(PARENTS) if p == k] for k in range(len(PARENTS))}
    scale = np.linalg.norm(np.ptp(rest, 0)) + 1e-12
    out = {}
    for k, source in enumerate(mapping):
        if source is None:
            continue
        found, stack = [], list(children[k])
        while stack:
            d = stack.pop(0)
            if mapping[d] is not None and np.linalg.norm(rest[mapping[d]] - rest[source]) > 1e-3 * scale and \
                    np.linalg.norm(target[d] - target[k]) > 1e-6:
                found.append(d)
            else:  # no bone, or one at the same place: the segment runs on to the next joint down the branch
                stack += children[d]
        out[k] = found
    return out


def retarget(source: SourceMotion, target: TargetSkeleton, config: RetargetConfig = RetargetConfig()) -> Retargeted:
    """SMPL poses and translation that move `target` as `source` moves (see the module docstring); ValueError
    naming the source and the SMPL joints without a bone when legs, pelvis or spine are missing, or NaN input."""
    T = len(source.positions)
    if T == 0:
        raise ValueError(f"{source.label} has no frames; a clip needs at least one")
    for name, value in (("positions", source.positions), ("rotations", source.rotations)):
        bad = np.argwhere(~np.isfinite(value))
        if len(bad):
            raise ValueError(f"{source.label}: {name} are NaN or inf at frame {bad[0][0]}, bone "
                             f"{source.names[bad[0][1]]!r}; clean or trim the clip")
    convention, m = match_bones(source.names, config.bone_map, source=source.label)
    require_body(source.names, m, source=source.label)
    m = list(m)
    C = _body_axes(source.rest, m, source.label)
    rest_b = source.rest @ C                                    # (J, 3) body coordinates
    posed_b = source.positions @ C                              # (T, J, 3)
    D = np.swapaxes(C, 0, 1) @ source.rotations @ C             # (T, J, 3, 3) rotations in body coordinates
    J = np.asarray(target.joints, np.float64)
    segs = segments(tuple(m), J, rest_b)

    A, G = np.zeros((24, 3, 3)), np.zeros((T, 24, 3, 3))
    anchor = [None] * 24  # the SMPL joint whose source bone and alignment a leaf is measured against
    for k in range(24):
        p = PARENTS[k]
        if m[k] is None:                     # no bone: follow the parent
            A[k], anchor[k] = (A[p], anchor[p]) if p >= 0 else (np.eye(3), None)
            G[:, k] = G[:, p] if p >= 0 else np.eye(3)
            continue
        ds = segs[k]
        a = _unit(J[ds] - J[k])                                          # (n, 3) SMPL rest directions
        r = _unit(rest_b[[m[d] for d in ds]] - rest_b[m[k]])             # (n, 3) source rest directions
        v = _unit(posed_b[:, [m[d] for d in ds]] - posed_b[:, [m[k]]])   # (T, n, 3) source posed directions
        fan = _fan(ds, a, r) if len(ds) >= 2 else None
        if fan is not None:
            A[k] = _fan_rotation(fan, a, r)
            G[:, k] = _fan_rotation(fan, a, v)
        elif ds:  # one segment: the spine one where there are several (collars at the neck's joint)
            i = next((i for i, d in enumerate(ds) if not JOINT_NAMES[d].startswith(("left_", "right_"))), 0)
            A[k] = _swing(a[i], r[i])
            twisted = D[:, m[k]] @ A[k]
            G[:, k] = _swing(twisted @ a[i], v[:, i]) @ twisted
        else:
            A[k] = A[p] if p >= 0 else np.eye(3)
            ref = anchor[p] if p >= 0 and m[p] is None else p
            if ref is None or ref < 0:
                G[:, k] = D[:, m[k]]
            else:
                relative = np.swapaxes(D[:, m[ref]], -1, -2) @ D[:, m[k]]
                G[:, k] = G[:, p] @ A[ref].T @ relative @ A[ref]
        anchor[k] = k

    local = G.copy()
    local[:, 1:] = np.swapaxes(G[:, list(PARENTS[1:])], -1, -2) @ G[:, 1:]
    E = _up_to_y(C[:, 1]) @ C                   # SMPL body frame → output world (the source's, Y up)
    local[:, 0] = E @ G[:, 0]

    legs = ([1, 2], [4, 5], [7, 8])  # hips, knees, ankles
    source_leg = leg_length(rest_b, *([m[i] for i in side] for side in legs))
    scale = leg_length(J, *legs) / source_leg
    units, metres = detect_units(source, config.units, source_leg)
    # the hip joints, not the roots, are put in the same place: roots sit at different heights above them
    world = world_positions(source, C, scale, metres, m[0])
    hips = 0.5 * (world[:, m[1]] + world[:, m[2]])
    pelvis = hips + (local[:, 0] @ (J[0] - 0.5 * (J[1] + J[2])))
    shift = 0.0
    if config.ground:
        feet = [k for k in FEET if m[k] is not None]
        X = smpl_joints(matrix_to_axis_angle(local), pelvis - J[0], J)
        sole = (X[:, feet, 1] - (J[feet, 1] - target.sole)).min(1)  # (T,) lowest sole point per frame
        shift = -float(np.percentile(sole, 5))
        pelvis[:, 1] += shift
    return Retargeted(poses=matrix_to_axis_angle(local), trans=pelvis - J[0], fps=source.fps,
                      bones=tuple(source.names[i] if i is not None else None for i in m), convention=convention,
                      scale=scale, units=units, metres_per_unit=metres, ground_shift=shift)


def smpl_joints(poses: np.ndarray, trans: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(T, 24, 3) posed joint positions of the SMPL skeleton: poses (T, 24, 3) local axis-angle, trans (T, 3),
    joints (24, 3) rest (forward kinematics about the rest joints, as neural.body does)."""
    R = axis_angle_to_matrix(poses)
    G, X = np.zeros_like(R), np.zeros(poses.shape)
    for k, p in enumerate(PARENTS):
        if p < 0:
            G[:, k], X[:, k] = R[:, k], joints[k] + trans
        else:
            G[:, k] = G[:, p] @ R[:, k]
            X[:, k] = X[:, p] + G[:, p] @ (joints[k] - joints[p])
    return X


def _up_to_y(up: np.ndarray) -> np.ndarray:
    """(3, 3) the smallest rotation taking the source world's up axis onto +Y."""
    return _swing(up, np.array([0.0, 1, 0]))


def world_positions(source: SourceMotion, C: np.ndarray, scale: float, metres: float, root: int) -> np.ndarray:
    """(T, J, 3) the source's joints in the output world (Y up, metres) at the character's size: heights s·y,
    horizontal positions from the root bone (index) at frame 0, in metres, plus s times the displacement since."""
    x = source.positions @ _up_to_y(C[:, 1]).T
    root0 = x[0, root] * np.array([1.0, 0, 1])
    return metres * root0 + scale * (x - root0)


def detect_units(source: SourceMotion, units: str, leg: float) -> tuple[str, float]:
    """(name, metres per unit): as set, as known (an armature), or the candidate that makes the leg most typical."""
    if units != "auto":
        return units, METRES_PER_UNIT[units]
    if source.metres_per_unit is not None:
        return "m" if source.metres_per_unit == 1 else "set", source.metres_per_unit
    name = min(METRES_PER_UNIT, key=lambda u: abs(np.log(leg * METRES_PER_UNIT[u] / TYPICAL_LEG)))
    return name, METRES_PER_UNIT[name]


def retarget_bvh(path: str | Path, target: TargetSkeleton | None = None,
                 config: RetargetConfig = RetargetConfig()) -> tuple[Retargeted, SourceMotion]:
    """Read a .bvh (neural.bvh) and retarget it onto `target` (default: the free body)."""
    source = source_from_bvh(read_bvh(path))
    return retarget(source, target or free_body_target(), config), source


def to_z_up(motion: Retargeted, pelvis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """poses (T, 24, 3) and trans (T, 3) in a Z-up world (AMASS, Blender): the root turned by Rx(+90°) about the
    world origin; SMPL rotates about its rest pelvis (3,), hence trans' = Q·(pelvis + trans) − pelvis."""
    poses = motion.poses.copy()
    poses[:, 0] = matrix_to_axis_angle(Y_UP_TO_Z_UP @ axis_angle_to_matrix(poses[:, 0]))
    return poses, (pelvis + motion.trans) @ Y_UP_TO_Z_UP.T - pelvis


def _slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions (..., 4) with weights t (...,) along the short arc."""
    dot = (q0 * q1).sum(-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    theta = np.arccos(np.abs(dot).clip(-1, 1))
    small = theta < 1e-6
    s = np.sin(np.where(small, 1.0, theta))
    t = t[..., None]
    q = np.where(small, 1 - t, np.sin((1 - t) * theta) / s) * q0 + np.where(small, t, np.sin(t * theta) / s) * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def resample(poses: np.ndarray, trans: np.ndarray, fps: float, new_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """A motion (poses (T, J, 3) axis-angle, trans (T, 3)) at another frame rate: frame k is time k / new_fps;
    rotations slerped, translation linear; returns (poses (T', J, 3), trans (T', 3))."""
    count = int(np.floor((len(poses) - 1) / fps * new_fps + 1e-9)) + 1
    at = np.arange(count) * fps / new_fps
    i0 = np.minimum(np.floor(at).astype(int), len(poses) - 1)
    i1 = np.minimum(i0 + 1, len(poses) - 1)
    t = at - i0
    q = matrix_to_quaternion(axis_angle_to_matrix(poses))
    out = matrix_to_axis_angle(quaternion_to_matrix(_slerp(q[i0], q[i1], np.repeat(t[:, None], poses.shape[1], 1))))
    return out, (1 - t)[:, None] * trans[i0] + t[:, None] * trans[i1]

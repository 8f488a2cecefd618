"""Import AMASS-style motions onto an SMPL armature as keyframes (design.md §7: "how to animate from AMASS").

AMASS .npz: `poses` (T, 3·J) axis-angle with J = 24 (SMPL), 52 (SMPL-H) or 55 (SMPL-X), root first; `trans`
(T, 3) metres; `betas` (n,); `mocap_framerate` (Hz). AMASS stores bodies in a Z-up world; that world is taken as
Blender's world, so the motion plays where it was captured, whatever the armature's rest placement: the root
rotation and translation are carried through the inverse of the armature's body → world transform.
The file is read by neural.amass.read_amass (SMPL-H / SMPL-X files give their 22 body joints; the two SMPL hand
joints stay at rest); here it must have `trans` and a frame rate.

Frames are resampled to the scene's frame rate (slerp for rotations, linear for translation) and written as
linear keyframes from the scene's start frame; quaternion signs are kept continuous so the keys interpolate the
short way. Only plain arrays are read (allow_pickle=False).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from neural.amass import read_amass
from neural.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quaternion, quaternion_to_matrix

from .rig import RigInfo, pose_bases, read_rig

_LINEAR = 1  # bpy Keyframe.interpolation enum value of 'LINEAR'


@dataclass(frozen=True)
class Motion:
    """poses (T, 24, 3) SMPL axis-angle (root first), trans (T, 3) metres, betas (n,), fps frames per second."""

    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    fps: float


def load_amass(path: Path) -> Motion:
    """Read an AMASS .npz that has `trans` and a frame rate (neural.amass.read_amass: ValueError naming the file
    and key on bad input)."""
    read = read_amass(path, require_trans=True, require_fps=True)
    return Motion(poses=read.poses, trans=read.trans, betas=read.betas, fps=read.fps)


def _slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions (..., 4) with weights t (...,) along the short arc."""
    dot = (q0 * q1).sum(-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot).clip(-1, 1)
    theta = np.arccos(dot)
    small = theta < 1e-6
    s = np.sin(np.where(small, 1.0, theta))
    t = t[..., None]
    a = np.where(small, 1 - t, np.sin((1 - t) * theta) / s)
    b = np.where(small, t, np.sin(t * theta) / s)
    q = a * q0 + b * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def resample(motion: Motion, fps: float) -> Motion:
    """The motion at another frame rate: frame k is time k / fps; rotations slerped, translation linear."""
    count = int(np.floor((len(motion.poses) - 1) / motion.fps * fps + 1e-9)) + 1
    source = np.arange(count) * motion.fps / fps
    i0 = np.minimum(np.floor(source).astype(int), len(motion.poses) - 1)
    i1 = np.minimum(i0 + 1, len(motion.poses) - 1)
    t = source - i0
    q = matrix_to_quaternion(axis_angle_to_matrix(motion.poses))
    poses = matrix_to_axis_angle(quaternion_to_matrix(_slerp(q[i0], q[i1], np.repeat(t[:, None], 24, 1))))
    trans = (1 - t)[:, None] * motion.trans[i0] + t[:, None] * motion.trans[i1]
    return Motion(poses=poses, trans=trans, betas=motion.betas, fps=fps)


def to_armature(motion: Motion, rig: RigInfo, body_to_world: np.ndarray) -> Motion:
    """Express a world-frame (AMASS) motion in an armature's body frame: root rotation and translation through
    world → body; the rig's rest pelvis is the pivot (posed pelvis = rest pelvis + trans)."""
    inverse = np.linalg.inv(body_to_world)
    Q, d = inverse[:3, :3], inverse[:3, 3]
    pelvis = rig.rest_joints[0]
    poses = motion.poses.copy()
    poses[:, 0] = matrix_to_axis_angle(Q @ axis_angle_to_matrix(motion.poses[:, 0]))
    trans = (pelvis + motion.trans) @ Q.T + d - pelvis
    return Motion(poses=poses, trans=trans, betas=motion.betas, fps=motion.fps)


def import_motion(scene: bpy.types.Scene, arm: bpy.types.Object, path: Path, *, set_betas: bool = True) -> int:
    """Keyframe an AMASS motion onto an SMPL armature from the scene's start frame; returns the frame count."""
    rig = read_rig(arm)
    fps = scene.render.fps / scene.render.fps_base
    motion = resample(load_amass(path), fps)
    body_to_world = np.array(arm.matrix_world) @ rig.body_to_armature
    local = to_armature(motion, rig, body_to_world)
    frames = scene.frame_start + np.arange(len(local.poses), dtype=np.float64)
    quats, pelvis = {}, []
    for k in range(len(local.poses)):
        bases = pose_bases(arm, rig, local.poses[k], local.trans[k], rig.rest_joints[0])
        for name, basis in bases.items():
            quats.setdefault(name, []).append(basis[:3, :3])
        pelvis.append(bases[rig.bones[0]][:3, 3])
    locations = np.stack(pelvis)
    if arm.animation_data is None:
        arm.animation_data_create()
    action = bpy.data.actions.new(f"{arm.name}_{Path(path).stem}")
    arm.animation_data.action = action
    for name, rotations in quats.items():
        pose_bone = arm.pose.bones[name]
        pose_bone.rotation_mode = "QUATERNION"
        q = matrix_to_quaternion(np.stack(rotations))
        flips = np.cumprod(np.where((q[1:] * q[:-1]).sum(-1) < 0, -1.0, 1.0))  # continuous signs
        q[1:] *= flips[:, None]
        path_q = pose_bone.path_from_id("rotation_quaternion")
        for channel in range(4):
            _keys(action, arm, path_q, channel, name, frames, q[:, channel])
    pelvis_bone = arm.pose.bones[rig.bones[0]]
    for channel in range(3):
        _keys(action, arm, pelvis_bone.path_from_id("location"), channel, rig.bones[0], frames, locations[:, channel])
    if set_betas and motion.betas.size:
        count = min(motion.betas.size, len(arm.humangan.betas))
        arm.humangan.betas[:count] = [float(b) for b in motion.betas[:count]]
    return len(frames)


def _keys(action, arm, data_path: str, index: int, group: str, frames: np.ndarray, values: np.ndarray) -> None:
    if bpy.app.version >= (5, 0, 0):
        curve = action.fcurve_ensure_for_datablock(arm, data_path, index=index, group_name=group)
    else:  # 4.4 / 4.5: no group_name; a first key made the Blender way puts the curve in the bone's group
        arm.keyframe_insert(data_path, index=index, frame=float(frames[0]), group=group)
        curve = action.fcurve_ensure_for_datablock(arm, data_path, index=index)
    curve.keyframe_points.clear()
    curve.keyframe_points.add(len(frames))
    curve.keyframe_points.foreach_set("co", np.stack([frames, values], 1).astype(np.float32).ravel())
    curve.keyframe_points.foreach_set("interpolation", np.full(len(frames), _LINEAR, np.int32))
    curve.update()

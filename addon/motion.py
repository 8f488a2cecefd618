"""Import motions onto an SMPL armature as keyframes: AMASS-style .npz, and motion capture of any common skeleton
(a .bvh file, or an armature in the scene made by Blender's BVH or FBX import) retargeted by neural/retarget.py.

AMASS .npz: `poses` (T, 3·J) axis-angle with J = 24 (SMPL), 52 (SMPL-H) or 55 (SMPL-X), root first; `trans`
(T, 3) metres; `betas` (n,); `mocap_framerate` (Hz). AMASS stores bodies in a Z-up world; that world is taken as
Blender's world, so the motion plays where it was captured, whatever the armature's rest placement: the root
rotation and translation are carried through the inverse of the armature's body → world transform.
The file is read by neural.amass.read_amass (SMPL-H / SMPL-X files give their 22 body joints; the two SMPL hand
joints stay at rest); here it must have `trans` and a frame rate.

Frames are resampled to the scene's frame rate (slerp for rotations, linear for translation) and written as
linear keyframes from the scene's start frame; quaternion signs are kept continuous so the keys interpolate the
short way. Only plain arrays are read (allow_pickle=False).

Mocap: the retarget runs in full (bone match, checks, metrics) before the first key is written, so a clip that
cannot be used leaves the character as it was. Its output world is the source's made Y-up: a scene armature's
motion plays where that armature is; a BVH file's where the file puts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import bpy
import numpy as np

from neural.amass import read_amass
from neural.bvh import read_bvh
from neural.retarget import RetargetConfig, SourceMotion, TargetSkeleton, free_body_target, retarget, source_from_bvh
from neural.retarget import resample as resample_motion
from neural.retarget import to_z_up
from neural.retarget_metrics import RetargetMetrics, measure
from neural.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quaternion

from .rig import RigInfo, _orthonormal, pose_bases, read_rig

_LINEAR = 1  # bpy Keyframe.interpolation enum value of 'LINEAR'
Progress = Callable[[int, int, str], None]  # (done, total, stage): the operator's progress report


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


def resample(motion: Motion, fps: float) -> Motion:
    """The motion at another frame rate (neural.retarget.resample: frame k is time k / fps, slerp, linear)."""
    poses, trans = resample_motion(motion.poses, motion.trans, motion.fps, fps)
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
    motion = load_amass(path)
    count = key_motion(scene, arm, rig, motion, Path(path).stem)
    if set_betas and motion.betas.size:
        count_betas = min(motion.betas.size, len(arm.humangan.betas))
        arm.humangan.betas[:count_betas] = [float(b) for b in motion.betas[:count_betas]]
    return count


def key_motion(scene: bpy.types.Scene, arm: bpy.types.Object, rig: RigInfo, motion: Motion, label: str,
               progress: Progress | None = None) -> int:
    """Keyframe a motion in the Z-up world (AMASS's, taken as Blender's) onto an SMPL armature, resampled to the
    scene's frame rate, from the scene's start frame, as a new action `<armature>_<label>`; returns the frame count."""
    fps = scene.render.fps / scene.render.fps_base
    motion = resample(motion, fps)
    body_to_world = np.array(arm.matrix_world) @ rig.body_to_armature
    local = to_armature(motion, rig, body_to_world)
    frames = scene.frame_start + np.arange(len(local.poses), dtype=np.float64)
    quats, pelvis = {}, []
    for k in range(len(local.poses)):
        bases = pose_bases(arm, rig, local.poses[k], local.trans[k], rig.rest_joints[0])
        for name, basis in bases.items():
            quats.setdefault(name, []).append(basis[:3, :3])
        pelvis.append(bases[rig.bones[0]][:3, 3])
        if progress and k % 50 == 0:
            progress(k, len(local.poses), "keying")
    locations = np.stack(pelvis)
    if arm.animation_data is None:
        arm.animation_data_create()
    action = bpy.data.actions.new(f"{arm.name}_{label}")
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
    return len(frames)


def import_bvh(scene: bpy.types.Scene, arm: bpy.types.Object, path: Path, config: RetargetConfig,
               progress: Progress | None = None) -> MocapReport:
    """Retarget a .bvh (neural.bvh's reader, any common skeleton) onto an SMPL armature and keyframe it."""
    rig = read_rig(arm)
    source = source_from_bvh(read_bvh(path))
    return _retarget_and_key(scene, arm, rig, source, Path(path).stem, config, progress)


def import_from_armature(scene: bpy.types.Scene, source: bpy.types.Object, arm: bpy.types.Object,
                         config: RetargetConfig, progress: Progress | None = None) -> MocapReport:
    """Retarget the animation of an armature in the scene (a BVH or FBX import: CMU, Mixamo, ...) onto an SMPL
    armature: the source is sampled at every frame of its action (else the scene's range)."""
    if source.type != "ARMATURE" or source == arm:
        raise ValueError(f"'{source.name}' is not another armature; pick the armature whose motion to retarget")
    rig = read_rig(arm)
    motion = sample_armature(scene, source, progress)
    return _retarget_and_key(scene, arm, rig, motion, source.name, config, progress)


def sample_armature(scene: bpy.types.Scene, obj: bpy.types.Object, progress: Progress | None = None) -> SourceMotion:
    """An armature's bones over its action's frames, in Blender's world (Z up, metres): positions (T, J, 3) of the
    bone heads, rotations (T, J, 3, 3) since the rest pose (at the first frame's object placement)."""
    bones = list(obj.data.bones)
    index = {b.name: k for k, b in enumerate(bones)}
    action = obj.animation_data.action if obj.animation_data else None
    start, end = (int(round(v)) for v in action.frame_range) if action else (scene.frame_start, scene.frame_end)
    if end < start:
        raise ValueError(f"armature '{obj.name}' has no frames to sample ({start}..{end})")
    kept = scene.frame_current
    positions, rotations = [], []
    try:
        for n, frame in enumerate(range(start, end + 1)):
            scene.frame_set(frame)
            world = np.array(obj.matrix_world)
            if n == 0:
                rest_world = world @ np.array([b.matrix_local for b in bones])
            posed = world @ np.array([obj.pose.bones[b.name].matrix for b in bones])
            positions.append(posed[:, :3, 3])
            rotations.append(_orthonormal(posed[:, :3, :3]) @ np.swapaxes(_orthonormal(rest_world[:, :3, :3]), 1, 2))
            if progress and n % 50 == 0:
                progress(n, end + 1 - start, "sampling")
    finally:
        scene.frame_set(kept)
    return SourceMotion(names=tuple(b.name for b in bones),
                        parents=tuple(index[b.parent.name] if b.parent else -1 for b in bones),
                        rest=rest_world[:, :3, 3], positions=np.stack(positions), rotations=np.stack(rotations),
                        fps=scene.render.fps / scene.render.fps_base, label=f"armature '{obj.name}'",
                        metres_per_unit=1.0)


@dataclass(frozen=True)
class MocapReport:
    """What a retarget did, for the operator's report: frames keyed, the matched convention, unmapped SMPL joints,
    units, and the metrics against the source (neural.retarget_metrics)."""

    frames: int
    convention: str
    unmapped: tuple[str, ...]
    units: str
    metrics: RetargetMetrics

    def summary(self) -> str:
        unmapped = f"; unmapped SMPL joints: {', '.join(self.unmapped)}" if self.unmapped else ""
        m = self.metrics
        return (f"{self.frames} frames ({self.convention} names, units {self.units}{unmapped}); segment angle "
                f"mean {m.angle_mean:.1f}° max {m.angle_max:.1f}°, foot sliding {m.slide:.1f} mm/frame "
                f"(source {m.source_slide:.1f}), penetration max {m.penetration_max:.0f} mm")


def _target(arm: bpy.types.Object, rig: RigInfo) -> TargetSkeleton:
    """The rig's rest skeleton (body frame) with its sole: the lowest rest vertex of a skinned child mesh, else the
    free body's ankle-to-sole height under the rig's ankles."""
    to_body = np.linalg.inv(np.array(arm.matrix_world) @ rig.body_to_armature)
    lows = []
    for child in arm.children:
        if child.type == "MESH" and any(m.type == "ARMATURE" and m.object == arm for m in child.modifiers):
            co = np.empty(len(child.data.vertices) * 3)
            child.data.vertices.foreach_get("co", co)
            world = co.reshape(-1, 3) @ np.array(child.matrix_world)[:3, :3].T + np.array(child.matrix_world)[:3, 3]
            lows.append(float((world @ to_body[:3, :3].T + to_body[:3, 3])[:, 1].min()))
    if lows:
        return TargetSkeleton(joints=rig.rest_joints, sole=min(lows))
    free = free_body_target()
    ankle_to_sole = float(free.joints[[7, 8], 1].mean()) - free.sole
    return TargetSkeleton(joints=rig.rest_joints, sole=float(rig.rest_joints[[7, 8], 1].mean()) - ankle_to_sole)


def _retarget_and_key(scene, arm, rig: RigInfo, source: SourceMotion, name: str, config: RetargetConfig,
                      progress: Progress | None) -> MocapReport:
    """Retarget fully (errors raise here, before anything is keyed), then key the result."""
    target = _target(arm, rig)
    if progress:
        progress(0, 1, "retargeting")
    result = retarget(source, target, config)
    metrics = measure(source, result, target)
    poses, trans = to_z_up(result, target.joints[0])
    frames = key_motion(scene, arm, rig, Motion(poses=poses, trans=trans, betas=np.zeros(0), fps=result.fps), name,
                        progress)
    return MocapReport(frames=frames, convention=result.convention, unmapped=result.unmapped, units=result.units,
                       metrics=metrics)


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

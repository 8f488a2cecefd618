"""addon/motion.py: an AMASS-style .npz (SMPL-H poses, Z-up world, 60 Hz) becomes keyframes at the scene's frame
rate, and at every scene frame Blender's posed joints stand where neural.body's forward kinematics puts the
captured body in the AMASS world, whatever the armature's rest placement and naming."""

import math

import bpy
import numpy as np
import pytest
import torch
from addon_fixtures import blank, blended_body_arrays, box_joints, build_rig, registered, write_body

from addon import motion, rig
from neural.body import BodyModel

__all__ = ["blank", "registered"]

MOCAP_HZ, SCENE_FPS, T = 60.0, 30, 31


def write_amass(path, seed=0):
    rng = np.random.default_rng(seed)
    poses = np.zeros((T, 52, 3))
    t = np.linspace(0, 1, T)[:, None]
    poses[:, 1:22] = rng.normal(scale=0.3, size=(1, 21, 3)) * np.sin(2 * np.pi * t)[..., None]
    poses[:, 22:] = 0.5  # finger joints: must be ignored
    # root: the Y-up body stood up in the Z-up world (+90° about X), then turning about world Z
    for k in range(T):
        yaw = 0.8 * t[k, 0]
        rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
        rx = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
        poses[k, 0] = rig.matrix_to_axis_angle(rz @ rx)
    trans = np.concatenate([t * 1.2, t * 0.3, 0.9 + 0.05 * np.sin(6 * t)], 1)
    np.savez(path, poses=poses.reshape(T, -1), trans=trans, betas=np.arange(16) * 0.1, mocap_framerate=MOCAP_HZ,
             gender="neutral")
    return path, poses, trans


def oracle_joints(poses, trans):
    """neural.body joints of the box body (the rigs' skeleton) posed by the file, in the AMASS world."""
    smpl = np.zeros((len(poses), 24, 3))
    smpl[:, :22] = poses[:, :22]
    with torch.no_grad():
        out = BodyModel(arrays=blended_body_arrays())(pose=torch.tensor(smpl, dtype=torch.float32),
                                                      transl=torch.tensor(trans, dtype=torch.float32))
    return out.joints.double().numpy()


@pytest.mark.parametrize("which", ["ours", "meshcapade"])
def test_imported_motion_matches_the_capture_at_scene_frames(blank, tmp_path, which):
    blank.render.fps, blank.frame_start = SCENE_FPS, 10
    path, poses, trans = write_amass(tmp_path / "walk.npz")
    if which == "ours":
        bpy.ops.object.humangan_human_add(body_file=str(write_body(tmp_path / "body.npz")))
        arm = bpy.context.active_object
        arm.location.x += 2.0  # the motion plays where it was captured, not relative to the rest placement
    else:
        arm = build_rig(blank, box_joints(), "meshcapade")
        bpy.context.view_layer.objects.active = arm
    assert bpy.ops.humangan.import_motion(filepath=str(path)) == {"FINISHED"}
    frames = int((T - 1) / MOCAP_HZ * SCENE_FPS) + 1
    assert (blank.frame_start, blank.frame_end) == (10, 10 + frames - 1)
    assert list(arm.humangan.betas) == pytest.approx(np.arange(10) * 0.1)
    info = rig.read_rig(arm)
    expected = oracle_joints(poses, trans)
    for k in (0, 5, frames - 1):
        blank.frame_set(10 + k)
        heads = np.array([arm.matrix_world @ arm.pose.bones[info.bones[j]].head for j in range(22)])
        assert np.abs(heads - expected[2 * k, :22]).max() < 2e-5, f"scene frame {k}"


def test_resample_slerps_between_captured_frames():
    aa = np.zeros((2, 24, 3))
    aa[1, 3] = (0, 0, 1.0)
    m = motion.Motion(poses=aa, trans=np.array([[0, 0, 0], [1.0, 2, 3]]), betas=np.zeros(0), fps=10.0)
    out = motion.resample(m, 40.0)  # 0.1 s at 40 fps: 5 frames, a quarter of the way each
    assert len(out.poses) == 5
    assert np.abs(out.poses[:, 3, 2] - np.linspace(0, 1, 5)).max() < 1e-9  # slerp about one axis is linear in angle
    assert np.abs(out.trans[2] - [0.5, 1, 1.5]).max() < 1e-12


def test_bad_motion_files_are_reported_by_key(blank, tmp_path):
    bpy.ops.object.humangan_human_add(body_file=str(write_body(tmp_path / "body.npz")))
    bpy.context.active_object.animation_data_clear()  # its default A-pose key: the test checks what an import keys
    np.savez(tmp_path / "no_trans.npz", poses=np.zeros((3, 72)), mocap_framerate=30.0)
    with pytest.raises(ValueError, match=r"no_trans.npz lacks \['trans'\]"):
        motion.load_amass(tmp_path / "no_trans.npz")
    np.savez(tmp_path / "no_rate.npz", poses=np.zeros((3, 72)), trans=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="mocap_framerate"):
        motion.load_amass(tmp_path / "no_rate.npz")
    with pytest.raises(RuntimeError, match="lacks"):  # the operator reports (Info bar) and cancels
        bpy.ops.humangan.import_motion(filepath=str(tmp_path / "no_trans.npz"))
    assert bpy.context.active_object.animation_data is None

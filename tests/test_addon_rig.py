"""addon/rig.py in real bpy: the human we build deforms exactly like neural.body's LBS, and armatures built the way
the public SMPL / SMPL-X add-ons build them (or FBX exports) are read back to the SMPL pose that posed them,
checked against neural.body's forward kinematics in world space."""

import math
import subprocess
import sys

import bpy
import numpy as np
import pytest
import torch
from addon_fixtures import blank, blended_body_arrays, box_joints, build_rig, random_pose, registered, set_addon_pose
from addon_fixtures import write_body
from mathutils import Quaternion

from addon import rig
from neural.body import BodyModel
from neural.skeleton import JOINT_NAMES

__all__ = ["blank", "registered"]  # fixtures

RX90 = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])


def model():
    return BodyModel(arrays=blended_body_arrays())


def fk_joints(pose, transl, betas=None):
    with torch.no_grad():
        out = model()(betas=None if betas is None else torch.tensor(betas, dtype=torch.float32)[None],
                      pose=torch.tensor(pose, dtype=torch.float32)[None],
                      transl=torch.tensor(transl, dtype=torch.float32)[None])
    return out.joints[0].double().numpy(), out.vertices[0].double().numpy()


def world_heads(obj, names):
    bpy.context.view_layer.update()
    return np.array([obj.matrix_world @ obj.pose.bones[n].head for n in names])


def test_human_mesh_deforms_like_neural_body(blank, tmp_path):
    body_file = write_body(tmp_path / "blended.npz")
    bpy.ops.object.humangan_human_add(body_file=str(body_file), seed=3)
    arm = bpy.context.active_object
    assert arm.humangan.enabled and arm.humangan.seed == 3
    assert tuple(arm.rotation_euler) == pytest.approx((math.pi / 2, 0, 0))
    A = np.array(arm.matrix_world)
    rest = model()().shaped[0].double().numpy()
    assert (rest @ A[:3, :3].T + A[:3, 3])[:, 2].min() == pytest.approx(0.0, abs=1e-6)  # feet on the ground
    betas = np.array([1.5, -2.0])
    arm.humangan.betas[:2] = betas
    assert bpy.ops.object.humangan_apply_shape() == {"FINISHED"}  # rest skeleton and mesh follow the betas
    pose, transl = random_pose(1), np.array([0.1, -0.05, 0.2])
    info = rig.read_rig(arm)
    rig.set_pose(arm, info, pose, transl)
    # our rig: rotation_quaternion is the SMPL local rotation itself
    for k, name in enumerate(JOINT_NAMES):
        q = arm.pose.bones[name].rotation_quaternion
        expected = Quaternion(pose[k] / np.linalg.norm(pose[k]), float(np.linalg.norm(pose[k])))
        assert abs(abs(q.dot(expected)) - 1) < 1e-6
    depsgraph = bpy.context.evaluated_depsgraph_get()
    skin = next(o for o in arm.children if o.type == "MESH")
    evaluated = skin.evaluated_get(depsgraph)
    co = np.empty(len(evaluated.data.vertices) * 3, np.float32)
    evaluated.data.vertices.foreach_get("co", co)
    world = np.array(skin.matrix_world)
    blender = co.reshape(-1, 3).astype(np.float64) @ world[:3, :3].T + world[:3, 3]
    _, vertices = fk_joints(pose, transl, betas)
    assert np.abs(blender - (vertices @ A[:3, :3].T + A[:3, 3])).max() < 1e-5


def test_apply_shape_refuses_rigs_of_other_add_ons(blank, tmp_path):
    obj = build_rig(blank, box_joints(), "meshcapade", name="Meshcapade")
    with pytest.raises(rig.RigError, match="'Meshcapade' was not made by Add > HumanGAN Human"):
        rig.apply_shape(bpy.context, obj, model(), np.zeros(2))


@pytest.mark.parametrize("style", ["meshcapade", "mpi"])
def test_addon_rigs_posed_their_way_read_back(blank, style):
    joints = box_joints()
    obj = build_rig(blank, joints, style)
    pose = random_pose(2)
    pose[22:] = 0  # SMPL-X rigs have no SMPL hand joints
    transl = np.array([0.3, 0.1, -0.2])
    set_addon_pose(obj, pose, transl, style)
    info = rig.read_rig(obj)
    assert info.bones[22] is None and info.bones[23] is None  # extra SMPL-X bones ignored, hands missing
    assert np.abs(info.rest_joints[:22] - joints[:22]).max() < 1e-5
    fk, _ = fk_joints(pose, transl)
    expected = fk[:22] @ RX90.T  # both add-ons: body Y up → Blender Z up
    assert np.abs(world_heads(obj, JOINT_NAMES[:22]) - expected).max() < 1e-5  # the oracle agrees with Blender
    posed = rig.read_pose(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()), info)
    assert np.abs(posed.pose - pose).max() < 1e-5
    B = posed.body_to_world
    assert np.abs(B[:3, :3] @ posed.pelvis + B[:3, 3] - expected[0]).max() < 1e-5
    assert np.abs(posed.joints_world[:22] - expected).max() < 1e-5
    assert np.abs(B[:3, :3] - RX90).max() < 1e-6  # rigid: the 0.01 scale and centimetres cancel


def test_fbx_naming_with_arbitrary_bone_axes_round_trips(blank):
    joints = box_joints()
    obj = build_rig(blank, joints, "fbx")
    info = rig.read_rig(obj)
    assert info.naming == "smpl-fbx-m"
    pose, transl = random_pose(3), np.array([-0.2, 0.05, 0.4])
    rig.set_pose(obj, info, pose, transl)
    fk, _ = fk_joints(pose, transl)
    names = [obj.data.bones[n].name for n in info.bones]
    assert np.abs(world_heads(obj, names) - fk @ RX90.T).max() < 1e-5
    posed = rig.read_pose(obj, info)
    assert np.abs(posed.pose - pose).max() < 1e-5


def test_rig_and_skeleton_import_without_torch():
    """The add-on's rig module takes the SMPL skeleton from neural.skeleton without importing torch (a CUDA torch
    chosen in the preferences must be found first)."""
    code = "import sys, addon.rig, neural.skeleton; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "importing addon.rig imported torch"


def test_rotation_conversions_round_trip_near_zero_and_pi():
    aa = np.concatenate([random_pose(4, 1.0), [[0, 0, 0], [1e-9, 0, 0], [np.pi - 1e-7, 0, 0], [0, 0, -np.pi + 1e-4]]])
    back = rig.matrix_to_axis_angle(rig.axis_angle_to_matrix(aa))
    assert np.abs(rig.axis_angle_to_matrix(back) - rig.axis_angle_to_matrix(aa)).max() < 1e-9
    unique = np.linalg.norm(aa, axis=1) < np.pi - 1e-3  # beyond π another axis-angle is the canonical one
    assert unique.sum() > 20 and np.abs(back[unique] - aa[unique]).max() < 1e-9
    assert np.linalg.norm(back, axis=1).max() <= np.pi + 1e-12


def test_not_an_smpl_rig_names_the_armature_and_missing_bones(blank):
    data = bpy.data.armatures.new("Rigify")
    obj = bpy.data.objects.new("Rigify", data)
    blank.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for name in ("spine", "thigh.L", "pelvis"):
        data.edit_bones.new(name).tail = (0, 0.1, 0)
    bpy.ops.object.mode_set(mode="OBJECT")
    with pytest.raises(rig.RigError, match=r"'Rigify' is not an SMPL rig.*left_hip"):
        rig.read_rig(obj)


def test_scaled_armature_is_refused_by_name(blank):
    obj = build_rig(blank, box_joints(), "mpi", name="Giant")
    obj.scale = (2.0, 2.0, 2.0)
    bpy.context.view_layer.update()
    with pytest.raises(rig.RigError, match="'Giant' is scaled"):
        rig.read_pose(obj, rig.read_rig(obj))


def test_a_new_human_stands_keyed_in_a_relaxed_a_pose_over_a_t_pose_rest(blank, tmp_path):
    bpy.ops.object.humangan_human_add(body_file=str(write_body(tmp_path / "body.npz")))
    arm = bpy.context.active_object
    info = rig.read_rig(arm)
    blank.frame_set(blank.frame_current + 10)  # the key holds at every frame
    pose = rig.read_pose(arm.evaluated_get(bpy.context.evaluated_depsgraph_get()), info).pose
    np.testing.assert_allclose(pose, rig.relaxed_pose(), atol=1e-5)
    assert pose[16, 2] < -0.9 and pose[17, 2] > 0.9  # arms down, not a T
    # the rest pose is SMPL's T-pose: the rest shoulder → elbow runs along the body's ±X
    heads = {n: np.array(arm.data.bones[n].head_local) for n in ("left_shoulder", "left_elbow")}
    direction = heads["left_elbow"] - heads["left_shoulder"]
    assert abs(direction[0]) > 0.99 * np.linalg.norm(direction)
    assert arm.animation_data.action is not None

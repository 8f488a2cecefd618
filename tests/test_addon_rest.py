"""addon/rest.py through real bpy rigs: a rig whose rest pose is an A-pose or has bent knees reads (and renders)
the pose its bones show, measured from SMPL's T-pose; a rig with other proportions is reported with its largest
joint offset; Fit Shape to Rig recovers known betas by least squares; bare FBX bone names are recognised."""

import bpy
import numpy as np
import pytest
import torch
from addon_fixtures import add_camera, blank, blended_body_arrays, build_rig, registered, set_addon_pose, write_body

from addon import frames, rest, rig, scene
from neural.body import BodyModel

__all__ = ["blank", "registered"]  # fixtures

A_POSE = {16: (0, 0, -0.7), 17: (0, 0, 0.7)}  # shoulders down 40° (body frame: left arm along +X)
BENT_KNEES = {1: (-0.3, 0, 0), 2: (-0.3, 0, 0), 4: (0.6, 0, 0), 5: (0.6, 0, 0)}  # hips forward, knees back


def posed_joints(pose: np.ndarray, betas=None) -> np.ndarray:
    body = BodyModel(arrays=blended_body_arrays())
    b = None if betas is None else torch.tensor(np.asarray(betas)[None], dtype=torch.float32)
    with torch.no_grad():
        return body(pose=torch.tensor(pose[None], dtype=torch.float32), betas=b).joints[0].double().numpy()


def rest_pose(rotations: dict) -> np.ndarray:
    pose = np.zeros((24, 3))
    for k, aa in rotations.items():
        pose[k] = aa
    return pose


def character_rig(scene_, joints, body_file, style="mpi", name="Rig"):
    obj = build_rig(scene_, joints, style, name=name)
    obj.humangan.enabled = True
    obj.humangan.body_file = str(body_file)
    return obj


def read_job(scene_):
    if scene_.camera is None:
        add_camera(scene_, location=(0.0, -4.0, 0.3))
    frame = scene.read_frame(bpy.context.evaluated_depsgraph_get(), rest_joints=frames.rest_joints)
    assert frame.problems == ()
    return frame


def shown_joints(obj, job) -> np.ndarray:
    """The rig's joints (22, 3) as its bones show them (Blender's posed bone heads), in the body frame."""
    bpy.context.view_layer.update()
    world = np.array([list(obj.matrix_world @ obj.pose.bones[n].head) + [1.0] for n in rig.JOINT_NAMES[:22]])
    return (world @ np.linalg.inv(job.character.body_to_world).T)[:, :3]


def rendered_joints(job) -> np.ndarray:
    """The joints (22, 3) of the body the renderer poses from the character (its pose and transl), body frame."""
    c = job.character
    return posed_joints(c.pose, c.betas[:2])[:22] + c.transl


@pytest.mark.parametrize("which", [A_POSE, BENT_KNEES], ids=["a-pose", "bent-knees"])
def test_a_rest_pose_that_is_not_the_t_pose_renders_as_the_bones_show(blank, tmp_path, which):
    body_file = write_body(tmp_path / "body.npz")
    obj = character_rig(blank, posed_joints(rest_pose(which)), body_file)  # the pose applied as rest pose
    (job,) = read_job(blank).jobs
    assert np.abs(job.character.pose).max() > 0.3  # without the rest rotation this reads as the T-pose
    assert np.abs(rendered_joints(job) - shown_joints(obj, job)).max() < 1e-5
    pose = np.random.default_rng(4).normal(scale=0.3, size=(24, 3))
    set_addon_pose(obj, pose, np.array([0.1, 0.0, -0.2]), "mpi")  # and posed on top of that rest pose
    (job,) = read_job(blank).jobs
    assert np.abs(rendered_joints(job) - shown_joints(obj, job)).max() < 1e-5
    undo = rest_pose({k: -np.asarray(aa) for k, aa in which.items()})
    if which is A_POSE:  # the arms posed back up: it renders the T-pose (no twist: the arms' own rotation axes)
        set_addon_pose(obj, undo, np.zeros(3), "mpi")
        (job,) = read_job(blank).jobs
        assert np.abs(rendered_joints(job) - posed_joints(np.zeros((24, 3)))[:22] - job.character.transl).max() < 1e-5


def test_a_t_pose_rest_needs_no_rest_rotation(blank):
    joints = posed_joints(np.zeros((24, 3)))
    assert np.array_equal(rest.rest_rotations(joints, joints), np.broadcast_to(np.eye(3), (24, 3, 3)))
    bent = posed_joints(rest_pose({4: (0.02, 0, 0)}))  # 1°: within REST_TOLERANCE, the T-pose
    assert np.array_equal(rest.rest_rotations(bent, joints), np.broadcast_to(np.eye(3), (24, 3, 3)))


def test_other_proportions_are_reported_and_fit_shape_recovers_the_betas(blank, tmp_path):
    body_file = write_body(tmp_path / "body.npz")
    betas = np.array([1.3, -0.8])
    obj = character_rig(blank, posed_joints(np.zeros((24, 3)), betas), body_file, name="Tall")
    (warning,) = read_job(blank).warnings
    offset, k = rest.largest_offset(posed_joints(np.zeros((24, 3)), betas), posed_joints(np.zeros((24, 3))))
    assert offset > rest.PROPORTION_TOLERANCE
    assert "'Tall'" in warning and f"{offset * 100:.1f} cm" in warning and rig.JOINT_NAMES[k] in warning
    assert "Fit Shape to Rig" in warning
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.object.humangan_fit_shape() == {"FINISHED"}
    np.testing.assert_allclose(np.array(obj.humangan.betas[:2]), betas, atol=1e-4)
    assert np.abs(np.array(obj.humangan.betas[2:])).max() == 0
    assert read_job(blank).warnings == ()


def test_fit_is_a_least_squares_solve_on_the_joints():
    model = rest.JointModel.of(BodyModel(arrays=blended_body_arrays()))
    betas = np.array([-1.1, 0.4])
    target = model.joints(betas) + np.array([0.3, -0.2, 1.0])  # anywhere: the fit ignores translation
    fitted, residual = model.fit(target)
    np.testing.assert_allclose(fitted, betas, atol=1e-9)
    assert residual < 1e-9
    np.testing.assert_allclose(model.joints(betas), posed_joints(np.zeros((24, 3)), betas), atol=1e-6)


def test_bare_fbx_bone_names_are_recognised(blank):
    obj = build_rig(blank, posed_joints(np.zeros((24, 3))), "fbx")
    for bone in obj.data.bones:
        bone.name = bone.name.removeprefix("m_avg_")
    info = rig.read_rig(obj)
    assert info.naming == "smpl-fbx" and info.bones[1] == "L_Hip"
    pose = np.random.default_rng(5).normal(scale=0.4, size=(24, 3))
    rig.set_pose(obj, info, pose, np.zeros(3))
    bpy.context.view_layer.update()
    assert np.abs(rig.read_pose(obj, info).pose - pose).max() < 1e-5

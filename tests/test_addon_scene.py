"""addon/scene.py: the scene camera as OpenCV K and world_to_camera against Blender's own
`world_to_camera_view` (every sensor fit, lens shift, portrait and landscape), the viewport projection route, and
the characters read per frame (pose from the evaluated armature, culling, disabled and broken characters)."""

import math

import bpy
import numpy as np
import pytest
from addon_fixtures import add_camera, blank, box_joints, build_rig, random_pose, registered, write_body
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from addon import rig, scene

__all__ = ["blank", "registered"]


def project(K, w2c, points):
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    return cam[:, :2] / cam[:, 2:] * np.diag(K)[:2] + K[:2, 2], cam[:, 2]


@pytest.mark.parametrize("fit, size, shift", [("AUTO", (512, 256), (0.05, -0.02)), ("AUTO", (200, 320), (-0.1, 0.07)),
                                              ("HORIZONTAL", (180, 300), (0.02, 0.1)),
                                              ("VERTICAL", (400, 150), (-0.03, -0.05))])
def test_camera_matches_world_to_camera_view(blank, fit, size, shift):
    cam = add_camera(blank, location=(0.7, -5.0, 1.3), rotation=(math.radians(80), 0.1, 0.2), lens=42.0)
    cam.data.sensor_fit, cam.data.sensor_width, cam.data.sensor_height = fit, 36.0, 20.0
    cam.data.shift_x, cam.data.shift_y = shift
    blank.render.resolution_x, blank.render.resolution_y = size
    blank.render.resolution_percentage = 50
    bpy.context.view_layer.update()
    W, H = scene.render_size(blank)
    assert (W, H) == (size[0] // 2, size[1] // 2)
    K = scene.camera_intrinsics(cam.data, W, H)
    w2c = scene.world_to_camera(cam.matrix_world)
    points = np.random.default_rng(0).uniform([-1, -1, 0], [1, 1, 2], size=(50, 3))
    xy, z = project(K, w2c, points)
    ndc = np.array([world_to_camera_view(blank, cam, Vector(p)) for p in points])
    expected = np.stack([ndc[:, 0] * W - 0.5, (1 - ndc[:, 1]) * H - 0.5], 1)  # pixel centres, row 0 at the top
    assert np.abs(xy - expected).max() < 1e-3
    assert np.abs(z - ndc[:, 2]).max() < 1e-5
    # the viewport route (OpenGL projection → K) agrees with the camera route
    depsgraph = bpy.context.evaluated_depsgraph_get()
    projection = cam.calc_matrix_camera(depsgraph, x=W, y=H)
    assert np.abs(scene.intrinsics_from_projection(projection, W, H) - K).max() < 1e-3


def test_orthographic_camera_and_missing_camera_are_explained(blank):
    with pytest.raises(scene.SceneError, match="no camera"):
        scene.read_frame(bpy.context.evaluated_depsgraph_get())
    cam = add_camera(blank)
    cam.data.type = "ORTHO"
    with pytest.raises(scene.SceneError, match="perspective"):
        scene.read_frame(bpy.context.evaluated_depsgraph_get())


def test_characters_per_frame_follow_the_animation(blank):
    add_camera(blank)
    obj = build_rig(blank, box_joints(), "meshcapade", name="Walker")
    obj.humangan.enabled, obj.humangan.seed, obj.humangan.psi = True, 7, 0.5
    info = rig.read_rig(obj)
    poses = [random_pose(10 + f, 0.3) for f in range(5)]
    for f, pose in enumerate(poses):
        pose[22:] = 0
        rig.set_pose(obj, info, pose, np.array([0.1 * f, 0, 0]))
        for name in info.bones[:22]:
            obj.keyframe_insert(f'pose.bones["{name}"].rotation_quaternion', frame=f + 1)
            obj.keyframe_insert(f'pose.bones["{name}"].location', frame=f + 1)
    seen = []
    for f in range(5):
        blank.frame_set(f + 1)
        frame = scene.read_frame(bpy.context.evaluated_depsgraph_get())
        assert [j.name for j in frame.jobs] == ["Walker"] and frame.problems == ()
        character = frame.jobs[0].character
        assert character.seed == 7 and character.psi == 0.5
        assert np.abs(character.pose - poses[f]).max() < 1e-5
        assert np.abs(character.transl - [0.1 * f, 0, 0]).max() < 1e-5
        seen.append(character.pose)
    assert all(np.abs(a - b).max() > 0.1 for a, b in zip(seen, seen[1:]))


def test_culling_disabled_and_broken_characters(blank):
    add_camera(blank)  # at y = -4 looking along +y
    inside = build_rig(blank, box_joints(), "mpi", name="Inside")
    behind = build_rig(blank, box_joints(), "mpi", name="Behind")
    behind.location = (0, -8, 0)
    aside = build_rig(blank, box_joints(), "mpi", name="FarAside")
    aside.location = (30, 0, 0)
    off = build_rig(blank, box_joints(), "mpi", name="Disabled")
    for obj in (inside, behind, aside):
        obj.humangan.enabled = True
    broken = bpy.data.objects.new("NotSMPL", bpy.data.armatures.new("NotSMPL"))
    blank.collection.objects.link(broken)
    broken.humangan.enabled = True
    frame = scene.read_frame(bpy.context.evaluated_depsgraph_get())
    assert [j.name for j in frame.jobs] == ["Inside"]
    assert off.humangan.enabled is False
    assert len(frame.problems) == 1 and "'NotSMPL'" in frame.problems[0] and "not an SMPL rig" in frame.problems[0]


def test_requests_group_characters_by_body_file(blank, tmp_path):
    add_camera(blank)
    body = write_body(tmp_path / "other.npz")
    for name, body_file in (("A", ""), ("B", str(body)), ("C", "")):
        obj = build_rig(blank, box_joints(), "mpi", name=name)
        obj.humangan.enabled, obj.humangan.body_file = True, body_file
    frame = scene.read_frame(bpy.context.evaluated_depsgraph_get())
    groups = frame.requests()
    assert [(b, names) for b, names, _ in groups] == [("", ("A", "C")), (str(body), ("B",))]
    assert all(len(r.characters) == len(names) for _, names, r in groups)

"""The person in the frame, as a user sees it: the shipped default model rendered through neural.Renderer at a real
resolution. The matte follows the body (alpha > 0.5 has IoU ≥ 0.9 with the mesh at 1080p, no white glow over black,
a person behind is not lightened), bodies are rendered upright whatever their orientation (rolled bodies give the
upright image turned; pelvis and object rotation agree; lying, handstand and cartwheel keep their clothes'
colours), and only pixels that show are synthesised, exactly."""
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt
from scipy.spatial.transform import Rotation

from neural.camera import Camera
from neural.renderer import Character, FrameRequest, Renderer

LUMA = np.array([0.2126, 0.7152, 0.0722])
TORSO = [2 + j for j in (3, 6, 9)]  # spine parts: the shirt


@pytest.fixture(scope="module")
def renderer():
    torch.set_num_threads(2)
    return Renderer(device="cpu")


def a_pose():
    pose = np.zeros((24, 3))
    pose[16, 2], pose[17, 2] = -1.0, 1.0
    return pose


def rotvec(axis, degrees):
    return Rotation.from_rotvec(np.asarray(axis, float) / np.linalg.norm(axis) * math.radians(degrees)).as_rotvec()


def vertices(renderer, pose, placement=np.eye(4)):
    with torch.no_grad():
        v = renderer.body(pose=torch.as_tensor(pose[None], dtype=torch.float32)).vertices[0].double().numpy()
    return v @ placement[:3, :3].T + placement[:3, 3]


def frame(characters, *, eye, target, width, height, fov=30.0, up=(0.0, 1.0, 0.0)):
    camera = Camera.look_at(torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64), up,
                            fov_y_deg=fov, width=width, height=height, dtype=torch.float64)
    return FrameRequest(K=camera.K[0].numpy(), world_to_camera=camera.world_to_camera[0].numpy(), width=width,
                        height=height, characters=tuple(characters))


def framing(renderer, pose, fill=0.8, fov=30.0):
    """Eye and target of a frontal camera whose frame the body fills to `fill` of its height."""
    v = vertices(renderer, pose)
    centre = 0.5 * (v.min(0) + v.max(0))
    distance = (v.max(0) - v.min(0)).max() / fill / (2 * math.tan(math.radians(fov) / 2))
    return centre + np.array([0.0, 0.0, distance]), centre


def glow_band(result):
    """Mean luminance (0..255) over black of the band just outside the mesh, 2% of the body's height wide."""
    mesh = result.parts > 1
    rows = np.nonzero(mesh.any(1))[0]
    outside = distance_transform_edt(~mesh)
    band = (outside > 0) & (outside <= 0.02 * (rows.max() - rows.min() + 1))
    over_black = result.rgba[..., :3] * result.rgba[..., 3:]
    return float((over_black @ LUMA)[band].mean() * 255)


def silhouette_iou(result):
    mesh, seen = result.parts > 1, result.rgba[..., 3] > 0.5
    return (mesh & seen).sum() / (mesh | seen).sum()


@pytest.mark.slow
def test_at_1080p_the_matte_is_the_body_with_no_white_glow(renderer):
    eye, target = framing(renderer, a_pose())
    result = renderer.render(frame([Character(pose=a_pose(), seed=1)], eye=eye, target=target, width=1920,
                                   height=1080))
    assert (result.parts > 1).sum() > 100_000  # a full-height person, not a thumbnail
    assert silhouette_iou(result) >= 0.9
    assert glow_band(result) <= 3.0


@pytest.mark.slow
def test_a_person_behind_is_not_lightened_by_the_one_in_front(renderer):
    pose = a_pose()
    eye, target = framing(renderer, pose, fill=0.6)
    behind = np.eye(4)
    behind[:3, 3] = (0.35, 0.0, -1.2)
    front, back = Character(pose=pose, seed=1), Character(pose=pose, seed=3, body_to_world=behind)
    view = dict(eye=eye, target=target, width=960, height=540)
    both = renderer.render(frame([front, back], **view))
    alone_back = renderer.render(frame([back], **view))
    alone_front = renderer.render(frame([front], **view))
    mesh = alone_front.parts > 1
    near = (distance_transform_edt(~mesh) > 0) & (distance_transform_edt(~mesh) <= 12) & (alone_back.parts > 1)
    assert near.sum() > 200  # the back person shows right beside the front one
    lum = lambda r: (r.rgba[..., :3] * r.rgba[..., 3:]) @ LUMA * 255  # noqa: E731
    assert lum(both)[near].mean() <= lum(alone_back)[near].mean() + 1.0


def square_view(renderer, pose, size=384):
    v = vertices(renderer, pose)
    centre = 0.5 * (v.min(0) + v.max(0))
    return centre, dict(eye=centre + np.array([0.0, 0.0, 5.0]), target=centre, width=size, height=size)


def about(centre, axis, degrees):
    m = np.eye(4)
    m[:3, :3] = Rotation.from_rotvec(rotvec(axis, degrees)).as_matrix()
    m[:3, 3] = centre - m[:3, :3] @ centre
    return m


@pytest.mark.slow
@pytest.mark.parametrize("degrees, turns", [(90, 1), (180, 2)])
def test_a_body_rolled_about_the_view_axis_renders_as_the_upright_image_turned(renderer, degrees, turns):
    centre, view = square_view(renderer, a_pose())
    upright = renderer.render(frame([Character(pose=a_pose(), seed=1)], **view))
    rolled = renderer.render(frame([Character(pose=a_pose(), seed=1, body_to_world=about(centre, (0, 0, 1),
                                                                                          degrees))], **view))
    turned = np.rot90(upright.rgba, turns)
    silhouette = (turned[..., 3] > 0.5) | (rolled.rgba[..., 3] > 0.5)
    assert silhouette.sum() > 2000
    assert np.abs(turned - rolled.rgba)[silhouette].mean() * 255 <= 2.0


@pytest.mark.slow
def test_pelvis_bone_and_object_rotation_give_the_same_image(renderer):
    pose = a_pose()
    centre, view = square_view(renderer, pose)
    with torch.no_grad():
        pelvis = renderer.body(pose=torch.as_tensor(pose[None], dtype=torch.float32)).joints[0, 0].double().numpy()
    for axis in ((1, 0, 0), (0.3, 0.5, 0.8)):
        by_bone = pose.copy()
        by_bone[0] = rotvec(axis, 115)
        a = renderer.render(frame([Character(pose=by_bone, seed=1)], **view))
        b = renderer.render(frame([Character(pose=pose, seed=1, body_to_world=about(pelvis, axis, 115))], **view))
        shown = (a.rgba[..., 3] > 0.5) | (b.rgba[..., 3] > 0.5)
        assert shown.sum() > 1000 and np.abs(a.rgba - b.rgba)[shown].mean() * 255 <= 0.5


def unusual_poses():
    """The sheet's lying (on its back along the world's X), handstand and cartwheel poses (tools/pose_sheet.py)."""
    from tools.pose_sheet import poses

    return {name: pose for name, (pose, _) in poses().items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lying", "handstand", "cartwheel"])
def test_lying_handstand_and_cartwheel_render_complete_in_their_clothes_colours(renderer, name):
    def shirt(pose):
        v = vertices(renderer, pose)
        centre = 0.5 * (v.min(0) + v.max(0))
        result = renderer.render(frame([Character(pose=pose, seed=1)], eye=centre + np.array([0.0, 1.2, 3.5]),
                                       target=centre, width=540, height=540, fov=40))
        torso = np.isin(result.parts, TORSO) & (result.rgba[..., 3] > 0.5)
        return result, result.rgba[..., :3][torso].mean(0) * 255

    _, standing = shirt(a_pose())
    result, colour = shirt(unusual_poses()[name])
    assert silhouette_iou(result) >= 0.9
    assert np.abs(colour - standing).max() <= 25, (colour, standing)


def test_only_pixels_that_show_are_synthesised_and_the_image_is_exact_there(renderer, monkeypatch):
    eye, target = framing(renderer, a_pose(), fill=0.9)
    request = frame([Character(pose=a_pose(), seed=2)], eye=eye, target=target, width=480, height=270)
    culled = renderer.render(request)
    count = renderer.pixels_to_synthesize(request)
    crop = renderer._work_of(request, 0).crop
    assert 0 < count < 0.6 * crop.width * crop.height
    every = lambda item, stride: torch.stack(torch.meshgrid(  # noqa: E731
        torch.arange(item.crop.width), torch.arange(item.crop.height), indexing="xy"), -1).reshape(-1, 2)
    monkeypatch.setattr(renderer, "_pixels_to_render", every)
    full = renderer.render(request)
    shown = full.rgba[..., 3] > 0
    assert shown.sum() > 5000
    np.testing.assert_array_equal(culled.rgba[shown], full.rgba[shown])
    np.testing.assert_array_equal(culled.rgba[..., 3], full.rgba[..., 3])

"""training/metrics/consistency.py on the tiny box body, with colours fixed to the surface (interpolated per-vertex
colours: consistent in every view and pose by construction) and with known changes: a constant offset, a colour
change on one side of the body, a shifted image, an occluded view."""

import math

import pytest
import torch

from neural.body import BodyModel
from neural.camera import Camera
from neural.raster import interpolate, rasterize
from tests.tiny_body import box_body_arrays
from training.metrics.consistency import colour_difference, surface_correspondence

H, W = 128, 64


@pytest.fixture(scope="module")
def body():
    return BodyModel(arrays=box_body_arrays())


def _posed(body, pose=None):
    return body(pose=torch.zeros(1, 24, 3) if pose is None else pose)


def _camera(yaw_deg):
    return Camera.orbit(torch.tensor([0.0, -0.1, 0.0]), 3.0, yaw_deg, 5.0, fov_y_deg=40.0, width=W, height=H)


def _surface_colours(body):
    """(V, 3) colours in [0.1, 0.9], linear in the rest position: smooth, and different everywhere."""
    t = body().template
    return (0.5 + torch.stack([0.5 * t[:, 0], 0.4 * t[:, 1], 2.0 * t[:, 2]], -1)).clamp(0.1, 0.9)


def _render(posed, camera, colours, extra=None):
    """image (1, 3, H, W) in [-1, 1] on white, and its fragments; extra(fragments) → (1, H, W, 3) added colour."""
    frags = rasterize(posed.vertices, posed.faces, camera)
    rgb = interpolate(frags, posed.faces, colours)
    if extra is not None:
        rgb = rgb + extra(frags)
    rgb = torch.where(frags.mask[..., None], rgb, torch.ones_like(rgb))
    return rgb.permute(0, 3, 1, 2) * 2 - 1, frags


def test_identical_views_match_pixel_for_pixel(body):
    posed, cam = _posed(body), _camera(0.0)
    image, frags = _render(posed, cam, _surface_colours(body))
    match = surface_correspondence(frags, frags, posed.faces, posed.vertices, cam)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    assert match.valid.sum() > 500
    assert torch.allclose(match.xy[match.valid], torch.stack([xs, ys], -1)[None][match.valid], atol=1e-3)
    score = colour_difference(image, image, match)
    assert score.count == int(match.valid.sum()) and score.mean < 1e-4


def test_surface_colours_are_consistent_across_views_and_offsets_are_measured_exactly(body):
    posed, colours = _posed(body), _surface_colours(body)
    cam_a, cam_b = _camera(0.0), _camera(20.0)
    image_a, frags_a = _render(posed, cam_a, colours)
    image_b, frags_b = _render(posed, cam_b, colours)
    match = surface_correspondence(frags_a, frags_b, posed.faces, posed.vertices, cam_b)
    assert match.valid.sum() > 500
    # the nearest pixel of b sees the same surface point, within a pixel footprint (1.7 cm here)
    xy = match.xy[match.valid].round().long()
    point_a = interpolate(frags_a, posed.faces, posed.vertices)[match.valid]
    point_b = interpolate(frags_b, posed.faces, posed.vertices)[0, xy[:, 1], xy[:, 0]]
    distance = (point_a - point_b).norm(dim=-1)
    assert distance.median() < 0.01 and distance.quantile(0.99) < 0.025
    assert colour_difference(image_a, image_b, match).mean < 1.0           # 8-bit levels: surface-bound colour
    # a view-dependent renderer: +0.1 (in [0, 1]) everywhere in view b is 25.5 levels
    offset_b, _ = _render(posed, cam_b, colours, extra=lambda f: torch.full((*f.face_ids.shape, 3), 0.1))
    assert colour_difference(image_a, offset_b, match).mean == pytest.approx(0.1 * 255, abs=1.0)


def test_a_colour_change_on_one_side_of_the_body_scores_in_proportion(body):
    posed, colours = _posed(body), _surface_colours(body)
    template = posed.template
    cam_a, cam_b = _camera(-10.0), _camera(10.0)
    left = lambda f: 0.2 * (interpolate(f, posed.faces, template)[..., :1] > 0).float().expand(-1, -1, -1, 3)  # noqa
    image_a, frags_a = _render(posed, cam_a, colours)
    image_b, frags_b = _render(posed, cam_b, colours, extra=left)
    match = surface_correspondence(frags_a, frags_b, posed.faces, posed.vertices, cam_b)
    on_left = (interpolate(frags_a, posed.faces, template)[..., 0] > 0)[match.valid].float().mean()
    assert 0.2 < on_left < 0.8
    expected = 0.2 * 255 * float(on_left)
    assert colour_difference(image_a, image_b, match).mean == pytest.approx(expected, rel=0.08)


def test_a_shifted_image_scores_higher_than_the_consistent_one(body):
    posed, colours = _posed(body), _surface_colours(body)
    cam_a, cam_b = _camera(0.0), _camera(15.0)
    image_a, frags_a = _render(posed, cam_a, colours)
    image_b, frags_b = _render(posed, cam_b, colours)
    match = surface_correspondence(frags_a, frags_b, posed.faces, posed.vertices, cam_b)
    consistent = colour_difference(image_a, image_b, match).mean
    shifted = colour_difference(image_a, torch.roll(image_b, shifts=3, dims=-1), match).mean
    assert shifted > 5 * consistent and shifted > 3.0


def test_points_hidden_in_the_other_view_are_excluded(body):
    posed = _posed(body)
    cam_a, cam_b = _camera(0.0), _camera(180.0)                              # seen from behind: fronts hidden
    frags_a = rasterize(posed.vertices, posed.faces, cam_a)
    frags_b = rasterize(posed.vertices, posed.faces, cam_b)
    match = surface_correspondence(frags_a, frags_b, posed.faces, posed.vertices, cam_b)
    assert match.valid.sum() < 0.01 * frags_a.mask.sum()


def test_pose_correspondence_follows_the_surface(body):
    # bend the left elbow by 60°: the forearm moves, its colours move with it; the torso stays put
    pose = torch.zeros(1, 24, 3)
    pose[0, 18] = torch.tensor([0.0, 0.0, math.radians(60)])
    posed_a, posed_b = _posed(body), _posed(body, pose)
    colours, cam = _surface_colours(body), _camera(0.0)
    image_a, frags_a = _render(posed_a, cam, colours)
    image_b, frags_b = _render(posed_b, cam, colours)
    match = surface_correspondence(frags_a, frags_b, posed_a.faces, posed_b.vertices, cam)
    assert colour_difference(image_a, image_b, match).mean < 1.0
    # a torso pixel maps onto itself; a forearm pixel moves
    vertex = posed_a.faces[frags_a.face_ids.clamp(min=0)][..., 0]            # (1, H, W) a vertex of the hit face
    part = posed_a.parts[vertex]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    moved = (match.xy - torch.stack([xs, ys], -1)[None]).norm(dim=-1)
    torso = match.valid & (part == 3 + 2)                                    # spine1
    forearm = match.valid & (part == 18 + 2)                                 # left elbow's part
    assert torso.sum() > 20 and moved[torso].max() < 1e-3
    assert forearm.sum() > 5 and moved[forearm].mean() > 3


def test_colour_difference_refuses_mismatched_images(body):
    posed, cam = _posed(body), _camera(0.0)
    frags = rasterize(posed.vertices, posed.faces, cam)
    match = surface_correspondence(frags, frags, posed.faces, posed.vertices, cam)
    with pytest.raises(ValueError, match="does not match"):
        colour_difference(torch.zeros(1, 3, H // 2, W // 2), torch.zeros(1, 3, H, W), match)

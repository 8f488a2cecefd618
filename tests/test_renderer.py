"""neural/renderer.py on the tiny preset with random weights and a 216-vertex box body: what a user checks in the
pictures (shapes, ranges, alpha zero away from the body, depth ordering of two people), reproducibility per seed,
exact pixel-subset rendering, cancellation, and the errors for a wrong body or a missing model."""

import numpy as np
import pytest
import torch
from tiny_body import write_box_body, write_tiny_model

from commands.render import orbit_request
from neural.renderer import Character, FrameRequest, RenderCancelled, Renderer

SIZE = (96, 72)  # scene width, height


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("renderer")
    model_path, body_path = write_tiny_model(folder)
    return {"model": model_path, "body": body_path, "folder": folder}


@pytest.fixture(scope="module")
def renderer(files):
    return Renderer(model_path=files["model"], body_path=files["body"], device="cpu", tile_pixels=128)


def request_for(renderer, *characters, yaw=0.0):
    """Orbit camera framing the first character's body (at the world origin)."""
    with torch.no_grad():
        vertices = renderer.body().vertices[0].double().numpy()
    base = orbit_request(vertices * 2.5, characters[0], yaw_deg=yaw, width=SIZE[0], height=SIZE[1])
    return FrameRequest(K=base.K, world_to_camera=base.world_to_camera, width=SIZE[0], height=SIZE[1],
                        characters=characters)


def pose():
    p = np.zeros((24, 3))
    p[16, 2], p[17, 2] = -0.9, 0.9  # arms down a little
    return p


def placed(x, z):
    m = np.eye(4)
    m[0, 3], m[2, 3] = x, z
    return m


def test_rgba_depth_parts_shapes_ranges_and_alpha_zero_far_from_the_body(renderer):
    result = renderer.render(request_for(renderer, Character(pose=pose(), seed=1)))
    W, H = SIZE
    assert result.rgba.shape == (H, W, 4) and result.rgba.dtype == np.float32
    assert result.depth.shape == (H, W) and result.depth.dtype == np.float32
    assert result.parts.shape == (H, W) and result.parts.dtype == np.uint8
    assert 0 <= result.rgba.min() and result.rgba.max() <= 1
    body = result.parts > 1
    assert body.sum() > 60 and set(np.unique(result.parts[body])) <= set(range(2, 26))
    assert np.isfinite(result.depth[body]).all() and np.isinf(result.depth[~body]).all()
    assert (result.depth[body] > 0).all()
    alpha = result.rgba[..., 3]
    # the body is seen (opaque where the crop resolves it), and beyond a quarter of the frame height alpha is 0
    assert alpha[body].min() > 0.3 and np.median(alpha[body]) == 1
    ys, xs = np.nonzero(body)
    grid_y, grid_x = np.mgrid[:H, :W]
    distance = np.min(np.hypot(grid_y[..., None] - ys, grid_x[..., None] - xs), axis=-1)
    far = distance > 0.25 * H
    assert far.sum() > 500 and alpha[far].max() == 0
    assert (result.rgba[..., :3][alpha == 0] == 0).all()


def test_same_seed_same_image_and_different_seeds_differ(files, renderer):
    a = renderer.render(request_for(renderer, Character(pose=pose(), seed=3)))
    again = Renderer(model_path=files["model"], body_path=files["body"], device="cpu", tile_pixels=128)
    b = again.render(request_for(renderer, Character(pose=pose(), seed=3)))
    c = renderer.render(request_for(renderer, Character(pose=pose(), seed=4)))
    assert np.array_equal(a.rgba, b.rgba) and np.array_equal(a.depth, b.depth)
    seen = a.rgba[..., 3] > 0.5
    assert np.abs(a.rgba[..., :3] - c.rgba[..., :3])[seen].max() > 0.01
    # the appearance seed does not move the silhouette: the body's own pixels are opaque in both
    inner = (a.parts > 1) & np.all([np.roll(a.parts > 1, d, axis) for d in (-1, 1) for axis in (0, 1)], axis=0)
    assert inner.sum() >= 20
    assert np.median(a.rgba[..., 3][inner]) == 1 and a.rgba[..., 3][inner].min() > 0.9
    np.testing.assert_allclose(a.rgba[..., 3][inner], c.rgba[..., 3][inner], atol=0.02)


def test_two_characters_nearer_one_wins_where_they_overlap(renderer):
    near = Character(pose=pose(), seed=1, body_to_world=placed(0.0, 0.0))
    far = Character(pose=pose(), seed=2, body_to_world=placed(0.2, -1.0))
    both = renderer.render(request_for(renderer, near, far))
    alone_near = renderer.render(request_for(renderer, near))
    alone_far = renderer.render(request_for(renderer, far))
    overlap = (alone_near.parts > 1) & (alone_near.rgba[..., 3] == 1) & (alone_far.parts > 1)
    assert overlap.sum() > 15
    assert (alone_near.depth[overlap] < alone_far.depth[overlap]).all()
    np.testing.assert_allclose(both.rgba[overlap], alone_near.rgba[overlap], atol=1e-5)
    np.testing.assert_array_equal(both.parts[overlap], alone_near.parts[overlap])
    np.testing.assert_array_equal(both.depth, np.minimum(alone_near.depth, alone_far.depth))
    only_far = (alone_far.rgba[..., 3] > 0) & (alone_near.rgba[..., 3] == 0)
    assert only_far.sum() > 15
    np.testing.assert_allclose(both.rgba[only_far], alone_far.rgba[only_far], atol=1e-5)


def test_pixel_subset_equals_the_full_crop_at_those_pixels(renderer):
    request = request_for(renderer, Character(pose=pose(), seed=5), yaw=30.0)
    crop = renderer.render_crop(request)
    h, w = crop.shape[:2]  # the model's crop, at the detail this frame needs
    assert crop.shape[2] == 4 and h % renderer.config.height == 0 and w * renderer.config.height == h * renderer.config.width
    rng = np.random.default_rng(0)
    pixels = np.stack([rng.integers(0, w, 40), rng.integers(0, h, 40)], 1)
    subset = renderer.render_pixels(request, pixels)
    np.testing.assert_allclose(subset, crop[pixels[:, 1], pixels[:, 0]], atol=1e-6, rtol=0)


def test_preview_stride_repeats_exact_pixels(renderer):
    request = request_for(renderer, Character(pose=pose(), seed=5))
    full = renderer.render(request)
    preview = renderer.render(request, stride=2)
    assert preview.rgba.shape == full.rgba.shape
    body = full.parts > 1  # the body's alpha comes from geometry; beside it alpha follows the (repeated) colour
    np.testing.assert_allclose(preview.rgba[..., 3][body], full.rgba[..., 3][body], atol=0.02)
    assert ((preview.rgba[..., 3] > 0) == (full.rgba[..., 3] > 0)).mean() > 0.99
    np.testing.assert_array_equal(preview.depth, full.depth)


def test_cancellation_stops_within_one_tile_and_progress_reaches_one(renderer):
    request = request_for(renderer, Character(pose=pose(), seed=1))
    progress = []
    renderer.render(request, on_progress=progress.append)
    assert len(progress) >= 2 and progress == sorted(progress) and progress[-1] == 1.0
    progress.clear()
    with pytest.raises(RenderCancelled):
        renderer.render(request, on_progress=progress.append, should_stop=lambda: len(progress) >= 1)
    assert len(progress) == 1


def test_wrong_body_names_both_files(files, tmp_path):
    other = write_box_body(tmp_path / "other_body.npz", scale=1.1)
    with pytest.raises(ValueError, match="tiny.safetensors.*other_body.npz"):
        Renderer(model_path=files["model"], body_path=other, device="cpu")


def test_missing_default_model_says_how_to_pass_one(files, tmp_path, monkeypatch):
    import neural.renderer as module

    monkeypatch.setattr(module, "default_model_path", lambda: tmp_path / "default_model.safetensors")
    with pytest.raises(FileNotFoundError, match="default_model.safetensors.*--model"):
        Renderer(body_path=files["body"], device="cpu")


def test_bad_character_input_names_the_field():
    with pytest.raises(ValueError, match="Character.pose.*\\(24, 3\\)"):
        Character(pose=np.zeros((23, 3)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_render_matches_cpu_within_bf16_tolerance(files, renderer):
    cuda = Renderer(model_path=files["model"], body_path=files["body"], device="cuda", tile_pixels=128)
    request = request_for(renderer, Character(pose=pose(), seed=3), Character(pose=pose(), seed=4,
                                                                               body_to_world=placed(0.2, -1.0)))
    a, b = renderer.render(request), cuda.render(request)
    assert np.array_equal(b.rgba, cuda.render(request).rgba)  # deterministic on the GPU too
    differ = np.abs(a.rgba - b.rgba).max(-1) > 0.03  # bf16 autocast in the generator
    assert differ.mean() < 0.02
    assert (a.parts == b.parts).mean() > 0.99 and np.allclose(a.depth, b.depth, atol=1e-4, equal_nan=True)


def test_a_character_the_camera_is_inside_fails_alone_by_name(renderer):
    good = Character(pose=pose(), seed=1, name="Good")
    base = request_for(renderer, good)
    camera_at = np.linalg.inv(base.world_to_camera)[:3, 3]
    inside = np.eye(4)
    inside[:3, 3] = camera_at - np.array([0.0, 0.3, 0.0])  # the body's chest around the camera
    bad = Character(pose=pose(), seed=2, name="Bad", body_to_world=inside)
    both = renderer.render(FrameRequest(K=base.K, world_to_camera=base.world_to_camera, width=SIZE[0],
                                        height=SIZE[1], characters=(bad, good)))
    alone = renderer.render(base)
    assert [(f.index, f.name) for f in both.failures] == [(0, "Bad")] and "camera is inside" in both.failures[0].reason
    assert not both.failures[0].fatal  # the camera sees none of it: the frame is what the camera shows
    np.testing.assert_array_equal(both.rgba, alone.rgba)
    assert (alone.rgba[..., 3] > 0).sum() > 100


def test_matte_unmixes_white_and_keeps_what_the_generator_paints_beyond_the_mesh():
    from neural.renderer import matte

    white, grey, hair = [1.0, 1.0, 1.0], [0.6, 0.6, 0.6], [0.25, 0.2, 0.15]
    rgb = torch.tensor([white, grey, hair, hair, [0.55, 0.6, 0.65]])
    covered = torch.tensor([False, False, False, False, True])
    coverage = torch.tensor([0.0, 0.3, 0.0, 0.0, 0.5])   # the body's share of the model's pixel
    halo = torch.tensor([0.9, 0.9, 0.9, 0.0, 1.0])       # field opacity × halo weight
    colour, alpha = matte(rgb, covered, coverage, halo)
    assert alpha[0] == 0                                  # white beside the body: nothing
    assert alpha[1] == pytest.approx(0.1, abs=1e-6)       # 0.4 needed, 0.3 of it the body's own anti-aliasing
    assert alpha[2] == pytest.approx(0.85, abs=1e-6)      # hair: as opaque as its darkness over white needs
    assert alpha[3] == 0                                  # beyond the halo: nothing, however dark
    assert alpha[4] == 1                                  # on the body: opaque, colour un-mixed by its coverage
    np.testing.assert_allclose(colour[4], [0.1, 0.2, 0.3], atol=1e-6)
    over_white = colour * alpha[:, None] + (1 - alpha[:, None])
    np.testing.assert_allclose(over_white[[0, 2]], rgb[[0, 2]], atol=1e-6)  # over white: the generator's own image


@pytest.mark.parametrize("field, value", [("psi", float("nan")), ("psi", 1e6), ("seed", 2**70), ("seed", -1)])
def test_a_bad_seed_or_psi_is_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"Character.{field}"):
        Character(pose=np.zeros((24, 3)), **{field: value})


def looking_up_the_body(eye_y: float) -> FrameRequest:
    """A camera beside the body's right arm at height eye_y (body frame), looking straight up along the body."""
    from neural.camera import Camera

    cam = Camera.look_at(torch.tensor([0.35, eye_y, 0.0]), torch.tensor([0.35, eye_y + 1.0, 0.0]), (0.0, 0.0, 1.0),
                         fov_y_deg=90.0, width=SIZE[0], height=SIZE[1], dtype=torch.float64)
    return FrameRequest(K=cam.K[0].numpy(), world_to_camera=cam.world_to_camera[0].numpy(), width=SIZE[0],
                        height=SIZE[1], characters=(Character(pose=pose(), seed=1, name="Near"),))


def test_a_body_reaching_behind_the_camera_renders_what_is_in_front(renderer):
    """The legs behind the camera, arm, chest and head in front: no crop frames the whole body, so the crop frames
    the part of the frame the body covers; the matte covers what the scene camera's own rasterisation sees."""
    from neural.camera import BodyBehindCamera, Camera, crop_camera

    request = looking_up_the_body(-0.2)
    scene = Camera(K=torch.as_tensor(request.K)[None], world_to_camera=torch.as_tensor(request.world_to_camera)[None],
                   width=SIZE[0], height=SIZE[1])
    with pytest.raises(BodyBehindCamera):
        crop_camera(scene, renderer.body().vertices.double(), width=32, height=64)
    result = renderer.render(request)
    assert result.failures == ()
    seen, drawn = result.parts > 1, result.rgba[..., 3] > 0.5
    assert seen.sum() > 300 and (seen & drawn).sum() / (seen | drawn).sum() > 0.9
    assert np.isfinite(result.depth[seen]).all() and (result.depth[seen] > 0).all()
    # wholly behind the camera: simply not in the frame, no failure
    behind = renderer.render(looking_up_the_body(1.5))
    assert behind.failures == () and behind.rgba[..., 3].max() == 0

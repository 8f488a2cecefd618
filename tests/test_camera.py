"""neural.camera: round trips, known orientations, resizing against bilinear upsampling, gradients, and the crop
camera checked by rendering part maps through it and pasting them back into the scene frame."""
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from neural.body import BodyModel, free_body_path
from neural.camera import BodyBehindCamera, Camera, crop_camera, in_frame_corners, intrinsics_from_fov, paste
from neural.raster import part_map, rasterize

FREE_BODY = free_body_path()


def random_rotation(g, dtype=torch.float64):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r))
    return q * torch.det(q)


def random_camera(seed=0, dtype=torch.float64, width=64, height=48):
    g = torch.Generator().manual_seed(seed)
    w2c = torch.eye(4, dtype=dtype)
    w2c[:3, :3] = random_rotation(g, dtype)
    w2c[:3, 3] = torch.randn(3, generator=g, dtype=dtype)
    K = torch.tensor([[55.0, 0.7, 30.2], [0.0, 57.0, 25.1], [0.0, 0.0, 1.0]], dtype=dtype)
    return Camera(K=K[None], world_to_camera=w2c[None], width=width, height=height)


# --- basic geometry -----------------------------------------------------------------------------------------------
def test_rays_and_project_round_trip():
    cam = random_camera()
    origins, dirs = cam.rays()
    assert origins.shape == dirs.shape == (1, 64 * 48, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(1, 64 * 48, dtype=torch.float64))
    assert torch.allclose(origins[0, 0], cam.center[0])
    t = torch.rand(1, 64 * 48, 1, dtype=torch.float64) * 5 + 0.5
    xy, z = cam.project(origins + t * dirs)
    assert torch.allclose(xy[0], cam.pixel_grid(), atol=1e-9)
    assert (z > 0).all()
    assert cam.pixel_grid()[1].tolist() == [1.0, 0.0]                               # row-major, x fastest
    # and the other way: a projected point lies on the ray through its (fractional) pixel
    pts = torch.randn(1, 50, 3, dtype=torch.float64) + cam.center[:, None] + 4 * cam.world_to_camera[:, 2, None, :3]
    xy, z = cam.project(pts)
    o, d = cam.rays(xy[0])
    along = ((pts - o) * d).sum(-1, keepdim=True)
    assert torch.allclose(o + along * d, pts, atol=1e-9)


def test_camera_to_world_is_the_inverse():
    cam = random_camera(3)
    assert torch.allclose(cam.camera_to_world @ cam.world_to_camera, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_look_at_orientation():
    # looking along +Z with +Y up: OpenCV x (right) is world -X, y (down) is world -Y
    cam = Camera.look_at((0.0, 0.0, 0.0), (0.0, 0.0, 5.0), (0.0, 1.0, 0.0), fov_y_deg=60, width=101, height=81)
    assert torch.allclose(cam.world_to_camera[0, :3, :3], torch.diag(torch.tensor([-1.0, -1.0, 1.0])))
    eye, target = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-2.0, 0.5, 1.0])
    cam = Camera.look_at(eye, target, fov_y_deg=40, width=64, height=48)
    xy, z = cam.project(torch.stack([target, target + torch.tensor([0.0, 0.3, 0.0])])[None])
    assert torch.allclose(xy[0, 0], torch.tensor([31.5, 23.5]), atol=1e-4)           # image centre
    assert abs(xy[0, 1, 0] - 31.5) < 1e-3 and xy[0, 1, 1] < 23.5 - 1                # up is up in the image
    assert torch.allclose(z[0, 0], (target - eye).norm())
    assert torch.allclose(cam.center[0], eye)


def test_from_fov_puts_the_frame_edges_at_half_the_field_of_view():
    cam = Camera.from_fov(fov_y_deg=50.0, width=30, height=20, dtype=torch.float64)
    _, d = cam.rays(torch.tensor([[14.5, -0.5], [14.5, 19.5]], dtype=torch.float64))
    half = torch.rad2deg(torch.atan2(d[0, :, 1].abs(), d[0, :, 2]))
    assert torch.allclose(half, torch.tensor([25.0, 25.0], dtype=torch.float64))
    assert torch.equal(intrinsics_from_fov(50.0, 30, 20, dtype=torch.float64), cam.K)


def test_resized_matches_manual_K_and_bilinear_upsampling():
    K = torch.tensor([[[300.0, 0.0, 127.5], [0.0, 300.0, 255.5], [0.0, 0.0, 1.0]]])
    cam = Camera(K=K, world_to_camera=torch.eye(4)[None], width=256, height=512)
    small = cam.resized(64, 128)
    manual = torch.tensor([[[75.0, 0.0, 31.5], [0.0, 75.0, 63.5], [0.0, 0.0, 1.0]]])
    assert torch.allclose(small.K, manual) and (small.width, small.height) == (64, 128)
    assert torch.allclose(small.resized(256, 512).K, K)
    # camera-frame ray directions (z = 1) are affine in the pixel, so bilinear upsampling of the low-resolution
    # ones (align_corners=False) reproduces the high-resolution ones away from the clamped border
    cam = random_camera(1, width=48, height=40)
    low = cam.resized(12, 10)

    def plane_dirs(c):
        homo = torch.cat([c.pixel_grid(), torch.ones(c.width * c.height, 1, dtype=torch.float64)], -1)
        return torch.linalg.solve(c.K[0], homo.T).reshape(3, c.height, c.width)

    up = F.interpolate(plane_dirs(low)[None], size=(40, 48), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(up[:, 2:-2, 2:-2], plane_dirs(cam)[:, 2:-2, 2:-2], atol=1e-9)


def test_orbit_yaw_zero_faces_the_front_and_yaw_sign():
    center = torch.tensor([0.0, 1.0, 0.0])
    cam = Camera.orbit(center, 3.0, 0.0, 0.0, fov_y_deg=30, width=64, height=128)
    assert torch.allclose(cam.center[0], torch.tensor([0.0, 1.0, 3.0]), atol=1e-6)
    front, left = center + torch.tensor([0.0, 0.0, 0.2]), center + torch.tensor([0.2, 0.0, 0.0])
    xy, z = cam.project(torch.stack([center, front, left])[None])
    assert z[0, 1] < z[0, 0]                                                         # the body's front is nearer
    assert xy[0, 2, 0] > xy[0, 0, 0]                                                 # its left is on the image right
    assert torch.allclose(xy[0, 0], torch.tensor([31.5, 63.5]), atol=1e-4)
    # yaw +90° moves the camera to +X (the subject's left); pitch +30° raises it; batched over yaw
    cams = Camera.orbit(center, 2.0, torch.tensor([90.0, -90.0]), 30.0, fov_y_deg=30, width=64, height=128)
    c = math.cos(math.radians(30))
    expected = torch.tensor([[2 * c, 2.0, 0.0], [-2 * c, 2.0, 0.0]])
    assert torch.allclose(cams.center, expected, atol=1e-5)


def test_transformed_expresses_the_camera_in_another_frame():
    cam = random_camera(2)
    g = torch.Generator().manual_seed(7)
    body_to_world = torch.eye(4, dtype=torch.float64)
    body_to_world[:3, :3] = random_rotation(g)
    body_to_world[:3, 3] = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    p_body = torch.randn(1, 10, 3, dtype=torch.float64)
    p_world = p_body @ body_to_world[:3, :3].T + body_to_world[:3, 3]
    in_body = cam.transformed(torch.linalg.inv(body_to_world))
    for a, b in zip(cam.project(p_world), in_body.project(p_body)):
        assert torch.allclose(a, b, atol=1e-10)


def test_project_gradients():
    cam = random_camera(4)
    pts = (torch.randn(1, 5, 3, dtype=torch.float64) * 0.3 + cam.center[:, None] + 3 * cam.world_to_camera[:, 2,
           None, :3]).requires_grad_()
    K = cam.K.clone().requires_grad_()
    w2c = cam.world_to_camera.clone().requires_grad_()

    def f(p, K, w2c):
        return Camera(K=K, world_to_camera=w2c, width=64, height=48).project(p)

    assert torch.autograd.gradcheck(f, (pts, K, w2c))


def test_to_and_shape_errors():
    cam = random_camera().to(dtype=torch.float32)
    assert cam.K.dtype == cam.world_to_camera.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(B, 3, 3\)"):
        Camera(K=torch.eye(3), world_to_camera=torch.eye(4)[None], width=4, height=4)
    with pytest.raises(ValueError, match="points"):
        cam.project(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="parallel"):
        Camera.look_at((0, 0, 0), (0, 5, 0), (0, 1, 0), fov_y_deg=30, width=8, height=8)


# --- crop camera ---------------------------------------------------------------------------------------------------
def load_body():
    """The free body's template (T-pose): vertices (V, 3) with the feet on y = 0, centred on the Y axis; faces;
    part labels (V,)."""
    with np.load(FREE_BODY) as data:
        v, f, p = data["v_template"], data["f"], data["weights"].argmax(1) + 2
    lo, hi = v.min(0), v.max(0)
    return v - np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2]), f, p


def arms_down_body():
    """The free body posed by neural.body with the arms lowered 70°, the generator's usual framing; float64."""
    body = BodyModel.load(FREE_BODY, dtype=torch.float64)
    pose = torch.zeros(1, 24, 3, dtype=torch.float64)
    pose[0, 16, 2], pose[0, 17, 2] = -1.2, 1.2                                     # left/right shoulder
    posed = body(pose=pose)
    v = posed.vertices[0]
    return v - torch.stack([torch.zeros_like(v[0, 0]), v[:, 1].min(), torch.zeros_like(v[0, 0])]), posed.faces, \
        posed.parts


def scene_camera():
    """A 640×480 scene camera at (0.5, 1.6, 5) looking towards (−0.5, 1, 0), rolled 10° about its axis."""
    cam = Camera.look_at((0.5, 1.6, 5.0), (-0.5, 1.0, 0.0), (math.sin(0.17), math.cos(0.17), 0.0),
                         fov_y_deg=45, width=640, height=480, dtype=torch.float64)
    return cam


def _label_edges(labels):
    """(H, W) bool: pixels with a different label among their 8 neighbours."""
    padded = F.pad(labels[None, None].double(), (1, 1, 1, 1), mode="replicate")
    hi = F.max_pool2d(padded, 3, stride=1)[0, 0]
    lo = -F.max_pool2d(-padded, 3, stride=1)[0, 0]
    return hi != lo


@pytest.fixture(scope="module")
def posed_body():
    return arms_down_body()


@pytest.mark.parametrize("where", ["off-centre", "near", "far"])
def test_crop_render_pasted_back_matches_direct_render(where, posed_body):
    """Part maps of the free body rendered through the crop camera and pasted (nearest) into the 640×480 scene frame
    equal the direct render. With a 256×512 crop (the paper-512 frame; 1.3–4.7× the body's projected resolution)
    they differ only next to label boundaries. With a 1024×2048 crop (5–19×) they agree on ≥ 99% of body pixels:
    the rest is nearest resampling, which moves a boundary by up to half a crop pixel, and the free body's part
    boundaries zigzag along its faces (measured: 97.1–97.9% agree at 256×512, 98.6–98.9% at 512×1024)."""
    base, faces, parts = posed_body
    cam = scene_camera().to(dtype=torch.float32)
    x, y, z, yaw = {"off-centre": (1.6, -0.3, 0.5, 30.0), "near": (-0.2, -0.8, 2.6, -60.0),
                    "far": (-1.5, 0.0, -6.0, 120.0)}[where]
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    rot = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    v = (base @ rot.T + torch.tensor([x, y, z], dtype=torch.float64))[None].float()

    direct = part_map(rasterize(v, faces, cam), faces, parts)[0]
    edges = _label_edges(direct)
    for width, min_scale in ((256, 1.2), (1024, 5.0)):
        crop, hom = crop_camera(cam, v, width=width, height=2 * width, margin=0.1)
        assert float(crop.K[0, 1, 1] / cam.K[0, 1, 1]) > min_scale                  # crop pixels per scene pixel
        crop_parts = part_map(rasterize(v, faces, crop), faces, parts)
        pasted, valid = paste(crop_parts[:, None], hom, 640, 480, mode="nearest")
        pasted = torch.where(valid[0, 0], pasted[0, 0], torch.ones_like(pasted[0, 0]))
        body = (direct != 1) | (pasted != 1)
        assert body.sum() > 1000
        wrong = direct != pasted
        assert not (wrong & ~edges).any(), f"{where}, {width}: labels differ away from any label boundary"
        if width == 1024:
            agree = 1 - wrong[body].double().mean()
            assert agree >= 0.99, f"{where}: {agree:.4f} of {int(body.sum())} body pixels agree"


def test_crop_camera_centres_and_frames_the_body():
    verts, faces, parts = load_body()
    cam = scene_camera()
    v = torch.as_tensor(verts, dtype=torch.float64)[None] + torch.tensor([2.0, -0.5, 0.0], dtype=torch.float64)
    crop, hom = crop_camera(cam, v, width=128, height=256, margin=0.1)
    assert torch.allclose(crop.center, cam.center)
    xy, z = crop.project(v)
    lo, hi = xy.amin(1)[0], xy.amax(1)[0]
    assert (z > 0).all()
    assert lo.min() >= -0.5 and hi[0] <= 127.5 and hi[1] <= 255.5                 # inside the frame
    # the limiting axis spans 80% of the frame (margin 0.1 each side), the body is centred
    span = torch.stack([(hi[0] - lo[0] + 1e-9) / 128, (hi[1] - lo[1]) / 256])
    assert 0.78 < float(span.max()) <= 0.8 + 1e-6
    assert torch.allclose((lo + hi) / 2, torch.tensor([63.5, 127.5], dtype=torch.float64), atol=0.5)
    # the homography maps crop pixels of body points onto their scene pixels
    scene_xy, _ = cam.project(v)
    mapped = torch.cat([xy, torch.ones_like(xy[..., :1])], -1) @ hom.transpose(1, 2)
    assert torch.allclose(mapped[..., :2] / mapped[..., 2:], scene_xy, atol=1e-8)


def test_crop_camera_rejects_a_body_behind_the_camera_and_in_frame_corners_frame_what_it_sees():
    verts, _, _ = load_body()
    v = torch.as_tensor(verts, dtype=torch.float64)[None]
    cam = Camera.look_at((0.0, 1.2, 0.0), (0.0, 1.2, 1.0), fov_y_deg=45, width=64, height=48, dtype=torch.float64)
    with pytest.raises(BodyBehindCamera, match="behind or beside"):
        crop_camera(cam, v, width=64, height=128)
    # the camera inside the body: the body covers the whole frame
    corners = in_frame_corners(cam, v)
    xy, z = cam.project(corners)
    assert (z > 0).all()
    np.testing.assert_allclose(sorted(set(xy[0, :, 0].round(decimals=6).tolist())), [-0.5, 63.5], atol=1e-6)
    np.testing.assert_allclose(sorted(set(xy[0, :, 1].round(decimals=6).tolist())), [-0.5, 47.5], atol=1e-6)
    # a body wholly in view: the corners are its projected bounding box; wholly behind: None
    front = scene_camera()
    xy, _ = front.project(v)
    box, _ = front.project(in_frame_corners(front, v))
    np.testing.assert_allclose(box[0].amin(0), xy[0].amin(0).clamp(-0.5, None), atol=1e-6)
    edge = torch.tensor([front.width - 0.5, front.height - 0.5], dtype=xy.dtype)
    np.testing.assert_allclose(box[0].amax(0), torch.minimum(xy[0].amax(0), edge), atol=1e-6)
    away = Camera.look_at((0.0, 1.2, 3.0), (0.0, 1.2, 4.0), fov_y_deg=45, width=64, height=48, dtype=torch.float64)
    assert in_frame_corners(away, v) is None


def test_paste_bilinear_colour_and_validity():
    cam = scene_camera()
    v = torch.as_tensor(load_body()[0], dtype=torch.float64)[None]
    crop, hom = crop_camera(cam, v, width=32, height=64)
    # a colour ramp that is affine in crop pixels: bilinear pasting reproduces it at the crop's interior
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(32.0), indexing="ij")
    image = torch.stack([xs, ys])[None].double()
    out, valid = paste(image, hom, 640, 480)
    assert out.shape == (1, 2, 480, 640) and valid.shape == (1, 1, 480, 640) and valid.dtype == torch.bool
    pix = torch.stack(torch.meshgrid(torch.arange(480.0), torch.arange(640.0), indexing="ij")[::-1], -1)
    q = torch.cat([pix, torch.ones(480, 640, 1)], -1).double() @ torch.linalg.inv(hom[0]).T
    q = q[..., :2] / q[..., 2:]
    interior = (q[..., 0] > 0) & (q[..., 0] < 31) & (q[..., 1] > 0) & (q[..., 1] < 63)
    assert interior.sum() > 100 and valid[0, 0][interior].all()
    assert torch.allclose(out[0].permute(1, 2, 0)[interior], q[interior], atol=1e-4)
    assert (out[0][:, ~valid[0, 0]] == 0).all()
    assert not valid[0, 0][(q[..., 0] < -0.6) | (q[..., 1] > 63.6)].any()


def test_paste_nearest_keeps_labels_and_infinite_keys():
    cam = scene_camera()
    v = torch.as_tensor(load_body()[0], dtype=torch.float64)[None]
    _, hom = crop_camera(cam, v, width=32, height=64)
    labels = torch.randint(1, 26, (1, 1, 64, 32))
    out, valid = paste(labels, hom, 640, 480, mode="nearest")
    assert out.dtype == torch.int64 and set(out[valid].unique().tolist()) <= set(labels.unique().tolist())
    keys = torch.full((1, 1, 64, 32), float("inf"), dtype=torch.float64)
    keys[..., :32, :] = 2.0
    out, valid = paste(keys, hom, 640, 480, mode="nearest")
    assert not out.isnan().any() and out.isinf().any() and (out[valid] == 2.0).any()

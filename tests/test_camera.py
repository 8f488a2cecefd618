"""neural.camera: round trips, known orientations, resizing against bilinear upsampling, gradients, and the crop
camera checked by rendering part maps through it and pasting them back into the scene frame."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from neural.camera import Camera, crop_camera, intrinsics_from_fov, paste
from neural.raster import part_map, rasterize

FREE_BODY = Path(__file__).resolve().parents[1] / "neural" / "assets" / "free_body.npz"


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
def _capsule(a, b, r, rings=10, segments=16):
    """Closed capsule mesh between points a and b (numpy (3,)), radius r: vertices (V, 3), faces (F, 3)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    axis = b - a
    length = np.linalg.norm(axis)
    u = axis / length
    helper = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 0, 1.0])
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    theta = np.linspace(0, np.pi, 2 * rings + 1)[1:-1]                             # pole to pole
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    verts = []
    for i, t in enumerate(theta):
        h = -r * np.cos(t) + (0.0 if i < rings else length)                       # split between hemispheres
        ring = np.sin(t) * r * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)
        verts.append(a + h * u + ring)
    verts = np.concatenate(verts + [a[None] - r * u, b[None] + r * u])
    n = len(theta)
    faces = []
    for i in range(n - 1):
        for j in range(segments):
            p, q = i * segments + j, i * segments + (j + 1) % segments
            faces += [[p, q, p + segments], [q, q + segments, p + segments]]
    bottom, top = n * segments, n * segments + 1
    for j in range(segments):
        faces += [[bottom, (j + 1) % segments, j]]
        faces += [[top, (n - 1) * segments + j, (n - 1) * segments + (j + 1) % segments]]
    return verts, np.asarray(faces)


def synthetic_body():
    """A 1.75 m person of capsules in the body frame (Y up, facing +Z): vertices (V, 3), faces, parts (V,)."""
    limbs = [((0, 0.95, 0), (0, 1.45, 0), 0.16), ((0, 1.55, 0), (0, 1.62, 0), 0.1),
             ((0.2, 1.42, 0), (0.45, 1.2, 0.05), 0.05), ((0.45, 1.2, 0.05), (0.6, 0.95, 0.2), 0.045),
             ((-0.2, 1.42, 0), (-0.45, 1.2, 0.05), 0.05), ((-0.45, 1.2, 0.05), (-0.6, 0.95, 0.2), 0.045),
             ((0.1, 0.9, 0), (0.12, 0.5, 0.05), 0.07), ((0.12, 0.5, 0.05), (0.12, 0.08, 0), 0.055),
             ((-0.1, 0.9, 0), (-0.15, 0.5, -0.05), 0.07), ((-0.15, 0.5, -0.05), (-0.15, 0.08, -0.1), 0.055)]
    verts, faces, parts, offset = [], [], [], 0
    for label, (a, b, r) in enumerate(limbs):
        v, f = _capsule(a, b, r)
        verts.append(v)
        faces.append(f + offset)
        parts.append(np.full(len(v), label + 2))
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(parts)


def load_body():
    if FREE_BODY.exists():
        data = np.load(FREE_BODY)
        return data["v_template"], data["f"], data["weights"].argmax(1) + 2, "free body"
    v, f, p = synthetic_body()
    return v, f, p, "synthetic capsules"


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


@pytest.mark.parametrize("where", ["off-centre", "near", "far"])
def test_crop_render_pasted_back_matches_direct_render(where):
    """Part maps rendered through the crop camera and pasted into the 640×480 scene frame equal the direct render:
    on ≥ 99% of body pixels with a 512×1024 crop (2.7–9× the body's projected resolution, so nearest resampling
    moves label boundaries by ≤ 0.2 px), and everywhere except next to a label boundary with a 128×256 crop (about
    the projected resolution, as the paper-256 generator would render it)."""
    verts, faces, parts, _ = load_body()
    cam = scene_camera()
    x, y, z, yaw = {"off-centre": (1.6, -0.3, 0.5, 30.0), "near": (-0.2, -0.8, 2.6, -60.0),
                    "far": (-1.5, 0.0, -6.0, 120.0)}[where]
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    rot = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    v = (torch.as_tensor(verts, dtype=torch.float64) @ rot.T + torch.tensor([x, y, z], dtype=torch.float64))[None]
    faces, parts = torch.as_tensor(faces, dtype=torch.int64), torch.as_tensor(parts, dtype=torch.int64)

    direct = part_map(rasterize(v, faces, cam), faces, parts)[0]
    edges = _label_edges(direct)
    for width, min_scale in ((512, 2.5), (128, 0.6)):
        crop, hom = crop_camera(cam, v, width=width, height=2 * width, margin=0.1)
        assert float(crop.K[0, 1, 1] / cam.K[0, 1, 1]) > min_scale                  # crop pixels per scene pixel
        crop_parts = part_map(rasterize(v, faces, crop), faces, parts)
        pasted, valid = paste(crop_parts[:, None], hom, 640, 480, mode="nearest")
        pasted = torch.where(valid[0, 0], pasted[0, 0], torch.ones_like(pasted[0, 0]))
        body = (direct != 1) | (pasted != 1)
        assert body.sum() > 1000
        wrong = direct != pasted
        assert not (wrong & ~edges).any(), f"{where}: labels differ away from any label boundary"
        if width == 512:
            agree = 1 - wrong[body].double().mean()
            assert agree >= 0.99, f"{where}: {agree:.4f} of {int(body.sum())} body pixels agree"


def test_crop_camera_centres_and_frames_the_body():
    verts, faces, parts, _ = load_body()
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


def test_crop_camera_rejects_a_camera_inside_the_body():
    verts, _, _, _ = load_body()
    v = torch.as_tensor(verts, dtype=torch.float64)[None]
    cam = Camera.look_at((0.0, 1.2, 0.0), (0.0, 1.2, 1.0), fov_y_deg=45, width=64, height=48, dtype=torch.float64)
    with pytest.raises(ValueError, match="inside the body"):
        crop_camera(cam, v, width=64, height=128)


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

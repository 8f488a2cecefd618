"""neural.raster against a brute-force per-pixel ray–triangle reference (Möller–Trumbore), fill-rule and
near-plane cases, batching, chunking, part maps, and CUDA agreement."""
import pytest
import torch

from neural.camera import Camera
from neural.raster import Fragments, interpolate, part_map, rasterize


def random_mesh(seed: int, faces: int = 40, dtype=torch.float64):
    """A soup of random triangles (some much bigger than the image) 2–5 m in front of a camera at the origin."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(faces, 1, 3, generator=g, dtype=dtype) * torch.tensor([2.0, 2.0, 3.0], dtype=dtype) \
        + torch.tensor([-1.0, -1.0, 2.0], dtype=dtype)
    size = torch.where(torch.rand(faces, 1, 1, generator=g, dtype=dtype) < 0.2, 3.0, 0.5)
    corners = centres + size * (torch.rand(faces, 3, 3, generator=g, dtype=dtype) - 0.5)
    corners[..., 2] = corners[..., 2].clamp(min=1.0)
    return corners.reshape(1, -1, 3), torch.arange(3 * faces).reshape(faces, 3)


def brute_force(vertices, faces, camera):
    """Nearest ray–triangle hit per pixel (Möller–Trumbore): face id, barycentrics, camera z, and a mask of pixels
    whose answer is ambiguous (ray within 1e-7 of a triangle edge, or two hits within 1e-7 in depth)."""
    origins, dirs = camera.rays()                                                    # (1, N, 3)
    o, d = origins[0], dirs[0]
    tri = vertices[0][faces]                                                         # (F, 3, 3)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    pvec = torch.linalg.cross(d[:, None, :], e2[None], dim=-1)                       # (N, F, 3)
    det = (e1[None] * pvec).sum(-1)
    tvec = o[:, None, :] - tri[None, :, 0]
    u = (tvec * pvec).sum(-1) / det
    qvec = torch.linalg.cross(tvec, e1[None].expand_as(tvec), dim=-1)
    v = (d[:, None, :] * qvec).sum(-1) / det
    t = (e2[None] * qvec).sum(-1) / det
    w0 = 1 - u - v
    eps = 1e-7
    hit = (u >= 0) & (v >= 0) & (w0 >= 0) & (t > 0)
    near_edge = ((u.abs() < eps) | (v.abs() < eps) | (w0.abs() < eps)) & (u > -eps) & (v > -eps) & (w0 > -eps)
    z_axis = camera.world_to_camera[0, 2, :3]
    z = torch.where(hit, t * (d @ z_axis)[:, None], torch.full_like(t, float("inf")))
    zs, order = z.sort(dim=1)
    face = torch.where(torch.isfinite(zs[:, 0]), order[:, 0], -1)
    tie = torch.isfinite(zs[:, 1]) & ((zs[:, 1] - zs[:, 0]) < eps)
    ambiguous = near_edge.any(1) | tie
    idx = order[:, :1]
    bary = torch.stack([w0.gather(1, idx), u.gather(1, idx), v.gather(1, idx)], -1)[:, 0]
    H, W = camera.height, camera.width
    return face.reshape(H, W), bary.reshape(H, W, 3), zs[:, 0].reshape(H, W), ambiguous.reshape(H, W)


def small_camera(dtype=torch.float64, width=40, height=32):
    K = torch.tensor([[30.0, 0.0, 19.3], [0.0, 31.0, 15.6], [0.0, 0.0, 1.0]], dtype=dtype)
    return Camera.look_at((0.1, -0.2, 0.0), (0.0, 0.0, 3.0), (0.0, -1.0, 0.0), K=K, width=width, height=height,
                          dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_ray_casting(seed, dtype):
    verts, faces = random_mesh(seed, dtype=torch.float64)
    cam = small_camera(torch.float64)
    ref_face, ref_bary, ref_z, ambiguous = brute_force(verts, faces, cam)
    frags = rasterize(verts.to(dtype), faces, cam.to(dtype=dtype), chunk_pixels=97)
    ok = ~ambiguous
    assert ok.float().mean() > 0.9 and (ref_face[ok] >= 0).sum() > 150 and (ref_face[ok] < 0).sum() > 50
    assert torch.equal(frags.face_ids[0][ok], ref_face[ok])
    hit = ok & (ref_face >= 0)
    assert torch.allclose(frags.depth[0][hit].double(), ref_z[hit], atol=1e-4, rtol=0)
    assert torch.allclose(frags.bary[0][hit].double(), ref_bary[hit], atol=1e-4, rtol=0)
    assert torch.isinf(frags.depth[0][ok & (ref_face < 0)]).all()
    assert (frags.bary[0][~frags.mask[0]] == 0).all()


def exact_camera(width=16, height=12):
    """Identity pose, f = 64 and principal point 0: a point (x, y, 1) lands exactly on pixel (64x, 64y)."""
    K = torch.tensor([[64.0, 0, 0], [0, 64.0, 0], [0, 0, 1]], dtype=torch.float64)[None]
    return Camera(K=K, world_to_camera=torch.eye(4, dtype=torch.float64)[None], width=width, height=height)


def pixels_to_world(xy):
    xy = torch.as_tensor(xy, dtype=torch.float64)
    return torch.cat([xy / 64.0, torch.ones_like(xy[:, :1])], dim=1)[None]


def test_top_left_rule_covers_each_pixel_centre_once():
    """A quad with corners on pixel centres (2..10) × (3..8) covers exactly x in [2, 10), y in [3, 8) under the
    top-left rule, for both diagonals and both windings; pixel centres on the shared diagonal go to one face."""
    cam = exact_camera()
    verts = pixels_to_world([[2, 3], [10, 3], [10, 8], [2, 8]])
    expected = torch.zeros(12, 16, dtype=torch.bool)
    expected[3:8, 2:10] = True
    for faces in ([[0, 1, 2], [0, 2, 3]], [[0, 2, 1], [0, 3, 2]], [[0, 1, 3], [1, 2, 3]], [[1, 0, 3], [1, 3, 2]]):
        frags = rasterize(verts, torch.tensor(faces), cam)
        assert torch.equal(frags.mask[0], expected), faces


def test_fan_around_a_pixel_centre_has_no_holes():
    """Eight triangles meeting at a vertex placed exactly on a pixel centre, edges through pixel centres: every
    pixel centre inside the octagon is covered, including the shared vertex."""
    cam = exact_camera(24, 24)
    ring = [[12, 4], [18, 6], [20, 12], [18, 18], [12, 20], [6, 18], [4, 12], [6, 6]]
    verts = pixels_to_world([[12, 12]] + ring)
    faces = torch.tensor([[0, 1 + i, 1 + (i + 1) % 8] for i in range(8)])
    frags = rasterize(verts, faces, cam)
    assert frags.face_ids[0, 12, 12] >= 0
    assert frags.face_ids[0, 12, 13] >= 0 and frags.face_ids[0, 11, 12] >= 0 and frags.face_ids[0, 12, 11] >= 0
    inner = frags.mask[0, 7:18, 7:18]
    assert inner.all()


def test_equal_depth_goes_to_lower_face_index_and_nearer_face_wins():
    cam = exact_camera()
    tri = pixels_to_world([[1, 1], [14, 1], [1, 10]])
    nearer = tri.clone()
    nearer[..., :] *= 0.5                                                            # same image, half the depth
    verts = torch.cat([tri, tri, nearer], dim=1)
    frags = rasterize(verts, torch.tensor([[0, 1, 2], [3, 4, 5]]), cam)
    assert set(frags.face_ids[frags.mask].tolist()) == {0}
    frags = rasterize(verts, torch.tensor([[3, 4, 5], [0, 1, 2], [6, 7, 8]]), cam)
    assert set(frags.face_ids[frags.mask].tolist()) == {2}
    assert torch.allclose(frags.depth[frags.mask], torch.tensor(0.5, dtype=torch.float64))


def test_triangles_behind_the_camera_are_culled():
    cam = exact_camera()
    front = pixels_to_world([[1, 1], [14, 1], [1, 10]])
    crossing = front.clone()
    crossing[0, 2, 2] = -1.0                                                         # one vertex behind the camera
    verts = torch.cat([front, crossing], dim=1)
    frags = rasterize(verts, torch.tensor([[3, 4, 5], [0, 1, 2]]), cam)
    assert set(frags.face_ids[frags.mask].tolist()) == {1}
    frags = rasterize(crossing, torch.tensor([[0, 1, 2]]), cam)
    assert not frags.mask.any()


def test_batch_and_chunking_agree_with_single_runs():
    verts_a, faces = random_mesh(3, dtype=torch.float32)
    verts_b, _ = random_mesh(4, dtype=torch.float32)
    cam_a = small_camera(torch.float32)
    cam_b = Camera.look_at((0.5, 0.0, -0.5), (0.0, 0.0, 3.0), (0.0, -1.0, 0.0), K=cam_a.K, width=40, height=32)
    cams = Camera(K=torch.cat([cam_a.K, cam_b.K]), world_to_camera=torch.cat([cam_a.world_to_camera,
                  cam_b.world_to_camera]), width=40, height=32)
    both = rasterize(torch.cat([verts_a, verts_b]), faces, cams, chunk_pixels=50)
    for i, (v, c) in enumerate([(verts_a, cam_a), (verts_b, cam_b)]):
        one = rasterize(v, faces, c)
        assert torch.equal(both.face_ids[i], one.face_ids[0])
        assert torch.equal(both.depth[i], one.depth[0])
        assert torch.allclose(both.bary[i], one.bary[0])


def test_interpolated_positions_project_onto_their_pixels():
    verts, faces = random_mesh(5)
    cam = small_camera()
    frags = rasterize(verts, faces, cam)
    points = interpolate(frags, faces, verts)                                        # (1, H, W, 3)
    xy, z = cam.project(points[frags.mask][None])
    pix = cam.pixel_grid().reshape(32, 40, 2)[frags.mask[0]]
    assert torch.allclose(xy[0], pix, atol=1e-8)
    assert torch.allclose(z[0], frags.depth[frags.mask], atol=1e-10)


def test_part_map_uses_the_nearest_vertex_label():
    cam = exact_camera()
    verts = pixels_to_world([[0, 0], [15, 0], [0, 11], [15, 11]])
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    labels = part_map(rasterize(verts, faces, cam), faces, torch.tensor([2, 3, 4, 5]))
    assert labels[0, 0, 0] == 2 and labels[0, 0, 14] == 3 and labels[0, 10, 0] == 4 and labels[0, 10, 14] == 5
    assert labels[0, 11, 15] == 1                                                    # top-left rule: last row empty
    assert set(labels.unique().tolist()) == {1, 2, 3, 4, 5}


def test_empty_and_degenerate_input():
    cam = exact_camera()
    frags = rasterize(torch.zeros(1, 0, 3, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.int64), cam)
    assert isinstance(frags, Fragments) and not frags.mask.any() and torch.isinf(frags.depth).all()
    line = pixels_to_world([[1, 1], [5, 5], [9, 9]])                                 # zero area
    assert not rasterize(line, torch.tensor([[0, 1, 2]]), cam).mask.any()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    verts, faces = random_mesh(6, faces=200, dtype=torch.float32)
    cam = small_camera(torch.float32, width=96, height=80)
    cpu = rasterize(verts, faces, cam)
    gpu = rasterize(verts.cuda(), faces.cuda(), cam.to("cuda"), chunk_pixels=300)
    assert gpu.face_ids.is_cuda
    same = (gpu.face_ids.cpu() == cpu.face_ids).float().mean()
    assert same > 0.999
    both = cpu.mask & (gpu.face_ids.cpu() == cpu.face_ids)
    assert torch.allclose(gpu.depth.cpu()[both], cpu.depth[both], atol=1e-4)
    assert torch.allclose(gpu.bary.cpu()[both], cpu.bary[both], atol=1e-4)


def test_winding_number_is_one_inside_the_free_body_and_zero_outside():
    from neural.body import BodyModel, free_body_path
    from neural.raster import winding_number

    with torch.no_grad():
        posed = BodyModel.load(free_body_path()).to(dtype=torch.float64)()
    v, J = posed.vertices, posed.joints[0]
    inside = torch.stack([J[0], J[3], J[6], J[9], 0.5 * (J[1] + J[4])])[None]      # pelvis, spine, a thigh
    lo, hi = v[0].amin(0), v[0].amax(0)
    outside = torch.stack([J[6] + torch.tensor([0.0, 0.0, 0.6], dtype=v.dtype), hi + 0.05, lo - 0.05,
                           0.5 * (J[1] + J[2]) + torch.tensor([0.0, -0.45, 0.0], dtype=v.dtype)])[None]  # between the knees
    assert torch.allclose(winding_number(inside, v, posed.faces).abs(), torch.ones(1, 5, dtype=v.dtype), atol=0.02)
    assert torch.allclose(winding_number(outside, v, posed.faces), torch.zeros(1, 4, dtype=v.dtype), atol=0.02)

"""3D pose mapping network (docs/architecture.md §Pose features; docs/official_conventions.md §Forward pass): geo
features and the rendered pose map against the official fixture, the generator frame, inverse LBS, fast == naive, ranges
and determinism."""

import dataclasses
import itertools
import types

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import official_fixture
import pose_fixture
from tiny_body import box_body_arrays
from neural.body import BodyModel
from neural.camera import Camera
from neural.config import PRESETS
from neural.pose_mapping import PoseCondition, PoseMappingNetwork, canonical_frame, condition, geo_features
from neural.raster import interpolate, rasterize
from neural.skeleton import PARENTS

RX_PI = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
_REST_JOINTS = np.array([
    (0, 0, 0), (0.07, -0.08, 0), (-0.07, -0.08, 0), (0, 0.1, -0.02), (0.1, -0.45, 0), (-0.1, -0.45, 0),
    (0, 0.24, 0), (0.1, -0.85, -0.03), (-0.1, -0.85, -0.03), (0, 0.3, 0.02), (0.11, -0.92, 0.09),
    (-0.11, -0.92, 0.09), (0, 0.5, -0.02), (0.07, 0.42, -0.01), (-0.07, 0.42, -0.01), (0, 0.58, 0.03),
    (0.17, 0.45, -0.02), (-0.17, 0.45, -0.02), (0.42, 0.45, -0.04), (-0.42, 0.45, -0.04), (0.66, 0.45, -0.04),
    (-0.66, 0.45, -0.04), (0.75, 0.45, -0.05), (-0.75, 0.45, -0.05)]) + (0, 0.3, 0)


def _body_model(*, soft: bool) -> BodyModel:
    """A small SMPL-format body: 10 surface points around each bone plus one marker vertex per joint (the joint
    regressor picks the markers). Rigid (one-hot) or soft skinning; non-zero pose blend shapes."""
    rng = np.random.default_rng(0)
    children = {k: [c for c in range(24) if PARENTS[c] == k] for k in range(24)}
    surface, owner = [], []
    for k in range(24):
        end = _REST_JOINTS[children[k][0]] if children[k] else _REST_JOINTS[k] + (0, 0.08, 0)
        s = rng.uniform(0, 1, (10, 1))
        surface.append(_REST_JOINTS[k] + s * (end - _REST_JOINTS[k]) + rng.normal(0, 0.04, (10, 3)))
        owner += [k] * 10
    v_template = np.concatenate([_REST_JOINTS, *surface])
    owner = np.array(list(range(24)) + owner)
    weights = np.eye(24)[owner]
    if soft:
        parent = np.array([max(PARENTS[k], 0) for k in owner])
        weights = 0.6 * weights + 0.4 * np.eye(24)[parent]
    V = len(v_template)
    J_regressor = np.zeros((24, V))
    J_regressor[np.arange(24), np.arange(24)] = 1
    shapedirs = np.zeros((V, 3, 2))
    shapedirs[:, 1, 0] = 0.05 * v_template[:, 1]
    posedirs = rng.normal(0, 1e-3, (V, 3, 207))
    posedirs[:24] = 0  # the markers stay on the joints
    arrays = {"v_template": v_template, "f": np.array([[24, 25, 26]]), "weights": weights,
              "J_regressor": J_regressor, "kintree_table": np.array([[-1, *PARENTS[1:]], range(24)]),
              "shapedirs": shapedirs, "posedirs": posedirs}
    return BodyModel(arrays=arrays)


def _pose(B: int, seed: int, *, root: bool = True) -> torch.Tensor:
    pose = torch.randn(B, 24, 3, generator=torch.Generator().manual_seed(seed)) * 0.3
    if not root:
        pose[:, 0] = 0
    return pose


def _front_camera(B: int, width: int = 4, height: int = 8, distance: float = 3.0) -> Camera:
    """Generator frame: the body stands y down facing −z; the camera looks at its front, head at the top."""
    cam = Camera.look_at((0.0, -0.1, -distance), (0.0, -0.1, 0.0), (0.0, -1.0, 0.0), fov_y_deg=45.0, width=width,
                         height=height)
    return Camera(K=cam.K.expand(B, 3, 3).clone(), world_to_camera=cam.world_to_camera.expand(B, 4, 4).clone(),
                  width=width, height=height)


@pytest.fixture(scope="module")
def fx():
    return official_fixture.load()


@pytest.mark.parametrize("fast", [True, False])
def test_official_geo_features(fx, fast):
    body, points = pose_fixture.body(fx), pose_fixture.tensor(fx, "mid/points")
    legacy = geo_features(points, body, "legacy", fast=fast)
    torch.testing.assert_close(legacy, pose_fixture.tensor(fx, "mid/geo_features"), rtol=0, atol=1e-5)
    default = geo_features(points, body, "default", fast=fast)
    torch.testing.assert_close(default, torch.cat([legacy[..., 24:27], legacy[..., :24], legacy[..., 27:]], -1))


@pytest.mark.parametrize("fast", [True, False])
def test_official_pose_map(fx, fast):
    net = PoseMappingNetwork(official_fixture.CONFIG)
    net.load_state_dict(pose_fixture.pose_state(fx))
    with torch.no_grad():
        out = net(pose_fixture.body(fx), pose_fixture.camera(fx), psi=float(fx["in/truncation_psi"]),
                  jitter=pose_fixture.jitter(fx), last_back=True, fast=fast)
    tol = dict(rtol=0, atol=1e-4)
    torch.testing.assert_close(out.style_map, pose_fixture.tensor(fx, "out/feature_map_lowres"), **tol)
    torch.testing.assert_close(out.rgb * 2 - 1, pose_fixture.tensor(fx, "out/rgbs_render"), **tol)
    torch.testing.assert_close(out.opacity.reshape(2, -1), pose_fixture.tensor(fx, "out/opacity"), **tol)
    torch.testing.assert_close(out.depth.reshape(2, 128, 1), pose_fixture.tensor(fx, "out/depth_raw"), **tol)


def test_canonical_frame_matches_official(fx):
    posed = types.SimpleNamespace(root_rotation=pose_fixture.tensor(fx, "in/full_pose")[:, 0],
                                  transl=torch.zeros(2, 3))
    torch.testing.assert_close(canonical_frame(posed), pose_fixture.tensor(fx, "in/cano_matrices"),
                               rtol=0, atol=1e-6)


def test_condition_is_root_rotation_free_and_translation_invariant():
    model = _body_model(soft=True)
    pose = _pose(3, seed=1)
    posed = model(pose=pose, transl=torch.tensor([[0.0, 0.0, 0.0], [0.4, -0.2, 1.5], [-3.0, 1.0, 0.2]]))
    body, cano = condition(posed)
    # The root's rest → generator transform has rotation Rx(π) whatever the root rotation
    # (docs/architecture.md §Inputs and cameras).
    torch.testing.assert_close(body.transforms[:, 0, :3, :3], RX_PI.expand(3, 3, 3), rtol=0, atol=1e-6)
    # cano is rigid and carries the posed joints to the condition's joints; transl does not matter.
    torch.testing.assert_close(cano[:, :3, :3] @ cano[:, :3, :3].transpose(1, 2), torch.eye(3).expand(3, 3, 3))
    torch.testing.assert_close(body.joints, posed.joints @ cano[:, :3, :3].transpose(1, 2) + cano[:, None, :3, 3])
    untranslated, _ = condition(model(pose=pose))
    for name in ("vertices", "joints", "transforms"):
        torch.testing.assert_close(getattr(body, name), getattr(untranslated, name), rtol=0, atol=2e-6)
    # Vertices are LBS of the shaped T-pose without pose blend shapes (the official loader).
    lbs = torch.einsum("vk,bkij,bvj->bvi", posed.weights, body.transforms[:, :, :3, :3], posed.shaped)
    lbs = lbs + torch.einsum("vk,bki->bvi", posed.weights, body.transforms[:, :, :3, 3])
    torch.testing.assert_close(body.vertices, lbs, rtol=0, atol=1e-6)
    assert not torch.allclose(body.vertices, posed.vertices @ cano[:, :3, :3].transpose(1, 2)
                              + cano[:, None, :3, 3], atol=1e-5)  # the blend shapes really were dropped


@pytest.mark.parametrize("fast", [True, False])
def test_inverse_lbs_carries_posed_vertices_back_to_rest(fast):
    model = _body_model(soft=False)  # rigid skinning: inverse LBS of a posed vertex is exact
    posed = model(betas=torch.tensor([[1.0, 0.0]]), pose=_pose(2, seed=2), transl=torch.tensor([[0.1, 0.2, 0.3]]))
    body, _ = condition(posed)
    geo = geo_features(body.vertices, body, "default", fast=fast)
    rest = posed.shaped
    expected = torch.stack([rest[..., 0] / 2, (rest[..., 1] + 0.2) / 2, rest[..., 2] / 1.3], -1)
    torch.testing.assert_close(geo[..., :3], expected, rtol=0, atol=2e-6)
    t = posed.template.expand_as(rest)
    torch.testing.assert_close(geo[..., 27:30], torch.stack([t[..., 0], t[..., 1] + 0.35, t[..., 2] / 0.2], -1))
    assert torch.equal(geo[..., 30], torch.zeros_like(geo[..., 30]))  # each vertex is its own nearest
    joint_dist = (body.vertices[:, :, None] - body.joints[:, None]).norm(dim=-1) / 2.4
    torch.testing.assert_close(geo[..., 3:27], joint_dist)


def _tiny_setup(seed: int = 0):
    torch.manual_seed(seed)
    net = PoseMappingNetwork(PRESETS["tiny"])
    net.compute_truncation_means(seed=0, n=500)
    with torch.no_grad():  # densities of both signs: empty, partial and opaque rays
        net.field.sigma_layer.weight.mul_(20)
        net.field.sigma_layer.bias.zero_()
    body, _ = condition(_body_model(soft=True)(pose=_pose(2, seed=seed, root=False)))
    return net, body


def test_fast_equals_naive_and_value_ranges():
    net, body = _tiny_setup()
    cam = _front_camera(2)
    with torch.no_grad():
        fast = net(body, cam, psi=0.7, fast=True)
        naive = net(body, cam, psi=0.7, fast=False)
    for name in ("style_map", "rgb", "opacity", "depth"):
        torch.testing.assert_close(getattr(fast, name), getattr(naive, name), rtol=1e-4, atol=1e-4)
    assert fast.style_map.shape == (2, 16, 8, 4) and fast.rgb.shape == (2, 3, 8, 4)
    assert fast.opacity.shape == fast.depth.shape == (2, 1, 8, 4)
    assert ((fast.opacity >= 0) & (fast.opacity <= 1)).all()
    assert ((fast.opacity > 0.05) & (fast.opacity < 0.95)).any()  # the test covers partial transparency
    assert ((fast.rgb >= 0) & (fast.rgb <= 1 + 1e-6)).all()  # Σw·sigmoid + (1 − O) without the last fill
    t_far = 3.0 + PRESETS["tiny"].ray_end + 1e-4
    assert ((fast.depth >= 0) & (fast.depth <= fast.opacity * t_far)).all()
    features = net.features_at(body.vertices, body, psi=0.7)
    assert features.shape == (2, body.vertices.shape[1], 3 + 16 + 1)
    torch.testing.assert_close(features, net.features_at(body.vertices, body, psi=0.7, fast=False),
                               rtol=1e-4, atol=1e-4)


def test_any_resolution_determinism_and_seeded_jitter():
    net, body = _tiny_setup(seed=1)
    cam = _front_camera(2, width=6, height=12)
    with torch.no_grad():
        a, b = net(body, cam), net(body, cam)
        assert a.style_map.shape == (2, 16, 12, 6) and torch.equal(a.style_map, b.style_map)
        j1 = net(body, cam, rng=torch.Generator().manual_seed(3), noise_std=0.5)
        j2 = net(body, cam, rng=torch.Generator().manual_seed(3), noise_std=0.5)
        j3 = net(body, cam, rng=torch.Generator().manual_seed(4), noise_std=0.5)
        filled = net(body, cam, last_back=True)
    assert torch.equal(j1.style_map, j2.style_map) and not torch.equal(j1.style_map, j3.style_map)
    torch.testing.assert_close(filled.opacity, a.opacity)  # reported before the fill


def test_moving_body_and_camera_together_changes_nothing():
    model = _body_model(soft=True)
    pose = _pose(1, seed=4)
    net, _ = _tiny_setup(seed=2)
    maps = []
    for shift in (torch.zeros(3), torch.tensor([0.3, -0.1, 0.5])):
        posed = model(pose=pose, transl=shift[None])
        body, cano = condition(posed)
        cam = Camera.look_at(shift + torch.tensor([0.2, 0.3, 3.0]), shift, (0.0, 1.0, 0.0), fov_y_deg=40.0,
                             width=4, height=8)  # in the body frame
        with torch.no_grad():
            maps.append(net(body, cam.transformed(cano)).style_map)
    torch.testing.assert_close(maps[0], maps[1], rtol=1e-4, atol=1e-4)


def test_gradients_reach_points_and_errors():
    net, body = _tiny_setup()
    points = (body.vertices[:, :20] + 0.01).requires_grad_()
    geo = geo_features(points, body, "legacy")
    geo.sum().backward()
    assert torch.isfinite(points.grad).all() and points.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"PoseCondition.weights must be \(264, 24\)"):
        PoseCondition(vertices=body.vertices, joints=body.joints, transforms=body.transforms,
                      weights=body.weights[:10], template=body.template)
    with pytest.raises(ValueError, match="order must be"):
        geo_features(points, body, "official")
    with pytest.raises(ValueError, match="camera batch 1 != body batch 2"):
        net(body, _front_camera(1))


@pytest.mark.parametrize("n", [1, 2])
def test_surface_readout_reads_the_field_on_the_body(n):
    net, _ = _tiny_setup(seed=3)
    body, _ = condition(BodyModel(arrays=box_body_arrays())(pose=_pose(2, seed=3, root=False)))  # a closed surface
    surface = PoseMappingNetwork(PRESETS["tiny"].replace(readout="surface", readout_subsamples=n))
    surface.load_state_dict(net.state_dict())
    cam = _front_camera(2, width=8, height=16)
    with torch.no_grad():
        volume, out = net(body, cam, psi=0.7), surface(body, cam, psi=0.7)
        naive = surface(body, cam, psi=0.7, fast=False)
        # oracle: each of a pixel's n×n subpixels that meets the body reads the field at its rasterised hit; the
        # others at the pixel ray's t̄ = depth / opacity, over white by its opacity; the pixel is their mean
        O, depth = volume.opacity.flatten(2).transpose(1, 2), volume.depth.flatten(2).transpose(1, 2)  # (B, R, 1)
        origins, directions = cam.rays()
        end = origins + directions * depth / O.clamp_min(1e-6)
        fine = cam.resized(n * 8, n * 16)
        fragments = rasterize(body.vertices, body.faces, fine)
        hits = interpolate(fragments, body.faces, body.vertices)  # (B, 16n, 8n, 3)
        expected = torch.zeros(2, 16 * 8, 3 + 16)
        for y, x in itertools.product(range(16 * n), range(8 * n)):
            pixel = (y // n) * 8 + x // n
            hit = fragments.mask[:, y, x, None]
            point = torch.where(hit, hits[:, y, x], end[:, pixel])
            f = surface.features_at(point[:, None], body, psi=0.7)[:, 0, :-1]
            expected[:, pixel] += torch.where(hit, f, O[:, pixel] * f + (1 - O[:, pixel])) / n**2
    cover = fragments.mask.reshape(2, 16, n, 8, n).float().mean((2, 4))
    assert cover.any() and (cover < 1).any() and ((O > 0.05) & (depth > 0)).any()
    assert n == 1 or ((cover > 0) & (cover < 1)).any()  # pixels the silhouette cuts: hits and misses are mixed
    for name in ("opacity", "depth", "optical_depth"):
        torch.testing.assert_close(getattr(out, name), getattr(volume, name))
    got = torch.cat([out.rgb, out.style_map], dim=1).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(naive.style_map, out.style_map, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="last_back .* volume readout, not 'surface'"):
        surface(body, cam, last_back=True)
    with pytest.raises(ValueError, match="PoseCondition.faces is required"):
        surface(dataclasses.replace(body, faces=None), cam)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_official_pose_map_on_cuda(fx):
    net = PoseMappingNetwork(official_fixture.CONFIG)
    net.load_state_dict(pose_fixture.pose_state(fx))
    body = pose_fixture.body(fx)
    body = PoseCondition(**{name: getattr(body, name).cuda() for name in
                            ("vertices", "joints", "transforms", "weights", "template")})
    with torch.no_grad():
        out = net.cuda()(body, pose_fixture.camera(fx).to("cuda"), psi=float(fx["in/truncation_psi"]),
                         jitter=pose_fixture.jitter(fx).cuda(), last_back=True)
    torch.testing.assert_close(out.style_map.cpu(), pose_fixture.tensor(fx, "out/feature_map_lowres"),
                               rtol=0, atol=1e-4)
    torch.testing.assert_close(out.depth.cpu().reshape(2, 128, 1), pose_fixture.tensor(fx, "out/depth_raw"),
                               rtol=0, atol=1e-4)


def test_autocast_does_not_reach_the_sine_layers():
    net, body = _tiny_setup(seed=3)
    cam = _front_camera(2)
    with torch.no_grad():
        plain = net(body, cam)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = net(body, cam)
    assert mixed.style_map.dtype == torch.float32
    torch.testing.assert_close(mixed.style_map, plain.style_map, rtol=0, atol=1e-6)


def test_a_finer_surface_readout_equals_the_field_rendered_finer_where_the_body_is_seen():
    net, _ = _tiny_setup(seed=3)
    body, _ = condition(BodyModel(arrays=box_body_arrays())(pose=_pose(2, seed=3, root=False)))
    surface = PoseMappingNetwork(PRESETS["tiny"].replace(readout="surface"))
    surface.load_state_dict(net.state_dict())
    cam = _front_camera(2, width=8, height=16)
    k = 3
    with torch.no_grad():
        coarse = surface(body, cam, psi=0.7)
        fine = surface(body, cam, psi=0.7, readout_scale=k)
        full = surface(body, cam.resized(8 * k, 16 * k), psi=0.7)
    hit = rasterize(body.vertices, body.faces, cam.resized(8 * k, 16 * k)).mask[:, None]
    assert fine.style_map.shape == (2, 16, 16 * k, 8 * k) and hit.float().mean() > 0.1 and (~hit).any()
    got, want = torch.cat([fine.rgb, fine.style_map], 1), torch.cat([full.rgb, full.style_map], 1)
    torch.testing.assert_close(got * hit, want * hit, rtol=1e-4, atol=1e-5)  # on the body: the finer rendering
    upsampled = F.interpolate(torch.cat([coarse.rgb, coarse.style_map], 1), scale_factor=k, mode="bilinear",
                              align_corners=False)
    torch.testing.assert_close(got * ~hit, upsampled * ~hit)  # beside it: the model's own map, upsampled
    torch.testing.assert_close(fine.opacity, coarse.opacity)
    with pytest.raises(ValueError, match="surface readout"):
        net(body, cam, readout_scale=2)

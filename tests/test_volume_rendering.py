"""Ray sampling and volume rendering (docs/architecture.md §Ray sampling, §Volume rendering): the official fixture's
sample points and composited maps, and the quadrature's known values."""

import math

import pytest
import torch

import official_fixture
import pose_fixture
from neural.camera import Camera
from neural.volume_rendering import composite, sample_rays


@pytest.fixture(scope="module")
def fx():
    return official_fixture.load()


def test_official_sample_points(fx):
    samples = sample_rays(pose_fixture.camera(fx), num_samples=4, ray_start=-0.5, ray_end=0.55,
                          jitter=pose_fixture.jitter(fx))
    assert samples.points.shape == (2, 128, 4, 3)
    torch.testing.assert_close(samples.points.reshape(2, -1, 3), pose_fixture.tensor(fx, "mid/points"),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(samples.t, pose_fixture.tensor(fx, "mid/z_vals")[..., 0], rtol=0, atol=1e-5)


def test_official_composite_with_last_back(fx):
    field = pose_fixture.tensor(fx, "mid/field_out").reshape(2, 128, 4, 36)
    t = pose_fixture.tensor(fx, "mid/z_vals")[..., 0]
    out = composite(field[..., :-1], field[..., -1], t, last_back=True)
    tol = dict(rtol=0, atol=1e-4)
    torch.testing.assert_close(out.opacity, pose_fixture.tensor(fx, "out/opacity"), **tol)
    torch.testing.assert_close(out.weights, pose_fixture.tensor(fx, "out/weights")[..., 0], **tol)
    torch.testing.assert_close(out.depth, pose_fixture.tensor(fx, "out/depth_raw")[..., 0], **tol)
    maps = out.features.reshape(2, 16, 8, 35).permute(0, 3, 1, 2)
    torch.testing.assert_close(maps[:, 3:], pose_fixture.tensor(fx, "out/feature_map_lowres"), **tol)
    torch.testing.assert_close(maps[:, :3] * 2 - 1, pose_fixture.tensor(fx, "out/rgbs_render"), **tol)


def _camera(width=4, height=6, distance=3.0):
    return Camera.look_at((0.0, 0.0, -distance), (0.0, 0.0, 0.0), (0.0, -1.0, 0.0), fov_y_deg=20.0, width=width,
                          height=height)


def test_bin_centres_by_default_and_seeded_jitter():
    cam = _camera()
    samples = sample_rays(cam, num_samples=5, ray_start=-0.5, ray_end=0.5)
    expected = torch.linspace(-0.5, 0.5, 5) + 3.0  # t0 = camera z of the origin
    torch.testing.assert_close(samples.t, expected.expand(1, 24, 5))
    # Points lie on the rays, at distance t from the camera centre.
    dist = (samples.points - cam.center[:, None, None]).norm(dim=-1)
    torch.testing.assert_close(dist, samples.t)
    a = sample_rays(cam, num_samples=5, ray_start=-0.5, ray_end=0.5, rng=torch.Generator().manual_seed(1))
    b = sample_rays(cam, num_samples=5, ray_start=-0.5, ray_end=0.5, rng=torch.Generator().manual_seed(1))
    c = sample_rays(cam, num_samples=5, ray_start=-0.5, ray_end=0.5, rng=torch.Generator().manual_seed(2))
    assert torch.equal(a.t, b.t) and not torch.equal(a.t, c.t)
    assert ((a.t - samples.t).abs() <= 0.125 + 1e-6).all()  # within ± half a bin of the centres
    with pytest.raises(ValueError, match=r"jitter must be \(B=1, rays=24, samples=5\)"):
        sample_rays(cam, num_samples=5, ray_start=-0.5, ray_end=0.5, jitter=torch.rand(1, 24, 4))


def test_quadrature_known_values():
    t = torch.linspace(1.0, 2.0, 5).expand(2, 3, 5)
    feats = torch.randn(2, 3, 5, 4)
    # Empty space: no weight anywhere, the white background (1) in every channel, depth 0.
    empty = composite(feats, torch.zeros(2, 3, 5), t)
    assert torch.equal(empty.opacity, torch.zeros(2, 3))
    torch.testing.assert_close(empty.features, torch.ones(2, 3, 4))
    # An opaque first sample takes all the weight.
    sigma = torch.zeros(2, 3, 5)
    sigma[..., 0] = 1e4
    solid = composite(feats, sigma, t)
    torch.testing.assert_close(solid.features, feats[..., 0, :])
    torch.testing.assert_close(solid.depth, t[..., 0])
    # Uniform density σ: opacity of the first k bins is 1 − exp(−σ·Δ·k); the last bin's δ = 1e9 makes O = 1.
    uniform = composite(feats, torch.full((2, 3, 5), 0.7), t)
    torch.testing.assert_close(uniform.weights[..., :4].sum(-1), torch.full((2, 3), 1 - math.exp(-0.7)))
    torch.testing.assert_close(uniform.opacity, torch.ones(2, 3))
    # Negative densities are clamped (relu).
    assert torch.equal(composite(feats, -torch.ones(2, 3, 5), t).opacity, torch.zeros(2, 3))


def test_last_back_and_density_noise():
    t = torch.linspace(1.0, 2.0, 4).expand(1, 6, 4)
    feats = torch.rand(1, 6, 4, 3)
    sigma = torch.zeros(1, 6, 4)
    sigma[..., 1] = torch.linspace(0, 3, 6)
    plain, filled = composite(feats, sigma, t), composite(feats, sigma, t, last_back=True)
    torch.testing.assert_close(filled.weights.sum(-1), torch.ones(1, 6))
    assert torch.equal(filled.opacity, plain.opacity)  # opacity is reported before the fill
    # The official inference background: 1 + leftover·f_last on top of the plain composite.
    leftover = (1 - plain.opacity)[..., None]
    torch.testing.assert_close(filled.features, plain.features + leftover * feats[..., -1, :])
    a = composite(feats, sigma, t, noise_std=1.0, rng=torch.Generator().manual_seed(0))
    b = composite(feats, sigma, t, noise_std=1.0, rng=torch.Generator().manual_seed(0))
    assert torch.equal(a.features, b.features) and not torch.equal(a.features, plain.features)
    with pytest.raises(ValueError, match="disagree"):
        composite(feats, sigma[..., :3], t)


def test_optical_depth_is_the_slab_thickness():
    t = torch.tensor([[[1.0, 1.5, 2.0, 2.5]]])
    sigma = torch.tensor([[[0.4, -1.0, 2.0, 0.0]]])  # relu: 0.4, 0, 2, 0
    out = composite(torch.zeros(1, 1, 4, 2), sigma, t)
    assert math.isclose(out.optical_depth.item(), 0.5 * 0.4 + 0.5 * 2.0, rel_tol=1e-6)
    assert math.isclose(1 - math.exp(-out.optical_depth.item()), out.opacity.item(), rel_tol=1e-5)  # σ_last = 0
    sigma[..., -1] = 0.6  # the last interval counts as wide as the one before it (not the infinite δ_last)
    out = composite(torch.zeros(1, 1, 4, 2), sigma, t)
    assert math.isclose(out.optical_depth.item(), 0.5 * (0.4 + 2.0 + 0.6), rel_tol=1e-6)
    assert out.opacity.item() == pytest.approx(1.0)

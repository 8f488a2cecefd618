"""training/metrics/fid.py: the Fréchet distance and KID against independent formulas, the TF resize against known
values, and the shipped Inception end to end (identical sets give 0, a larger shift gives a larger distance)."""

import numpy as np
import pytest
import scipy.linalg
import torch

from training.metrics import fid


def test_frechet_distance_matches_the_diagonal_closed_form():
    # diagonal Gaussians: FID = |μa − μb|² + Σ (√a_i − √b_i)²
    rng = np.random.default_rng(0)
    va, vb = rng.uniform(0.1, 2, 5), rng.uniform(0.1, 2, 5)
    ma, mb = rng.normal(size=5), rng.normal(size=5)
    a = fid.FeatureStats(mean=ma, cov=np.diag(va), count=10)
    b = fid.FeatureStats(mean=mb, cov=np.diag(vb), count=10)
    expected = np.square(ma - mb).sum() + np.square(np.sqrt(va) - np.sqrt(vb)).sum()
    assert fid.frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_on_full_covariances():
    rng = np.random.default_rng(1)
    fa, fb = rng.normal(size=(200, 8)), rng.normal(size=(150, 8)) @ rng.normal(size=(8, 8)) + 0.3
    a, b = fid.FeatureStats.of(fa), fid.FeatureStats.of(fb)
    root = scipy.linalg.sqrtm(a.cov @ b.cov).real
    expected = np.square(a.mean - b.mean).sum() + np.trace(a.cov + b.cov - 2 * root)
    assert fid.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert fid.fid_from_features(fa, fb) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_a_rank_deficient_set_with_itself_is_zero():
    # fewer samples than dimensions (as with any eval under 2048 images): singular covariances
    f = np.random.default_rng(2).normal(size=(6, 64))
    assert abs(fid.fid_from_features(f, f)) < 1e-9
    assert fid.fid_from_features(f, f + 0.5) == pytest.approx(64 * 0.25, rel=1e-9)  # a pure mean shift


def test_sample_space_fid_matches_the_covariance_formula():
    # fewer samples than dimensions: fid_from_features takes the sample-space path; frechet_distance the D×D one
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(9, 40)), 0.5 * rng.normal(size=(12, 40)) + 0.2
    stats = fid.frechet_distance(fid.FeatureStats.of(a), fid.FeatureStats.of(b))
    assert fid.fid_from_features(a, b) == pytest.approx(stats, rel=1e-9)


def test_kid_matches_a_brute_force_unbiased_mmd():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(7, 4)), rng.normal(size=(7, 4)) + 0.4
    k = lambda x, y: (x @ y / 4 + 1) ** 3  # noqa: E731
    m = 7
    within = sum(k(a[i], a[j]) + k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / m**2
    # one subset holding every vector: a permutation of each set, and MMD² does not depend on order
    assert fid.kernel_inception_distance(a, b, subsets=1, subset_size=100) == pytest.approx(within - 2 * cross)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same = fid.kernel_inception_distance(a, b, subsets=20, subset_size=200)
    shifted = fid.kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=200)
    more = fid.kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.02 * shifted and shifted < more


def test_tf_bilinear_resize_samples_at_j_times_in_over_out():
    # a linear ramp is reproduced exactly by bilinear interpolation: output j = j · W / 299, clamped to W − 1
    W = 40
    ramp = torch.arange(W, dtype=torch.float64).expand(1, 1, 8, W)
    out = fid.tf_bilinear_resize(ramp)
    expected = (torch.arange(299, dtype=torch.float64) * W / 299).clamp(max=W - 1)
    assert out.shape == (1, 1, 299, 299)
    assert torch.allclose(out[0, 0, 0], expected, atol=1e-9)


def _pictures(n: int) -> torch.Tensor:
    """n different smooth colour pictures (n, 3, 64, 32) in [-1, 0.4]: room for a brightness shift."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(n, 3, 4, 2, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(64, 32), mode="bilinear") * 1.4 - 1


def test_inception_features_identical_sets_give_zero_and_larger_shifts_larger_distances():
    inception = fid.InceptionFeatures(batch=9)
    images = _pictures(3)
    features = inception(torch.cat([images, images + 0.2, images + 0.6]))
    assert features.shape == (9, fid.FEATURE_DIM) and (features >= 0).all()
    base, small, large = features[:3], features[3:6], features[6:]
    assert fid.fid_from_features(base, base) < 1e-6
    fid_small, fid_large = fid.fid_from_features(base, small), fid.fid_from_features(base, large)
    assert 1.0 < fid_small < fid_large
    kid_same = fid.kernel_inception_distance(base, base, subsets=10)
    kid_small = fid.kernel_inception_distance(base, small, subsets=10)
    kid_large = fid.kernel_inception_distance(base, large, subsets=10)
    # KID is unbiased: for the very same samples it is slightly negative (the cross term keeps k(x_i, x_i))
    assert kid_same < kid_small < kid_large


def test_inception_refuses_a_wrong_image_layout():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fid.InceptionFeatures()(torch.zeros(2, 64, 32, 3))

"""training/losses.py: the class-balanced cross-entropy against hand-computed values, the D/G losses, R1."""

import math

import pytest
import torch
import torch.nn.functional as F

from training import losses


def _logits_from_probs(probs):
    """(N, C) probabilities of N pixels → logits (1, C, 1, N)."""
    return torch.log(torch.tensor(probs, dtype=torch.float64)).T[None, :, None, :]


def test_balanced_cross_entropy_hand_computed():
    # 4 pixels: targets 1, 1, 2, 0. Classes ≥ 1 present: 1 (2 pixels), 2 (1 pixel) → K = 2, N = 4:
    # w1 = 4 / (2·2) = 1, w2 = 4 / (2·1) = 2, w0 = 0.
    probs = [(0.25, 0.5, 0.25), (0.1, 0.8, 0.1), (0.2, 0.2, 0.6), (0.5, 0.25, 0.25)]
    logits = _logits_from_probs(probs)
    target = torch.tensor([[[1, 1, 2, 0]]])
    expected = (1 * -math.log(0.5) + 1 * -math.log(0.8) + 2 * -math.log(0.6) + 0) / 4
    assert math.isclose(losses.balanced_cross_entropy(logits, target).item(), expected, rel_tol=1e-6)


def test_balanced_cross_entropy_counts_over_the_batch():
    # Two images of 2 pixels: image 0 all background, image 1 one part-5 pixel and one background pixel.
    # Over the batch: n1 = 3, n5 = 1, K = 2, N = 4 → w1 = 4/6, w5 = 2.
    logits = torch.randn(2, 26, 1, 2, dtype=torch.float64)
    target = torch.tensor([[[1, 1]], [[5, 1]]])
    ce = F.cross_entropy(logits, target, reduction="none")
    w = torch.tensor([[[4 / 6, 4 / 6]], [[2.0, 4 / 6]]], dtype=torch.float64)
    assert torch.allclose(losses.balanced_cross_entropy(logits, target), (w * ce).mean())


def test_all_fake_target_is_plain_mean_and_fake_loss_agrees():
    logits = torch.randn(2, 26, 3, 2)
    zeros = torch.zeros(2, 3, 2, dtype=torch.int64)
    plain = F.cross_entropy(logits, zeros)
    assert torch.allclose(losses.balanced_cross_entropy(logits, zeros), plain)
    assert torch.allclose(losses.fake_cross_entropy(logits), plain)


def test_discriminator_and_generator_losses():
    real, fake = torch.randn(2, 26, 4, 2), torch.randn(2, 26, 4, 2)
    target = torch.randint(1, 26, (2, 4, 2))
    d = losses.discriminator_loss(real, fake, target, kind="segmentation")
    assert torch.allclose(d, losses.balanced_cross_entropy(real, target) + losses.fake_cross_entropy(fake))
    assert torch.allclose(losses.generator_loss(fake, target, kind="segmentation"),
                          losses.balanced_cross_entropy(fake, target))
    r1, f1 = torch.randn(2, 1, 4, 2), torch.randn(2, 1, 4, 2)
    assert torch.allclose(losses.discriminator_loss(r1, f1, target, kind="binary"),
                          F.softplus(-r1).mean() + F.softplus(f1).mean())
    assert torch.allclose(losses.generator_loss(f1, target, kind="binary"), F.softplus(-f1).mean())
    # a perfect discriminator: real pixels labelled with their parts, fake pixels as class 0
    good_real = F.one_hot(target, 26).permute(0, 3, 1, 2).float() * 20
    good_fake = F.one_hot(torch.zeros_like(target), 26).permute(0, 3, 1, 2).float() * 20
    assert losses.discriminator_loss(good_real, good_fake, target, kind="segmentation") < 1e-6
    assert losses.generator_loss(good_fake, target, kind="segmentation") > 10


def test_r1_penalty_matches_analytic_gradient_and_official_form_is_zero():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 1, 1)
    image = torch.randn(2, 3, 4, 2)
    # binary: score = Σ_pixels w·x + b → ∂score/∂x = w at every pixel → ‖∇‖² = H·W·‖w‖² per image
    expected = 4 * 2 * conv.weight.square().sum()
    assert torch.allclose(losses.r1_penalty(conv, image, kind="binary"), expected)
    # segmentation: the official Σ softmax has zero gradient; ours does not, and R1 is differentiable in D
    seg = torch.nn.Conv2d(3, 26, 1)
    x = image.clone().requires_grad_(True)
    (official,) = torch.autograd.grad(seg(x).softmax(1).sum(), x)
    assert official.abs().max() < 1e-5
    penalty = losses.r1_penalty(seg, image, kind="segmentation")
    assert penalty > 1e-3
    penalty.backward()
    assert seg.weight.grad is not None and seg.weight.grad.abs().sum() > 0


def test_silhouette_loss_is_bce_against_body_coverage():
    labels = torch.ones(1, 4, 4, dtype=torch.int64)  # 1 = background
    labels[0, :2, :2] = 5  # the body covers the top-left style-map pixel fully...
    labels[0, 2, 2] = 7  # ...and a quarter of the bottom-right one
    coverage = torch.tensor([[[[1.0, 0.0], [0.0, 0.25]]]])
    tau = torch.tensor([[[[2.3, 0.2], [0.1, 0.7]]]], requires_grad=True)
    opacity = 1 - torch.exp(-tau)
    expected = -(coverage * opacity.log() + (1 - coverage) * (1 - opacity).log()).mean()
    loss = losses.silhouette_loss(tau, labels)
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    # saturated opacity (τ = 60: O rounds to 1) still has a gradient that pulls background density down
    big = torch.full((1, 1, 2, 2), 60.0, requires_grad=True)
    losses.silhouette_loss(big, labels).backward()
    assert big.grad[0, 0, 0, 1] > 0.2 and abs(big.grad[0, 0, 0, 0]) < 1e-6
    with pytest.raises(ValueError, match="multiples"):
        losses.silhouette_loss(tau, torch.ones(1, 5, 4, dtype=torch.int64))


def test_surface_depth_loss_is_mean_termination_error_in_samples():
    opacity = torch.tensor([[[[0.5, 1.0], [0.8, 0.0]]]])
    depth = torch.tensor([[[[1.5, 2.9], [2.4, 0.0]]]], requires_grad=True)  # Σ w·t: t̄ = 3.0, 2.9, 3.0, –
    surface = torch.tensor([[[[3.1, 3.1], [3.0, 9.0]]]])
    covered = torch.tensor([[[[True, True], [True, False]]]])  # the uncovered pixel's error never counts
    loss = losses.surface_depth_loss(depth, opacity, surface, covered, spacing=0.05)
    assert math.isclose(loss.item(), (0.1 + 0.2 + 0.0) / 0.05 / 3, rel_tol=1e-5)
    loss.backward()  # a termination in front of the surface is pushed back (more depth), one behind it forward
    assert depth.grad[0, 0, 0, 0] < 0 and depth.grad[0, 0, 1, 1] == 0
    none = losses.surface_depth_loss(depth, opacity, surface, torch.zeros_like(covered), spacing=0.05)
    assert none.item() == 0 and none.requires_grad
    with pytest.raises(ValueError, match="one shape"):
        losses.surface_depth_loss(depth, opacity, surface[..., :1], covered, spacing=0.05)


def test_mode_seeking_loss_is_inverse_distance_ratio_over_cells_and_pushes_images_apart():
    image = torch.zeros(2, 3, 2, 2, requires_grad=True)
    other = torch.stack([torch.full((3, 2, 2), 0.5), torch.full((3, 2, 2), -0.1)])
    z, z_other = torch.zeros(2, 4), torch.tensor([[1.0, -1.0, 1.0, -1.0], [2.0, 2.0, 2.0, 2.0]])  # d_z = 1, 2
    loss = losses.mode_seeking_loss(image, other, z, z_other, eps=0.0)
    assert math.isclose(loss.item(), (1 / (0.5 / 1) + 1 / (0.1 / 2)) / 2, rel_tol=1e-6)  # mean of 1 / (d_I / d_z)
    loss.backward()  # descending moves each image away from its pair: image 0 towards −, image 1 towards +
    assert (image.grad[0] > 0).all() and (image.grad[1] < 0).all()
    # only whole cells (H/8 × W/4) count: a pixel checkerboard of ±0.5, zero in every 2×2 cell of a 16×8 image,
    # is no difference at all, a uniform shift of 0.5 is
    checker = ((torch.arange(16)[:, None] + torch.arange(8)) % 2 - 0.5).expand(2, 3, 16, 8)
    flat = torch.zeros(2, 3, 16, 8)
    assert losses.mode_seeking_loss(flat, checker, z, z_other).item() == pytest.approx(1e5)
    assert losses.mode_seeking_loss(flat, flat + 0.5, z, z_other, eps=0.0).item() == pytest.approx((2 + 4) / 2)
    with pytest.raises(ValueError, match="one batch"):
        losses.mode_seeking_loss(image, other[:1], z, z_other)

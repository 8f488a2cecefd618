"""Adversarial losses: OASIS-style class-balanced segmentation loss, R1, and the binary ablation
(docs/architecture.md §Segmentation loss).

Segmentation loss (the paper's): the discriminator labels every pixel of a real image with its part (1 =
background, 2..25 = parts) and every pixel of a generated image as 0 = fake; the generator is trained to make the
discriminator see, at every pixel, the part that its conditioning body puts there. That is what ties the image to
the pose (supp. §2: a binary loss loses pose conditioning, hence the `binary` ablation).

Silhouette (ours, off in the paper presets): binary cross-entropy between the pose field's rendered opacity and
the fraction of each style-map pixel that the conditioning body covers, written in the slab's optical depth. The
paper learns the field's density only through the adversarial loss over 300k steps; a short CPU schedule never gets
there (the field fills its whole slab, so the style map carries little of the pose and the renderer's alpha is
wrong). Supervising the opacity with the body we already rasterise gives the field a body-shaped density within a
few hundred steps.

Surface depth (ours, off in the paper presets): where the body covers a whole style-map pixel, the pose field's
expected ray termination t̄ = Σ w·t / Σ w is pulled to the distance of the body's first surface, in units of the
sample spacing. The silhouette loss alone leaves the density spread through the body's volume (t̄ 6 cm behind the
surface in the 16×8 step-3,000 model), so each style-map pixel mixes field features along a depth range that shifts
as the camera turns. Measured on a 32×16 model at step 2,000: its style map differed between views (at the same
surface point) by 0.79 of its spread over the body, the same field read at the surface itself by 0.29. Penalising
the spread too (E|t − t_surface| instead of |t̄ − t_surface|) trained no better in 3,000 steps.

Mode seeking (ours, after MSGAN, Mao et al. 2019; off in the paper presets): the generator is pushed to make two
latents give different images of the same body from the same camera, 1 / (d_I / d_z + ε) with mean absolute
distances, d_I between the images area-averaged to 8×4 cells. A style map read on the body's surface is a rich
enough condition that the backbone can ignore w (the conditional GAN's mode collapse): the surface-readout model at
9,000 steps drew near-identical outfits for seeds 1 and 2. The step's second image is the discriminator step's fake
(same style map, the other z, no gradient), so the term costs no extra rendering; its gradient pushes the generated
image away from it.

R1: the official penalty differentiates Σ softmax(D(x)) — identically 1 per pixel, so its gradient is zero and the
penalty is a no-op. Ours differentiates a real scalar: Σ log(1 − p_fake) over pixels (segmentation) or Σ logit
(binary), the log-probability that each pixel is real.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossKind = Literal["segmentation", "binary"]


def _wide(x: Tensor) -> Tensor:
    """float16/bfloat16 logits (autocast) → float32, so the losses are computed at full precision."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def balanced_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Class-balanced cross-entropy over a batch (docs/architecture.md §Segmentation loss).

    logits (B, C, H, W); target (B, H, W) int64 in 0..C−1. For the classes c ≥ 1 present in the target, with n_c
    pixels each and K such classes, class c weighs w_c = (B·H·W) / (K·n_c) and class 0 weighs 0, so each present
    class contributes equally however small. Returns the mean over pixels of w_target · CE. A target with no class
    ≥ 1 (all fake) gives the plain mean CE.
    """
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"logits (B, C, H, W) and target (B, H, W) expected; got {tuple(logits.shape)} and "
                         f"{tuple(target.shape)}")
    ce = F.cross_entropy(_wide(logits), target, reduction="none")
    counts = torch.bincount(target.reshape(-1), minlength=logits.shape[1]).to(ce.dtype)
    counts[0] = 0
    present = counts > 0
    num_present = present.sum()
    if num_present == 0:
        return ce.mean()
    weights = torch.where(present, target.numel() / (num_present * counts.clamp_min(1)), torch.zeros_like(counts))
    return (weights[target] * ce).mean()


def fake_cross_entropy(logits: Tensor) -> Tensor:
    """Mean CE of every pixel against class 0 (fake): the discriminator's loss on generated images."""
    return F.cross_entropy(_wide(logits), torch.zeros_like(logits[:, 0], dtype=torch.int64))


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, real_target: Tensor, *, kind: LossKind) -> Tensor:
    """D loss. Segmentation: CE_bal(D(real), parts) + CE(D(fake), 0). Binary: softplus(−D(real)) + softplus(D(fake)),
    means over pixels. real_target (B, H, W) int64 part labels (unused by the binary loss)."""
    if kind == "segmentation":
        return balanced_cross_entropy(real_logits, real_target) + fake_cross_entropy(fake_logits)
    if kind == "binary":
        return F.softplus(-_wide(real_logits)).mean() + F.softplus(_wide(fake_logits)).mean()
    raise ValueError(f"loss kind must be 'segmentation' or 'binary', got {kind!r}")


def generator_loss(fake_logits: Tensor, target: Tensor, *, kind: LossKind) -> Tensor:
    """G loss. Segmentation: CE_bal(D(G(z | body, camera)), target), target (B, H, W) the part map the image should
    show. Binary: the non-saturating softplus(−D(fake)), which ignores the target."""
    if kind == "segmentation":
        return balanced_cross_entropy(fake_logits, target)
    if kind == "binary":
        return F.softplus(-_wide(fake_logits)).mean()
    raise ValueError(f"loss kind must be 'segmentation' or 'binary', got {kind!r}")


def body_coverage(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, 1, h, w) fraction of each style-map pixel that the body covers, from part labels (B, H, W) at full
    resolution (1 = background); size (h, w)."""
    return F.adaptive_avg_pool2d((labels >= 2).float()[:, None], size)


def silhouette_loss(optical_depth: Tensor, labels: Tensor) -> Tensor:
    """Mean BCE(O, coverage) with O = 1 − exp(−τ) written in τ, finite and with a gradient however opaque:
    −c·log(1 − e^−τ) + (1 − c)·τ. optical_depth τ (B, 1, h, w) of the pose field's slab (PoseMap.optical_depth);
    labels (B, H, W) part labels at full resolution (1 = background), H, W multiples of h, w; coverage c = the
    body's area fraction of each style-map pixel."""
    b, _, h, w = optical_depth.shape
    if labels.ndim != 3 or labels.shape[0] != b or labels.shape[1] % h or labels.shape[2] % w:
        raise ValueError(f"labels (B, H, W) with H, W multiples of the style map's {h}×{w} expected; got "
                         f"{tuple(labels.shape)}")
    coverage = body_coverage(labels, (h, w))
    tau = _wide(optical_depth).clamp_min(1e-6)
    return (-coverage * torch.log(-torch.expm1(-tau)) + (1 - coverage) * tau).mean()


def surface_depth_loss(depth: Tensor, opacity: Tensor, surface: Tensor, covered: Tensor, spacing: float) -> Tensor:
    """Mean |t̄ − t_surface| / spacing over covered pixels, t̄ = depth / opacity (the expected termination).

    depth, opacity (B, 1, h, w) of the pose field (PoseMap.depth is Σ w·t); surface (B, 1, h, w) distance along the
    same unit rays to the body's first surface; covered (B, 1, h, w) bool, pixels whose whole area the body covers;
    spacing: the pose field's sample spacing (metres). Zero when no pixel is covered."""
    if not depth.shape == opacity.shape == surface.shape == covered.shape:
        raise ValueError(f"depth, opacity, surface and covered must have one shape (B, 1, h, w); got "
                         f"{tuple(depth.shape)}, {tuple(opacity.shape)}, {tuple(surface.shape)}, {tuple(covered.shape)}")
    if not covered.any():
        return depth.sum() * 0
    termination = _wide(depth)[covered] / _wide(opacity)[covered].clamp_min(1e-3)
    return ((termination - surface[covered]).abs() / spacing).mean()


MODE_SEEKING_GRID = (8, 4)  # cells of H/8 × W/4: about one body part each


def mode_seeking_loss(image: Tensor, other: Tensor, z: Tensor, z_other: Tensor, eps: float = 1e-5) -> Tensor:
    """Mean over the batch of 1 / (d_I / d_z + ε), d_I = mean |image − other| over the images area-averaged to an
    8×4 grid of cells, d_z = mean |z − z_other| per latent. image, other (B, 3, H, W) of the same bodies and cameras;
    z, z_other (B, latent_dim) their latents. The cells make it ask for other colours of whole parts: per pixel, the
    surface-readout model met it with other fine detail and specks while the two demo seeds kept one outfit."""
    if image.shape != other.shape or z.shape != z_other.shape or image.shape[0] != z.shape[0]:
        raise ValueError(f"image/other (B, 3, H, W) and z/z_other (B, D) of one batch expected; got "
                         f"{tuple(image.shape)}, {tuple(other.shape)}, {tuple(z.shape)}, {tuple(z_other.shape)}")
    cells = F.adaptive_avg_pool2d(_wide(image) - _wide(other), MODE_SEEKING_GRID)
    d_image = cells.abs().flatten(1).mean(1)
    d_z = (z - z_other).abs().mean(1)
    return (1 / (d_image / d_z + eps)).mean()


def real_score(logits: Tensor, *, kind: LossKind) -> Tensor:
    """Scalar whose input gradient R1 penalises: Σ over pixels of log(1 − p_fake) = logsumexp(parts, bg) −
    logsumexp(all) (segmentation), or Σ logits (binary)."""
    logits = _wide(logits)
    if kind == "segmentation":
        return (torch.logsumexp(logits[:, 1:], dim=1) - torch.logsumexp(logits, dim=1)).sum()
    return logits.sum()


def r1_penalty(discriminator: nn.Module, real: Tensor, *, kind: LossKind) -> Tensor:
    """Mean over the batch of ‖∂ real_score / ∂ image‖², in float32 (no autocast); differentiable in D.

    real: (B, 3, H, W). The caller scales it by ½·λ and the lazy-regularisation gain."""
    real = real.detach().float().requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        score = real_score(discriminator(real), kind=kind)
    (grad,) = torch.autograd.grad(score, real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()

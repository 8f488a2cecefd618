"""Ray sampling and volume rendering of the pose field (paper §3.2;
docs/architecture.md §Ray sampling, §Volume rendering; docs/official_conventions.md §Forward pass, steps 3 and 6).

The official code samples a slab of fixed depth around the body: S stratified distances t along each *unit* ray
in [t0 + ray_start, t0 + ray_end], where t0 is the camera-frame depth of the generator-frame origin (the official
f/s), and composites with the NeRF quadrature, a white background added to every channel (also the feature
channels of the style map), and at inference the leftover weight moved onto the last sample (`last_back`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .camera import Camera

__all__ = ["RaySamples", "Composite", "sample_rays", "composite"]


@dataclass(frozen=True)
class RaySamples:
    """Samples along the camera's rays, R = height·width rays in row-major pixel order, S samples each.

    points (B, R, S, 3) in the camera's world frame (the generator frame), t (B, R, S) distances along the unit
    rays from the camera centre, origins (B, R, 3), directions (B, R, 3) unit.
    """

    points: Tensor
    t: Tensor
    origins: Tensor
    directions: Tensor


@dataclass(frozen=True)
class Composite:
    """Volume-rendered rays: features (B, R, C) with the white background added, opacity (B, R) = Σ w before
    any last-sample fill, depth (B, R) = Σ w·t (distance along the unit ray), weights (B, R, S) as used."""

    features: Tensor
    opacity: Tensor
    depth: Tensor
    weights: Tensor
    optical_depth: Tensor


def sample_rays(camera: Camera, *, num_samples: int, ray_start: float, ray_end: float, jitter: Tensor | None = None,
                rng: torch.Generator | None = None) -> RaySamples:
    """Stratified samples t_i = t0 + linspace(ray_start, ray_end, S)_i + (u_i − ½)·Δ along every pixel's ray.

    t0 = z of the world origin in the camera frame; Δ the bin width. u: `jitter` (B, R, S) given (reproduces a
    recorded official draw), else uniform draws from `rng` (training), else ½ (bin centres; default).
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2 (stratified bins), got {num_samples}")
    origins, directions = camera.rays()  # (B, R, 3) each
    B, R = directions.shape[:2]
    dtype, device = directions.dtype, directions.device
    t0 = camera.world_to_camera[:, 2, 3]
    t = torch.linspace(ray_start, ray_end, num_samples, dtype=dtype, device=device) + t0[:, None]  # (B, S)
    step = t[:, 1:2] - t[:, 0:1]
    if jitter is not None:
        if jitter.shape != (B, R, num_samples):
            raise ValueError(f"jitter must be (B={B}, rays={R}, samples={num_samples}) uniform draws in [0, 1), "
                             f"got {tuple(jitter.shape)}")
        u = jitter.to(dtype=dtype, device=device)
    elif rng is not None:
        u = torch.rand(B, R, num_samples, generator=rng, device=rng.device).to(dtype=dtype, device=device)
    else:
        u = torch.full((B, R, num_samples), 0.5, dtype=dtype, device=device)
    t = t[:, None, :] + (u - 0.5) * step[:, None, :]
    points = origins[:, :, None, :] + directions[:, :, None, :] * t[..., None]
    return RaySamples(points=points, t=t, origins=origins, directions=directions)


def composite(features: Tensor, sigma: Tensor, t: Tensor, *, last_back: bool = False, noise_std: float = 0.0,
              rng: torch.Generator | None = None) -> Composite:
    """NeRF quadrature with a white background: F = Σ_i w_i f_i + (1 − O) in every channel.

    features (B, R, S, C), sigma (B, R, S) raw densities, t (B, R, S) increasing along each ray.
    δ_i = t_{i+1} − t_i, δ_last = 1e9; α_i = 1 − exp(−δ_i·relu(σ_i + noise)); T_i = Π_{j<i}(1 − α_j + 1e-12);
    w_i = α_i T_i; O = Σ w_i. last_back (the official inference fill) adds 1 − O to the last weight before the
    sums, while the background term keeps the pre-fill O. noise ~ N(0, noise_std²) from `rng` (training).
    optical_depth τ = Σ_i δ'_i·relu(σ_i) with the last interval as wide as the one before it: the slab's own
    thickness, whose gradient does not vanish where O has saturated to 1 (training's silhouette loss).
    """
    if sigma.shape != t.shape or features.shape[:-1] != t.shape:
        raise ValueError(f"features (B, R, S, C), sigma and t (B, R, S) disagree: {tuple(features.shape)}, "
                         f"{tuple(sigma.shape)}, {tuple(t.shape)}")
    delta = torch.cat([t[..., 1:] - t[..., :-1], torch.full_like(t[..., :1], 1e9)], dim=-1)
    if noise_std > 0:
        noise = torch.randn(sigma.shape, generator=rng, device=sigma.device if rng is None
                            else rng.device).to(sigma)
        sigma = sigma + noise * noise_std
    density = torch.relu(sigma)
    alpha = 1 - torch.exp(-delta * density)
    finite = torch.cat([delta[..., :-1], delta[..., -2:-1]], dim=-1)
    optical_depth = (finite * density).sum(-1)
    transmit = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha + 1e-12], dim=-1), dim=-1)
    weights = alpha * transmit[..., :-1]
    opacity = weights.sum(-1)
    if last_back:
        weights = torch.cat([weights[..., :-1], weights[..., -1:] + (1 - opacity)[..., None]], dim=-1)
    rendered = (weights[..., None] * features).sum(-2) + (1 - opacity)[..., None]
    depth = (weights * t).sum(-1)
    return Composite(features=rendered, opacity=opacity, depth=depth, weights=weights, optical_depth=optical_depth)

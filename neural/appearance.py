"""Appearance mapping network z → w and its truncation (docs/architecture.md §Appearance mapping;
docs/official_conventions.md §Forward pass, steps 1–2).

A StyleGAN2 mapping network: the latent z is normalised by its second moment, then 8 equalised-learning-rate FC
layers (7 "trunk" + 1 "superres" in the official code) with lr multiplier 0.01 and lrelu(0.2)·√2 after every layer,
the last included. The official unused `implicit0` branch is not built (the importer drops it).

Parameter layout (official key → ours): `synthesis_mapping_network.trunk{i}` → `layers.{i}` for i = 0..6,
`superres0` → `layers.7`; shapes (out, in) as stored. Buffer `w_avg` (C,) is the truncation mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_GAIN = math.sqrt(2.0)


def sample_latents(seed: int, n: int, latent_dim: int) -> Tensor:
    """z (n, latent_dim) ~ N(0, I), drawn on the CPU from `seed`: the same latents on every device. The one
    seed → z of the project (appearance seeds, truncation means, training sample grids)."""
    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(int(seed)))


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x · rsqrt(mean(x²) + eps) over the last dimension."""
    return x * (x.square().mean(dim=-1, keepdim=True) + eps).rsqrt()


class EqualizedLinear(nn.Module):
    """y = x·(W·lr/√fan_in)ᵀ + b·lr. W is stored ×1/lr (init N(0, 1/lr²)) so that Adam's step size, which is the
    same for every parameter, moves the effective weight lr times slower: StyleGAN2's equalised learning rate."""

    def __init__(self, *, in_features: int, out_features: int, lr_multiplier: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)


class AppearanceMapping(nn.Module):
    """z (B, latent_dim) → w (B, style_dim). `w_avg` must be filled by `compute_truncation_mean` before ψ ≠ 1."""

    def __init__(self, *, latent_dim: int, style_dim: int, num_layers: int = 8, lr_multiplier: float = 0.01) -> None:
        super().__init__()
        dims = [latent_dim] + [style_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualizedLinear(in_features=dims[i], out_features=dims[i + 1], lr_multiplier=lr_multiplier)
            for i in range(num_layers)
        )
        self.latent_dim = latent_dim
        self.style_dim = style_dim
        self.register_buffer("w_avg", torch.zeros(style_dim))

    def forward(self, z: Tensor, *, psi: float = 1.0) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be (B, {self.latent_dim}); got {tuple(z.shape)}")
        x = normalize_2nd_moment(z)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2) * LRELU_GAIN
        return self.truncate(x, psi)

    def truncate(self, w: Tensor, psi: float) -> Tensor:
        """w_avg + ψ(w − w_avg); ψ = 1 is the identity, ψ = 0 gives the mean appearance."""
        if psi == 1.0:
            return w
        return torch.lerp(self.w_avg.to(w.dtype), w, psi)

    @torch.no_grad()
    def compute_truncation_mean(self, *, seed: int = 0, n: int = 10_000) -> Tensor:
        """Fill `w_avg` with the mean w of n latents drawn on the CPU from `seed` (the official code re-draws its
        10,000 latents at every call; a fixed draw makes renders reproducible). Returns the mean (C,)."""
        z = sample_latents(seed, n, self.latent_dim)
        w = self.forward(z.to(self.w_avg.device))
        self.w_avg.copy_(w.mean(dim=0))
        return self.w_avg

"""The networks of the 3D pose mapping network: the FiLM-SIREN pose field and the MLP that makes its frequencies
and phases (paper §3.2; docs/architecture.md §Pose field;
docs/official_conventions.md §Forward pass, steps 1, 2 and 5).

Pose field (official `COORDCONCATSIREN`), width H, per point:
    a = sin(30·L_coord(p·2/side_length)),  g = sin(30·L_mod(geo)),  x = [a, g]
    x = sin(F_i ⊙ L_i(x) + Φ_i) for i < blocks,  F_i = 15·freq_i + 30,  Φ_i = phase_i
    σ = L_sigma(x);  x' = sin(F_last ⊙ L_color_sine([(0, 0, −1), x]) + Φ_last)
    rgb = sigmoid(L_color_linear(x')),  feature = L_feature(x')      →  [rgb (3), feature (Ns), σ (1)]
The view direction is locked to (0, 0, −1) (official `lock_view_dependence`).

Pose MLP (official `neural_field_mapping_network`): z → H → H → H → 2·blocks·H with LeakyReLU(0.2), input
normalised by its second moment; freq = first blocks·H outputs, phase = the rest. The official configs feed it
zeros, so freq and phase are learned constants and the pose field does not depend on z.

Parameter names are the official ones under `field.` and `mlp.` (see `OFFICIAL_PREFIXES`), shapes identical.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .appearance import normalize_2nd_moment

__all__ = ["OFFICIAL_PREFIXES", "PoseMLP", "PoseField", "FoldedField", "GEO_FEATURE_DIM"]

GEO_FEATURE_DIM = 31
SINE_W0 = 30.0  # ω0 of the two sine embeddings
LOCKED_VIEW = (0.0, 0.0, -1.0)
# Official state-dict prefix → ours, relative to the pose mapping network.
OFFICIAL_PREFIXES = {"neural_field_mapping_network.": "mlp.", "neural_field.": "field."}


class PoseMLP(nn.Module):
    """z (B, latent_dim) → freq, phase (B, blocks·H) each. Official inits: Kaiming (leaky 0.2, fan-in), the last
    layer's weight × 0.25; PyTorch default biases."""

    def __init__(self, *, latent_dim: int, hidden_dim: int, blocks: int) -> None:
        super().__init__()
        dims = [latent_dim, hidden_dim, hidden_dim, hidden_dim, 2 * blocks * hidden_dim]
        layers: list[nn.Module] = []
        for i in range(4):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < 3:
                layers.append(nn.LeakyReLU(0.2))
        self.network = nn.Sequential(*layers)  # official keys network.0/2/4/6
        with torch.no_grad():
            for layer in self.network[::2]:
                nn.init.kaiming_normal_(layer.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
            self.network[-1].weight.mul_(0.25)
        self.latent_dim = latent_dim
        self.split = blocks * hidden_dim

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be (B, {self.latent_dim}); got {tuple(z.shape)}")
        out = self.network(normalize_2nd_moment(z))
        return out[:, : self.split], out[:, self.split:]


class SineLayer(nn.Module):
    """sin(ω0·(Wx + b)) with W ~ U(±1/fan_in) (the SIREN first-layer init); official key `<name>.layer`."""

    def __init__(self, *, in_features: int, out_features: int) -> None:
        super().__init__()
        self.layer = nn.Linear(in_features, out_features)
        with torch.no_grad():
            self.layer.weight.uniform_(-1 / in_features, 1 / in_features)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(SINE_W0 * self.layer(x))


class FiLMLayer(nn.Module):
    """sin(F ⊙ (Wx + b) + Φ), F and Φ per image (B, H) against x (B, N, in); official key `<name>.layer`."""

    def __init__(self, *, in_features: int, out_features: int) -> None:
        super().__init__()
        self.layer = nn.Linear(in_features, out_features)
        _frequency_init(self.layer)

    def forward(self, x: Tensor, freq: Tensor, phase: Tensor) -> Tensor:
        return torch.sin(freq[:, None, :] * self.layer(x) + phase[:, None, :])


def _frequency_init(layer: nn.Linear) -> None:
    """pi-GAN's `frequency_init(25)`: W ~ U(±√(6/fan_in)/25), default bias."""
    bound = math.sqrt(6 / layer.in_features) / 25
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)


class PoseField(nn.Module):
    """The FiLM-SIREN pose field. `forward` is the literal (reference) evaluation; `fold` + `FoldedField` give
    the same function with the per-image constants folded into the weights (fast path)."""

    def __init__(self, *, hidden_dim: int, feature_dim: int, blocks: int, side_length: float) -> None:
        super().__init__()
        H = hidden_dim
        self.first_layer_coord = SineLayer(in_features=3, out_features=H)
        self.first_layer_mod = SineLayer(in_features=GEO_FEATURE_DIM, out_features=H)
        self.network = nn.ModuleList(
            FiLMLayer(in_features=2 * H if i == 0 else H, out_features=H) for i in range(blocks))
        self.sigma_layer = nn.Linear(H, 1)
        self.color_layer_sine = FiLMLayer(in_features=H + 3, out_features=H)
        self.color_layer_linear = nn.Linear(H, 3)
        self.feature_layer_linear = nn.Linear(H, feature_dim)
        for layer in (self.sigma_layer, self.color_layer_linear, self.feature_layer_linear):
            _frequency_init(layer)
        self.hidden_dim = H
        self.coord_scale = 2.0 / side_length

    def frequencies(self, freq: Tensor) -> Tensor:
        """The mapping network's raw freq (B, blocks·H) → FiLM frequencies F = 15·freq + 30."""
        return freq * 15 + 30

    def forward(self, points: Tensor, geo: Tensor, freq: Tensor, phase: Tensor) -> Tensor:
        """points (B, N, 3) generator frame, geo (B, N, 31), freq/phase (B, blocks·H) raw MLP outputs
        → (B, N, 3 + Ns + 1) = [rgb in (0, 1), feature, σ raw density]."""
        H = self.hidden_dim
        F_all = self.frequencies(freq)
        x = torch.cat([self.first_layer_coord(points * self.coord_scale), self.first_layer_mod(geo)], dim=-1)
        for i, layer in enumerate(self.network):
            x = layer(x, F_all[:, i * H:(i + 1) * H], phase[:, i * H:(i + 1) * H])
        sigma = self.sigma_layer(x)
        view = x.new_tensor(LOCKED_VIEW).expand(*x.shape[:-1], 3)
        last = len(self.network) - 1
        x = self.color_layer_sine(torch.cat([view, x], dim=-1), F_all[:, last * H:], phase[:, last * H:])
        rgb = torch.sigmoid(self.color_layer_linear(x))
        return torch.cat([rgb, self.feature_layer_linear(x), sigma], dim=-1)

    def fold(self, freq: Tensor, phase: Tensor) -> FoldedField:
        """Fold one image's constants (freq, phase (blocks·H,) or (1, blocks·H)) into the weights: the ω0 = 30 and
        coordinate scale into the sine embeddings, F into each FiLM weight and F·b + Φ into its bias, the locked
        view direction into the colour layer's bias, and the rgb and feature heads into one matrix. Differentiable,
        so training can use the folded field too."""
        H = self.hidden_dim
        F_all, phase = self.frequencies(freq.reshape(-1)), phase.reshape(-1)
        pairs = [((SINE_W0 * self.coord_scale) * self.first_layer_coord.layer.weight,
                  SINE_W0 * self.first_layer_coord.layer.bias),
                 (SINE_W0 * self.first_layer_mod.layer.weight, SINE_W0 * self.first_layer_mod.layer.bias)]
        for i, film in enumerate(self.network):
            f, p = F_all[i * H:(i + 1) * H], phase[i * H:(i + 1) * H]
            pairs.append((f[:, None] * film.layer.weight, f * film.layer.bias + p))
        f, p = F_all[-H:], phase[-H:]
        color = self.color_layer_sine.layer
        view_bias = color.weight[:, :3] @ color.weight.new_tensor(LOCKED_VIEW) + color.bias
        pairs.append((f[:, None] * color.weight[:, 3:], f * view_bias + p))
        pairs.append((self.sigma_layer.weight, self.sigma_layer.bias))
        pairs.append((torch.cat([self.color_layer_linear.weight, self.feature_layer_linear.weight]),
                      torch.cat([self.color_layer_linear.bias, self.feature_layer_linear.bias])))
        # Transposed once here, so every chunk runs plain (N, in) @ (in, out) matmuls.
        return FoldedField(layers=[(w.T.contiguous(), b.contiguous()) for w, b in pairs])


class FoldedField:
    """The pose field of one image with its constants folded in: points (N, 3), geo (N, 31) → (N, 3 + Ns + 1).

    Same function as `PoseField.forward` up to float rounding (the products are associated differently)."""

    def __init__(self, *, layers: list[tuple[Tensor, Tensor]]) -> None:
        self.layers = layers

    def __call__(self, points: Tensor, geo: Tensor) -> Tensor:
        (w_coord, b_coord), (w_mod, b_mod), *films, (w_color, b_color), (w_sigma, b_sigma), (w_out, b_out) = \
            self.layers
        x = torch.cat([torch.addmm(b_coord, points, w_coord).sin(), torch.addmm(b_mod, geo, w_mod).sin()], dim=-1)
        for w, b in films:
            x = torch.addmm(b, x, w).sin()
        sigma = torch.addmm(b_sigma, x, w_sigma)
        out = torch.addmm(b_out, torch.addmm(b_color, x, w_color).sin(), w_out)
        return torch.cat([out[:, :3].sigmoid(), out[:, 3:], sigma], dim=-1)

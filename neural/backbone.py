"""The pixel-wise independent backbone (docs/architecture.md §Backbone; docs/official_conventions.md §Forward pass,
steps 7–9).

Fourier features of the pixel coordinates (sin of a 1×1 conv 2→C) pass through 9 residual blocks of
spatially-adaptive normalisation (SPADE/"SABN": BN(x)·(1 + γ(s)) + β(s)) and spectral-normed 1×1 convs; ToRGB of
blocks 3–8 are summed (skip-RGB). The pose style map (bilinearly upsampled to full resolution) is the style of the
`pose_blocks`, alone (`isolated`) or plus w (`mixed`); the other blocks get w broadcast to every pixel.

Three paths compute the same function:
- naive (`fast=False`): the faithful reference; styles broadcast per pixel, NCHW convs, BN and spectral norm through
  their modules.
- rows (`fast=True` in train mode, or with instance norm): the same parameters and norm modules (BN batch
  statistics, one spectral-norm power iteration per conv; differentiable), but activations are (B·H·W, C) pixel
  rows, 1×1 convs are matmuls (torch's NCHW 1×1 conv2d is several times slower on CPU), the Fourier input is
  computed once for all images, and the γ/β of blocks with a spatially-constant style once per image.
- fast (`fast=True` in eval mode): BN and 1/σ folded, per-image γ/β folded into one per-channel affine, 1×1 convs
  as (pixels, C) @ (C, C) matmuls in channels-last, over any subset of pixels (`pixels`), in tiles.

Parameter layout (official → ours, shapes equal): `synthesis_input.network.0` → `coord_input`;
`synthesis_network.network.m3d_{i}` → `blocks.{i}` with `spade_{k}.first_norm` → `spade_{k}.norm`,
`spade_{k}.mlp_shared.0` → `spade_{k}.shared`, `mlp_gamma` → `gamma`, `mlp_beta` → `beta`, `conv_{k}` (weight_orig,
weight_u, weight_v, bias) kept; `synthesis_network.to_rgbs.m3d_{i}.linear` → `to_rgb.{i}` for i ≥ 3 only (the
official ToRGB 0–2 are never used; the importer drops them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.spectral_norm import SpectralNorm

from .config import GeneratorConfig

FIRST_RGB_BLOCK = 3


def pixel_coordinates(index: Tensor, size: int, scale: int = 1) -> Tensor:
    """The Fourier input coordinate of pixel `index` (int, any shape) along an axis of `size` model pixels rendered
    `scale` times finer. At scale 1 this is linspace(−1, 1, size)[index]: the model's pixel centres span [−1, 1].
    Finer pixels sample the same continuous function: pixel i of the finer grid sits at model position
    u = (i + ½)/scale − ½ (the frame's edges fixed, as `Camera.resized`), whose coordinate is −1 + 2u/(size − 1)."""
    u = (index.to(torch.float32) + 0.5) / scale - 0.5
    return u * (2.0 / max(size - 1, 1)) - 1.0


def coordinate_grid(height: int, width: int, *, scale: int = 1, device=None) -> Tensor:
    """(2, H·scale, W·scale): channel 0 the row coordinate, channel 1 the column coordinate (`pixel_coordinates`)."""
    rows = pixel_coordinates(torch.arange(height * scale, device=device), height, scale)
    cols = pixel_coordinates(torch.arange(width * scale, device=device), width, scale)
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"))


def all_pixels(height: int, width: int, *, device=None) -> Tensor:
    """(H·W, 2) int64 (x, y) pixel coordinates in row-major order."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


def _source_index(dst: Tensor, in_size: int, out_size: int) -> tuple[Tensor, Tensor, Tensor]:
    # PyTorch's bilinear rule for align_corners=False: src = max((dst + ½)·in/out − ½, 0), upper index clamped.
    src = ((dst.to(torch.float32) + 0.5) * (in_size / out_size) - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    return i0, i1, (src - i0).clamp(0.0, 1.0)


def sample_bilinear(maps: Tensor, pixels: Tensor, height: int, width: int) -> Tensor:
    """maps (B, C, h, w) sampled at output pixels (N, 2) int (x, y) of an H×W image → (B, N, C); equal to
    `F.interpolate(maps, (H, W), mode="bilinear", align_corners=False)` read at those pixels."""
    b, c, h, w = maps.shape
    return sample_bilinear_rows(maps.reshape(b, c, h * w).transpose(1, 2), h, w, pixels, height, width)


def sample_bilinear_rows(rows: Tensor, h: int, w: int, pixels: Tensor, height: int, width: int) -> Tensor:
    """`sample_bilinear` of a map given as pixel rows (B, h·w, C), row-major."""
    x0, x1, lx = _source_index(pixels[:, 0], w, width)
    y0, y1, ly = _source_index(pixels[:, 1], h, height)
    lx, ly = lx[:, None].to(rows.dtype), ly[:, None].to(rows.dtype)
    top = torch.lerp(rows[:, y0 * w + x0], rows[:, y0 * w + x1], lx)
    bottom = torch.lerp(rows[:, y1 * w + x0], rows[:, y1 * w + x1], lx)
    return torch.lerp(top, bottom, ly)


def sn_weight(conv: nn.Conv2d) -> Tensor:
    """Eval-mode spectral-normed weight (C_out, C_in, k, k): weight_orig / σ with σ = u·(W v) from the stored u, v."""
    w = conv.weight_orig
    sigma = torch.dot(conv.weight_u, torch.mv(_flat(w), conv.weight_v))
    return w / sigma


@torch.no_grad()
def converge_spectral_norm(conv: nn.Conv2d, iterations: int = 30) -> None:
    """Power-iterate u, v to the top singular pair of weight_orig. torch starts them random and leaves σ = u·Wv
    far from the top singular value until many training steps have run, so a fresh model in eval mode would
    divide by a near-random σ."""
    w = _flat(conv.weight_orig)
    u, v = conv.weight_u, conv.weight_v
    if w.is_meta:  # shapes only (e.g. `with torch.device("meta")` to list a state dict)
        return
    for _ in range(iterations):
        v.copy_(F.normalize(w.t() @ u, dim=0, eps=1e-12))
        u.copy_(F.normalize(w @ v, dim=0, eps=1e-12))


class SpatiallyAdaptiveNorm(nn.Module):
    """SPADE with batch norm (the paper's SABN) or instance norm (ablation): norm(x)·(1 + γ(s)) + β(s),
    γ, β = Conv1×1(hidden → C) of relu(Conv1×1(Ns → hidden)(s)). x (B, C, H, W); s (B, Ns, H, W) or (B, Ns, 1, 1)."""

    def __init__(self, *, channels: int, style_dim: int, hidden: int, normalization: str) -> None:
        super().__init__()
        if normalization == "batch":
            # Plain BatchNorm2d: training converts it to SyncBatchNorm (CUDA) or its own all-reduce variant (CPU).
            self.norm = nn.BatchNorm2d(channels, affine=True)
        else:
            self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Conv2d(style_dim, hidden, 1)
        self.gamma = nn.Conv2d(hidden, channels, 1)
        self.beta = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        a = F.relu(self.shared(s))
        return self.norm(x) * (1 + self.gamma(a)) + self.beta(a)

    def normalize_rows(self, x: Tensor, size: tuple[int, int, int]) -> Tensor:
        """norm(x) of pixel rows x (B·H·W, C), image-major, size (B, H, W), through the norm module itself (so a
        SyncBatchNorm or an all-reduce variant swapped in by training still sees the whole batch). The rows are
        handed over as a channels-last (B, C, H, W) view, the layout CPU and cuDNN norm kernels take natively."""
        b, h, w = size
        y = self.norm(x.view(b, h, w, -1).permute(0, 3, 1, 2))
        return y.permute(0, 2, 3, 1).reshape(x.shape)

    def norm_affine(self) -> tuple[Tensor, Tensor]:
        """Eval BatchNorm as x·a + b, a and b (C,)."""
        n = self.norm
        a = n.weight * torch.rsqrt(n.running_var + n.eps)
        return a, n.bias - n.running_mean * a

    def constant_affine(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """For a style s (B, Ns) shared by every pixel: the whole eval SPADE as x·A + B, A and B (B, C)."""
        hidden = F.relu(F.linear(s, _matrix(self.shared), self.shared.bias))
        g = 1 + F.linear(hidden, _matrix(self.gamma), self.gamma.bias)
        a, b = self.norm_affine()
        return a * g, b * g + F.linear(hidden, _matrix(self.beta), self.beta.bias)

    def varying_weights(self) -> tuple[Tensor, Tensor]:
        """For a per-pixel style: (W (hidden, 2C), c (2C,)) with [A | B] = relu(shared(s)) @ W + c and the eval
        SPADE = x·A + B (BN's a, b folded into the γ and β columns)."""
        a, b = self.norm_affine()
        wg, wb = _matrix(self.gamma).t(), _matrix(self.beta).t()  # (hidden, C)
        g1 = self.gamma.bias + 1
        return torch.cat([wg * a, wg * b + wb], dim=1), torch.cat([g1 * a, g1 * b + self.beta.bias])


def _matrix(conv: nn.Conv2d) -> Tensor:
    """A 1×1 conv's weight as a (C_out, C_in) matrix."""
    return _flat(conv.weight)


def _flat(weight: Tensor) -> Tensor:
    return weight.reshape(weight.shape[0], -1)


def _sn_matrix(conv: nn.Conv2d) -> Tensor:
    """A spectral-normed 1×1 conv's weight (C_out, C_in) as calling the module computes it: its pre-hook runs one
    power iteration in train mode (updating u, v in place, no gradient) and sets `weight` = weight_orig / σ."""
    for hook in conv._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm):
            hook(conv, ())
    return _matrix(conv)


class SpadeBlock(nn.Module):
    """SPADE → lrelu 0.2 → SN conv, twice; + input when `residual`. kernel_size 1 (paper) or 3 (upsampling ablation)."""

    def __init__(self, *, channels: int, style_dim: int, hidden: int, normalization: str, residual: bool,
                 kernel_size: int = 1) -> None:
        super().__init__()
        spade = dict(channels=channels, style_dim=style_dim, hidden=hidden, normalization=normalization)
        self.spade_0 = SpatiallyAdaptiveNorm(**spade)
        self.spade_1 = SpatiallyAdaptiveNorm(**spade)
        pad = kernel_size // 2
        self.conv_0 = nn.utils.spectral_norm(nn.Conv2d(channels, channels, kernel_size, padding=pad))
        self.conv_1 = nn.utils.spectral_norm(nn.Conv2d(channels, channels, kernel_size, padding=pad))
        self.residual = residual
        converge_spectral_norm(self.conv_0)
        converge_spectral_norm(self.conv_1)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        y = self.conv_0(F.leaky_relu(self.spade_0(x, s), 0.2))
        y = self.conv_1(F.leaky_relu(self.spade_1(y, s), 0.2))
        return y + x if self.residual else y


class Backbone(nn.Module):
    """style_map (B, Ns, h, w) pose styles + w (B, Ns) → image (B, 3, H, W), or (B, 3, N) at `pixels`.

    With `conditioning="feed_forward"` (ablation) the style map is the full-resolution pose field, added to the
    Fourier input through a 1×1 conv (`feature_input`), and every block gets w."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        c, ns = config.feature_dim, config.feature_dim
        self.config = config
        self.coord_input = nn.Conv2d(2, c, 1)
        nn.init.uniform_(self.coord_input.weight, -math.sqrt(9 / 2), math.sqrt(9 / 2))
        self.feature_input = nn.Conv2d(ns, c, 1) if config.conditioning == "feed_forward" else None
        n = config.backbone_blocks
        self.blocks = nn.ModuleList(
            SpadeBlock(channels=c, style_dim=ns, hidden=config.spade_hidden, normalization=config.normalization,
                       residual=i >= n // 2)
            for i in range(n)
        )
        self.to_rgb = nn.ModuleDict({str(i): nn.Conv2d(c, 3, 1) for i in range(FIRST_RGB_BLOCK, n)})
        with torch.no_grad():
            for rgb in self.to_rgb.values():
                rgb.weight.mul_(0.25)
        styled = config.pose_blocks if config.conditioning == "styles" else ()
        self.map_blocks = frozenset(styled)  # blocks whose style varies per pixel

    # ---- shared helpers -------------------------------------------------------------------------------------
    def _check(self, style_map: Tensor, w: Tensor) -> None:
        ns = self.config.feature_dim
        if w.ndim != 2 or w.shape[1] != ns:
            raise ValueError(f"w must be (B, {ns}); got {tuple(w.shape)}")
        if style_map.ndim != 4 or style_map.shape[:2] != (w.shape[0], ns):
            raise ValueError(f"style_map must be ({w.shape[0]}, {ns}, h, w); got {tuple(style_map.shape)}")

    def _map_style(self, sampled_map: Tensor, w: Tensor) -> Tensor:
        return sampled_map + w if self.config.pose_mode == "mixed" else sampled_map

    def forward(self, style_map: Tensor, w: Tensor, *, pixels: Tensor | None = None, fast: bool = True,
                tile_pixels: int | None = None, folded: dict | None = None, scale: int = 1) -> Tensor:
        """pixels: (N, 2) int64 (x, y) output pixels, computed exactly (eval mode, batch norm only), in tiles of
        `tile_pixels` (default `cache_tile`). folded: `fold(w, style_map)` computed beforehand, reused across
        calls for tiles of one image. scale: the image is rendered at (H·scale, W·scale), each pixel-wise
        function evaluated at the finer pixel centres (`pixel_coordinates`; the style map upsampled to that size)."""
        self._check(style_map, w)
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        height, width = self.config.height * scale, self.config.width * scale
        if pixels is not None:
            if self.training or self.config.normalization == "instance":
                raise ValueError("pixels= needs eval mode and batch norm: batch statistics (training) and instance "
                                 "norm couple all pixels of an image; render the whole image instead")
            if pixels.ndim != 2 or pixels.shape[1] != 2 or pixels.dtype.is_floating_point:
                raise ValueError(f"pixels must be (N, 2) integer (x, y); got {tuple(pixels.shape)} {pixels.dtype}")
            if len(pixels) and (pixels.min() < 0 or (pixels[:, 0].max() >= width) or pixels[:, 1].max() >= height):
                raise ValueError(f"pixels outside the {width}×{height} image")
        if fast and not self.training and self.config.normalization == "batch":
            return self._forward_fast(style_map, w, pixels, tile_pixels, folded, scale)
        image = self._forward_rows(style_map, w, scale) if fast else self._forward_naive(style_map, w, scale)
        if pixels is None:
            return image
        return image[:, :, pixels[:, 1], pixels[:, 0]]

    # ---- naive path (NCHW, per-pixel styles, through the modules) ------------------------------------------
    def _forward_naive(self, style_map: Tensor, w: Tensor, scale: int) -> Tensor:
        b, (height, width) = w.shape[0], (self.config.height * scale, self.config.width * scale)
        grid = coordinate_grid(self.config.height, self.config.width, scale=scale, device=w.device)
        grid = grid.expand(b, -1, -1, -1)
        full_map = F.interpolate(style_map, (height, width), mode="bilinear", align_corners=False)
        x = torch.sin(self.coord_input(grid.to(self.coord_input.weight.dtype)))
        if self.feature_input is not None:
            x = x + self.feature_input(full_map)
        w_style = w[:, :, None, None].expand(-1, -1, height, width)
        rgb = None
        for i, block in enumerate(self.blocks):
            x = block(x, self._map_style(full_map, w_style) if i in self.map_blocks else w_style)
            if i >= FIRST_RGB_BLOCK:
                y = self.to_rgb[str(i)](x)
                rgb = y if rgb is None else rgb + y
        return rgb

    # ---- rows path (training: pixel rows, matmuls, per-image γ/β; differentiable) ---------------------------
    def _forward_rows(self, style_map: Tensor, w: Tensor, scale: int) -> Tensor:
        b, c = w.shape[0], self.config.feature_dim
        height, width = self.config.height * scale, self.config.width * scale
        n = height * width
        grid = coordinate_grid(self.config.height, self.config.width, scale=scale, device=w.device)
        grid = grid.reshape(2, n).t().to(self.coord_input.weight.dtype)
        x = torch.sin(F.linear(grid, _matrix(self.coord_input), self.coord_input.bias))  # (n, C), every image's
        x = x.expand(b, n, c).reshape(b * n, c)
        if self.feature_input is not None or self.map_blocks:
            full_map = F.interpolate(style_map.contiguous(memory_format=torch.channels_last), (height, width),
                                     mode="bilinear", align_corners=False)
            full_map = full_map.permute(0, 2, 3, 1).reshape(b * n, -1)  # (B·n, Ns), a free view of channels-last
        if self.feature_input is not None:
            x = x + F.linear(full_map, _matrix(self.feature_input), self.feature_input.bias)
        map_spades = [s for i in sorted(self.map_blocks) for s in (self.blocks[i].spade_0, self.blocks[i].spade_1)]
        if map_spades:  # the hidden layers of every map-styled SPADE read the same style: one matmul
            s = full_map.view(b, n, -1) + w[:, None] if self.config.pose_mode == "mixed" else full_map
            weight = torch.cat([_matrix(spade.shared) for spade in map_spades])
            bias = torch.cat([spade.shared.bias for spade in map_spades])
            hidden = iter(F.relu(F.linear(s, weight, bias)).reshape(b * n, -1).split(self.config.spade_hidden, 1))
        # Without autograd (the D step's fakes) the SPADE affine and residual write into tensors already made: on
        # CPU, fresh (B·H·W, C) buffers cost page faults as well as bandwidth.
        reuse = not torch.is_grad_enabled()
        rgb = None
        for i, block in enumerate(self.blocks):
            x_in = x
            for spade, conv in ((block.spade_0, block.conv_0), (block.spade_1, block.conv_1)):
                y = spade.normalize_rows(x, (b, height, width))
                if i in self.map_blocks:  # per-pixel γ, β (B·n, C)
                    h = next(hidden)
                    gamma = F.linear(h, _matrix(spade.gamma), spade.gamma.bias)
                    beta = F.linear(h, _matrix(spade.beta), spade.beta.bias)
                    y = torch.addcmul(beta, y, 1 + gamma, out=y if reuse else None)
                else:  # w broadcast to every pixel: γ, β (B, C) once per image
                    a = F.relu(F.linear(w, _matrix(spade.shared), spade.shared.bias))
                    gamma = F.linear(a, _matrix(spade.gamma), spade.gamma.bias)
                    beta = F.linear(a, _matrix(spade.beta), spade.beta.bias)
                    yv = y.view(b, n, c)
                    y = torch.addcmul(beta[:, None], yv, (1 + gamma)[:, None], out=yv if reuse else None).view(b * n, c)
                x = F.linear(F.leaky_relu(y, 0.2, inplace=True), _sn_matrix(conv), conv.bias)
            if block.residual:
                x = x.add_(x_in) if reuse else x + x_in
            if i >= FIRST_RGB_BLOCK:
                rgb_layer = self.to_rgb[str(i)]
                y = F.linear(x, _matrix(rgb_layer), rgb_layer.bias)
                rgb = y if rgb is None else rgb.add_(y)  # rgb is a matmul output, which autograd does not keep
        return rgb.view(b, height, width, 3).permute(0, 3, 1, 2).contiguous()

    # ---- fast eval path (folded, channels-last matmuls, any pixel subset) -----------------------------------
    def _forward_fast(self, style_map: Tensor, w: Tensor, pixels: Tensor | None, tile_pixels: int | None,
                      folded: dict | None, scale: int) -> Tensor:
        b, (height, width) = w.shape[0], (self.config.height * scale, self.config.width * scale)
        px = all_pixels(height, width, device=w.device) if pixels is None else pixels.to(w.device)
        plan = self.fold(w, style_map) if folded is None else folded
        tile = tile_pixels or cache_tile(w.device, self.config.feature_dim)
        out = torch.empty(b, 3, len(px), device=w.device, dtype=torch.float32)
        # Without autograd (eval-mode gradients) or autocast (out= ops are not autocast) the activations live in
        # preallocated scratch: fresh (rows, C) tensors would cost page faults as well as bandwidth.
        reuse = not torch.is_grad_enabled() and not torch.is_autocast_enabled(w.device.type)
        scratch = _scratch(b * min(tile, len(px)), self.config.feature_dim, w, "shared_map" in plan) if reuse else None
        for start in range(0, len(px), tile):
            pixels_tile = px[start:start + tile]
            rgb = self._tile(plan, style_map, pixels_tile, b, scratch, scale)
            out[:, :, start:start + len(pixels_tile)] = rgb.transpose(1, 2)
        return out if pixels is not None else out.reshape(b, 3, height, width)

    def fold(self, w: Tensor, style_map: Tensor) -> dict:
        """The fast path's per-image constants for w (B, Ns) and the style map (B, Ns, h, w), eval mode: SPADE affines
        of the w-styled blocks, folded γ/β weights of the map-styled ones, convs with 1/σ applied, all as (in, out)
        matrices, and the map-styled SPADEs' shared-layer pre-activations at the map's own resolution: a 1×1 conv
        commutes with bilinear upsampling (whose weights sum to 1), so shared(up(s)) = up(shared(s)) costs a matmul
        per style-map pixel instead of per output pixel."""
        plan: dict = {"spades": [], "convs": [], "rgb": {}}
        shared_w, shared_b = [], []
        for i, block in enumerate(self.blocks):
            for spade in (block.spade_0, block.spade_1):
                if i in self.map_blocks:
                    shared_w.append(_matrix(spade.shared).t())
                    bias = spade.shared.bias.expand(w.shape[0], -1)
                    if self.config.pose_mode == "mixed":  # shared(map + w) = map @ W + (w @ W + bias)
                        bias = bias + w @ shared_w[-1]
                    shared_b.append(bias)
                    plan["spades"].append(("map", len(shared_w) - 1, *spade.varying_weights()))
                else:
                    plan["spades"].append(("const", *spade.constant_affine(w)))
            for conv in (block.conv_0, block.conv_1):
                plan["convs"].append((_flat(sn_weight(conv)).t(), conv.bias))
        for key, rgb in self.to_rgb.items():
            plan["rgb"][int(key)] = (_matrix(rgb).t(), rgb.bias)
        if shared_w:
            ws, bs = torch.cat(shared_w, dim=1), torch.cat(shared_b, dim=1)
            rows = style_map.flatten(2).transpose(1, 2)  # (B, h·w, Ns)
            plan["shared_map"] = (torch.baddbmm(bs[:, None], rows, ws.expand(len(rows), -1, -1)),
                                  tuple(style_map.shape[-2:]))
        return plan

    def _tile(self, plan: dict, style_map: Tensor, px: Tensor, b: int, scratch: tuple | None, scale: int) -> Tensor:
        """One tile of n pixels for all b images → rgb (b, n, 3) float32, its activations in `scratch` (x, y, t
        (rows, C), [γ | β] (rows, 2C) or None) or, without it, in new tensors."""
        n, c = len(px), self.config.feature_dim
        reuse = scratch is not None
        bx, by, bt, bgb = ((buf[:b * n] if buf is not None else None) for buf in scratch) if reuse else (None,) * 4
        height, width = self.config.height * scale, self.config.width * scale
        rows = pixel_coordinates(px[:, 1], self.config.height, scale)
        cols = pixel_coordinates(px[:, 0], self.config.width, scale)
        x = torch.sin(F.linear(torch.stack([rows, cols], dim=1), _matrix(self.coord_input), self.coord_input.bias))
        x = x.expand(b, n, c)
        if self.feature_input is not None:
            s = sample_bilinear(style_map, px, height, width)  # (B, n, Ns)
            x = x + F.linear(s, _matrix(self.feature_input), self.feature_input.bias)
        x = bx.view(b, n, c).copy_(x).view(b * n, c) if reuse else x.reshape(b * n, c)
        if "shared_map" in plan:  # hidden activations of every map-style SPADE, sampled from the low-res map
            pre, (h, w) = plan["shared_map"]
            hidden = F.relu(sample_bilinear_rows(pre, h, w, px, height, width))
            hidden = hidden.reshape(b * n, -1)
        spades, convs = iter(plan["spades"]), iter(plan["convs"])

        def modulate(src: Tensor, out: Tensor | None) -> Tensor:  # lrelu(SPADE(src)); out may be src
            spade = next(spades)
            if spade[0] == "const":
                a, bias = spade[1], spade[2]
                y = torch.addcmul(bias[:, None, :], src.view(b, n, c), a[:, None, :],
                                  out=None if out is None else out.view(b, n, c)).view(b * n, c)
            else:
                _, k, wgb, cgb = spade
                gb = torch.addmm(cgb, hidden[:, k * wgb.shape[0]:(k + 1) * wgb.shape[0]], wgb, out=bgb)
                y = torch.addcmul(gb[:, c:], src, gb[:, :c], out=out)
            return F.leaky_relu(y, 0.2, inplace=True)

        def conv(src: Tensor, out: Tensor | None) -> Tensor:
            weight, bias = next(convs)
            return torch.addmm(bias, src, weight, out=out)

        rgb = None
        for i, block in enumerate(self.blocks):
            t = modulate(conv(modulate(x, by), bt), bt)
            y = conv(t, by)
            if block.residual:
                y = y.add_(x)
            if reuse:
                bx, by = by, bx
            x = y
            if i in plan["rgb"]:
                weight, bias = plan["rgb"][i]
                y = torch.addmm(bias, x, weight)
                rgb = y if rgb is None else rgb.add_(y)
        return rgb.float().reshape(b, n, 3)


def _scratch(rows: int, channels: int, w: Tensor, map_spades: bool) -> tuple:
    """The fast path's activation buffers: x, y, t (rows, C) and the map SPADEs' [γ | β] (rows, 2C) or None."""
    def empty(width: int) -> Tensor:
        return torch.empty(rows, width, device=w.device, dtype=w.dtype)
    return empty(channels), empty(channels), empty(channels), empty(2 * channels) if map_spades else None


def cache_tile(device: torch.device, channels: int) -> int:
    """Output pixels per fast-path tile: on a CPU a (pixels, C) activation of 4 MiB keeps the element-wise work
    between the matmuls in cache (2,496 pixels at width 420 ran the paper-512 backbone 1.4× faster than 16,384 on
    the 2-core dev machine); a GPU wants large launches."""
    if device.type == "cpu":
        return max(256, 2**20 // channels)
    return 2**16


def backbone_flops(config: GeneratorConfig, *, fast: bool) -> int:
    """Matmul FLOPs (2 per multiply-add) of one image through the pixel-wise backbone; elementwise ops (sin, norm
    affines, lrelu, bilinear sampling) are not counted. Naive: every SPADE per pixel; fast: constant-style SPADEs
    once per image, the map-styled SPADEs' shared layer once per style-map pixel."""
    c, ns, hid, n = config.feature_dim, config.feature_dim, config.spade_hidden, config.height * config.width
    per_pixel = 2 * c + config.backbone_blocks * 2 * c * c + (config.backbone_blocks - FIRST_RGB_BLOCK) * 3 * c
    map_spades = 2 * len(config.pose_blocks) if config.conditioning == "styles" else 0
    const_spades = 2 * config.backbone_blocks - map_spades
    if config.conditioning == "feed_forward":
        per_pixel += ns * c
    per_pixel += map_spades * 2 * hid * c  # γ and β of the map-styled SPADEs
    shared, gamma_beta = ns * hid, 2 * hid * c
    if not fast:
        return 2 * n * (per_pixel + map_spades * shared + const_spades * (shared + gamma_beta))
    style_pixels = config.render_height * config.render_width
    per_image = const_spades * (shared + gamma_beta) + (map_spades * shared if config.pose_mode == "mixed" else 0)
    return 2 * (n * per_pixel + style_pixels * map_spades * shared + per_image)  # mixed: w's share of `shared`

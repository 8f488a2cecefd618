"""The "Upsampling" ablation backbone (paper Table 2; docs/architecture.md §Ablations): an upsampling-convolution
generator in place of the pixel-wise independent one, which the paper finds to impair view consistency.

It starts at the style map's resolution (h×w = H/4 × W/4) from the same Fourier coordinate features, runs the same
9 SPADE blocks but with 3×3 spectral-normed convs, and upsamples ×2 (nearest) before blocks 3 and 6; the pose
styles enter the pose blocks at their native resolution (bilinearly resized where a block runs at another one),
w every other block; skip-RGB from block 3, upsampled with the features. Neighbouring pixels interact, so there is
no exact pixel-subset rendering and no folded fast path: `fast` only chooses per-image (True) or per-pixel (False)
γ/β for the w-styled blocks, which is the same function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import FIRST_RGB_BLOCK, SpadeBlock, coordinate_grid
from .config import GeneratorConfig

UPSAMPLE_BEFORE = (3, 6)


class UpsamplingBackbone(nn.Module):
    """style_map (B, Ns, h, w) + w (B, Ns) → image (B, 3, H, W), H = 4h."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        if config.height != 4 * config.render_height:
            raise ValueError(f"the upsampling backbone goes from the style map (height {config.render_height}) up "
                             f"×4 to the image; the config has height {config.height}: use render_height = height/4")
        if config.conditioning != "styles":
            raise ValueError("backbone='upsampling' and conditioning='feed_forward' are separate ablations; "
                             "set one of them")
        c = config.feature_dim
        self.config = config
        self.coord_input = nn.Conv2d(2, c, 1)
        nn.init.uniform_(self.coord_input.weight, -math.sqrt(9 / 2), math.sqrt(9 / 2))
        n = config.backbone_blocks
        self.blocks = nn.ModuleList(
            SpadeBlock(channels=c, style_dim=c, hidden=config.spade_hidden, normalization=config.normalization,
                       residual=i >= n // 2, kernel_size=3)
            for i in range(n)
        )
        self.to_rgb = nn.ModuleDict({str(i): nn.Conv2d(c, 3, 1) for i in range(FIRST_RGB_BLOCK, n)})
        with torch.no_grad():
            for rgb in self.to_rgb.values():
                rgb.weight.mul_(0.25)

    def forward(self, style_map: Tensor, w: Tensor, *, pixels: Tensor | None = None, fast: bool = True,
                tile_pixels: int | None = None, folded: None = None, scale: int = 1) -> Tensor:
        if scale != 1:
            raise ValueError("the upsampling backbone (ablation) renders at the model's resolution only (scale 1): "
                             "its 3×3 convs were trained on that pixel grid")
        if pixels is not None:
            raise ValueError("pixels= is not supported by the upsampling backbone (ablation): its 3×3 convs and "
                             "upsampling make pixels depend on their neighbours; render the whole image")
        b, (h, w_) = w.shape[0], style_map.shape[-2:]
        x = torch.sin(self.coord_input(coordinate_grid(h, w_, device=w.device).expand(b, -1, -1, -1)))
        w_style = w[:, :, None, None]
        rgb = None
        for i, block in enumerate(self.blocks):
            if i in UPSAMPLE_BEFORE:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
                rgb = None if rgb is None else F.interpolate(rgb, scale_factor=2.0, mode="nearest")
            size = x.shape[-2:]
            ws = w_style if fast else w_style.expand(-1, -1, *size)
            if i in self.config.pose_blocks:
                s = style_map if style_map.shape[-2:] == size else F.interpolate(
                    style_map, size, mode="bilinear", align_corners=False)
                s = s + ws if self.config.pose_mode == "mixed" else s
            else:
                s = ws
            x = block(x, s)
            if i >= FIRST_RGB_BLOCK:
                y = self.to_rgb[str(i)](x)
                rgb = y if rgb is None else rgb + y
        return rgb

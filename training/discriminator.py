"""OASIS-style U-Net discriminator: per-pixel logits over fake + background + 24 parts
(docs/architecture.md §Discriminator, §Labels).

The image (B, 3, H, W) goes down an encoder of residual blocks (3×3 spectral-normed convs, LeakyReLU 0.2, average
pooling ×2, a learned 1×1 shortcut where the width changes) and back up a mirrored decoder (nearest ×2 upsampling,
concatenating the encoder features of the same resolution). A 1×1 head gives per-pixel logits at full resolution:
26 classes (0 = fake, 1 = background, 2..25 = parts) for the segmentation loss, or 1 real/fake logit for the binary
ablation. With the paper's widths 128, 128, 256, 256, 512, 512 and head 64 the decoder runs 512→512, 1024→256,
512→256, 512→128, 256→128, 256→64, as in the official model (≈ 24M parameters at 256×128).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_CLASSES = 26  # 0 fake, 1 background, 2..25 the 24 SMPL-joint parts


def levels(height: int, width: int) -> int:
    """Encoder depth: min(6, log2(max(H, W)) − 1), so the bottleneck is at least 4×2 (official rule)."""
    return min(6, int(math.log2(max(height, width))) - 1)


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.kaiming_normal_(conv.weight, a=0.2, nonlinearity="leaky_relu")
    nn.init.zeros_(conv.bias)
    return nn.utils.parametrizations.spectral_norm(conv)


class ResidualBlock(nn.Module):
    """x (B, C_in, h, w) → (B, C_out, h', w'): [up ×2] → [lrelu] conv3 → lrelu conv3 (+ shortcut) → [avg-pool ×2].

    `first` skips the leading activation (the input is an image). Shortcut: learned 1×1 when C_in ≠ C_out."""

    def __init__(self, *, in_channels: int, out_channels: int, resample: str, first: bool = False) -> None:
        super().__init__()
        if resample not in ("down", "up"):
            raise ValueError(f"resample must be 'down' or 'up', got {resample!r}")
        self.resample, self.first = resample, first
        self.conv_0 = _conv(in_channels, out_channels, 3)
        self.conv_1 = _conv(out_channels, out_channels, 3)
        self.shortcut = _conv(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        if self.resample == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = self.conv_0(x if self.first else F.leaky_relu(x, 0.2))
        h = self.conv_1(F.leaky_relu(h, 0.2))
        s = x if self.shortcut is None else self.shortcut(x)
        if self.resample == "down":
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class UNetDiscriminator(nn.Module):
    """image (B, 3, H, W) in [-1, 1] → logits (B, num_classes, H, W).

    channels: encoder widths, one per level; the first `levels(H, W)` are used. head: decoder output width."""

    def __init__(self, *, height: int, width: int, channels: tuple[int, ...], head: int,
                 num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        n = levels(height, width)
        if n < 1 or height % 2**n or width % 2**n:
            raise ValueError(f"discriminator needs H, W divisible by 2^{n}; got {height}×{width}")
        if len(channels) < n:
            raise ValueError(f"discriminator at {height}×{width} has {n} levels; channels {channels} gives only "
                             f"{len(channels)} widths. Give at least {n}")
        widths = tuple(channels[:n])
        self.height, self.width = height, width
        self.encoder = nn.ModuleList(
            ResidualBlock(in_channels=c_in, out_channels=c_out, resample="down", first=i == 0)
            for i, (c_in, c_out) in enumerate(zip((3, *widths[:-1]), widths))
        )
        # decoder j: upsample level n−j to level n−j−1; input = previous decoder output + same-resolution skip
        outs = (*widths[-2::-1], head)
        ins = (widths[-1], *(2 * c for c in widths[-2::-1]))
        self.decoder = nn.ModuleList(
            ResidualBlock(in_channels=c_in, out_channels=c_out, resample="up") for c_in, c_out in zip(ins, outs)
        )
        self.head = nn.Conv2d(head, num_classes, 1)
        with torch.no_grad():
            self.head.weight.mul_(0.25)
            self.head.bias.zero_()

    def forward(self, image: Tensor) -> Tensor:
        if image.ndim != 4 or image.shape[1:] != (3, self.height, self.width):
            raise ValueError(f"discriminator expects (B, 3, {self.height}, {self.width}); got {tuple(image.shape)}")
        # channels-last activations: the same convolutions, ~1.3× faster forward + backward on CPU (oneDNN)
        return self.layers(image.contiguous(memory_format=torch.channels_last))

    def layers(self, x: Tensor) -> Tensor:
        """The U-Net on x (B, 3, H, W) in whatever memory layout x has (convolutions keep it), without checks."""
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = self.decoder[0](skips[-1])
        for block, skip in zip(self.decoder[1:], skips[-2::-1]):
            x = block(torch.cat([x, skip], dim=1))
        return self.head(F.leaky_relu(x, 0.2))

"""View consistency, pose consistency and temporal flicker by surface correspondence
(docs/evaluation.md §View consistency).

3DHumanGAN's claim (paper §1, §4.3) is that its 3D pose mapping keeps a person's appearance consistent across
views and poses, where 2D generators flicker. We measure it directly: two images of the same person (same seed),
rendered from two cameras or in two poses, are compared at *the same surface point* of the body. A pixel of image
a sees, through the rasterised conditioning body, face f at barycentrics β; that point is re-posed (the same f, β on
body b's vertices), projected into camera b and kept when it is visible there (depth-tested against body b's
rasterisation). The score is the mean absolute colour difference over those co-visible pixels, in 8-bit levels.

Pixels are kept only inside the body with a one-pixel margin (silhouette pixels mix in the background), and image b
is sampled bilinearly, so a renderer whose colour is fixed to the surface scores close to zero: the protocol reports
the same number for the synthetic collection's ground-truth renders beside every model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from neural.camera import Camera
from neural.raster import Fragments

__all__ = ["Correspondence", "surface_correspondence", "colour_difference", "ConsistencySum"]


@dataclass(frozen=True, kw_only=True)
class Correspondence:
    """Where each pixel of image a is seen in image b.

    xy: (B, H, W, 2) float (x, y) pixel coordinates in image b (integers = pixel centres).
    valid: (B, H, W) bool, True where the pixel's surface point is co-visible (interior of body a, visible and
        interior in b).
    """

    xy: Tensor
    valid: Tensor


def _interior(mask: Tensor) -> Tensor:
    """(B, H, W) bool → pixels whose 4-neighbours are all in the mask (the image border counts as outside)."""
    m = F.pad(mask[:, None].float(), (1, 1, 1, 1))
    cross = torch.tensor([[0.0, 1, 0], [1, 1, 1], [0, 1, 0]], device=mask.device)[None, None]
    return (F.conv2d(m, cross) > 4.5)[:, 0]


def surface_correspondence(fragments_a: Fragments, fragments_b: Fragments, faces: Tensor, vertices_b: Tensor,
                           camera_b: Camera, *, depth_tolerance: float = 0.01) -> Correspondence:
    """Surface correspondences from image a to image b.

    fragments_a, fragments_b: rasterisations (B, H, W) of the bodies that conditioned images a and b (the same mesh
    topology `faces` (F, 3)); vertices_b: (B, V, 3) body b in camera b's world frame; camera_b: the camera of
    image b. A point counts as visible in b when each of the 4 pixels that bilinear sampling reads is an interior
    body pixel whose depth is within depth_tolerance (metres) + 2 pixel footprints of the point's own depth (the
    footprints allow for surfaces sloping away from the camera).
    """
    B, H, W = fragments_a.face_ids.shape
    if vertices_b.dim() != 3 or vertices_b.shape[0] != B:
        raise ValueError(f"vertices_b must be (B={B}, V, 3), got {tuple(vertices_b.shape)}")
    faces = faces.to(vertices_b.device, torch.int64)
    # the surface point of every pixel of a, on body b: Σ β_i · v_b[f_i]
    corners = faces[fragments_a.face_ids.clamp(min=0).reshape(B, -1)]                  # (B, HW, 3)
    idx = corners.reshape(B, -1, 1).expand(-1, -1, 3)
    tri = torch.gather(vertices_b, 1, idx).reshape(B, H * W, 3, 3)
    points = (fragments_a.bary.reshape(B, H * W, 3, 1).to(tri.dtype) * tri).sum(2)      # (B, HW, 3)
    xy, z = camera_b.project(points)
    footprint = z / camera_b.K[:, 0, 0][:, None]                                        # metres per pixel at z
    tolerance = depth_tolerance + 2 * footprint

    Hb, Wb = fragments_b.face_ids.shape[1:]
    inside_b = _interior(fragments_b.mask)
    x0, y0 = torch.floor(xy[..., 0]), torch.floor(xy[..., 1])
    ok = (z > 0) & (x0 >= 0) & (y0 >= 0) & (x0 + 1 <= Wb - 1) & (y0 + 1 <= Hb - 1)
    ok &= _interior(fragments_a.mask).reshape(B, -1)
    batch = torch.arange(B, device=xy.device)[:, None].expand_as(x0)
    for dy in (0, 1):
        for dx in (0, 1):
            yi = (y0 + dy).clamp(0, Hb - 1).long()
            xi = (x0 + dx).clamp(0, Wb - 1).long()
            depth = fragments_b.depth[batch, yi, xi]
            ok &= inside_b[batch, yi, xi] & ((depth - z).abs() <= tolerance)
    return Correspondence(xy=xy.reshape(B, H, W, 2), valid=ok.reshape(B, H, W))


def _sample(image: Tensor, xy: Tensor) -> Tensor:
    """Bilinear samples (B, C, H, W) of image (B, C, Hb, Wb) at pixel coordinates xy (B, H, W, 2)."""
    Hb, Wb = image.shape[-2:]
    scale = torch.tensor([2 / Wb, 2 / Hb], dtype=xy.dtype, device=xy.device)
    grid = (xy + 0.5) * scale - 1                                                        # align_corners=False
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class ConsistencySum:
    """A running mean absolute colour difference: total |Δ| (8-bit levels, averaged over RGB) and pixel count."""

    total: float = 0.0
    count: int = 0

    def __add__(self, other: ConsistencySum) -> ConsistencySum:
        return ConsistencySum(self.total + other.total, self.count + other.count)

    @property
    def mean(self) -> float:
        """Mean |Δ| in 8-bit levels (0-255); nan when no pixel was co-visible."""
        return self.total / self.count if self.count else float("nan")


def colour_difference(image_a: Tensor, image_b: Tensor, match: Correspondence) -> ConsistencySum:
    """|image_a − image_b| at corresponding pixels, summed over the co-visible ones.

    image_a, image_b: (B, 3, H, W) float in [-1, 1] (the generator's range); match from surface_correspondence.
    """
    if image_a.shape[0] != match.valid.shape[0] or image_a.shape[-2:] != match.valid.shape[-2:]:
        raise ValueError(f"image_a {tuple(image_a.shape)} does not match the correspondence grid "
                         f"{tuple(match.valid.shape)}")
    sampled = _sample(image_b.float(), match.xy)
    diff = (image_a.float() - sampled).abs().mean(1) * 127.5                             # (B, H, W) 8-bit levels
    return ConsistencySum(float(diff[match.valid].double().sum()), int(match.valid.sum()))

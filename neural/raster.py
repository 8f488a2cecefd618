"""Pure-torch z-buffer triangle rasteriser: face ids, perspective-correct barycentrics, depth, part maps.

3DHumanGAN conditions its generator and discriminator on part segmentation maps of the posed SMPL body (paper §3.3,
docs/conventions.md §Part labels: 2..25 = the dominant skinning joint + 2, 1 = background). We make those maps, and the
masks and surface correspondences of the evaluation protocol (docs/evaluation.md §View consistency), by rasterising the
body mesh. No OpenGL, no custom ops: the same code runs batched on CPU and CUDA (docs/environment.md §Rasteriser).

Algorithm: project the vertices; group the triangles by the size of their screen bounding box (powers of two)
and test each group's boxes as dense tiles of pixel centres (chunked so memory stays bounded however big the
triangles are); keep the centres inside the triangle by edge functions with the top-left fill rule (a centre exactly on an edge shared by two triangles belongs to exactly one);
keep the nearest per pixel with one `scatter_reduce(amin)` on an int64 key (float32 depth bits, then face index, so
equal depths resolve to the lower face index, deterministically); finally recompute barycentrics and depth of the
winning face at full precision. Triangles with a vertex at or behind the near plane are dropped whole (no
clipping): fine for bodies in front of the camera, which is all the renderer draws.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .camera import Camera

__all__ = ["Fragments", "rasterize", "part_map", "parts_seen", "ray_distance", "interpolate", "part_palette"]

_EMPTY = torch.iinfo(torch.int64).max


@dataclass(frozen=True, kw_only=True)
class Fragments:
    """Per-pixel nearest-surface record of a rasterised mesh.

    face_ids: (B, H, W) int64 face index into `faces`, -1 = background.
    bary: (B, H, W, 3) perspective-correct barycentrics of the face's 3 vertices (the 3D hit point is
        Σ bary_i · vertex_i); 0 on background.
    depth: (B, H, W) camera z of the hit point; +inf on background.
    """

    face_ids: Tensor
    bary: Tensor
    depth: Tensor

    @property
    def mask(self) -> Tensor:
        """(B, H, W) bool, True where a face covers the pixel."""
        return self.face_ids >= 0


def _edge(ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Edge function of a→b at p, computed relative to p so that edge(b, a) == -edge(a, b) exactly in floats."""
    return (ax - px) * (by - py) - (ay - py) * (bx - px)


def _scan(rows: Tensor, gface: Tensor, tx: int, ty: int, key: Tensor, nF: int, H: int, W: int) -> None:
    """Test the pixel centres of n triangles' (ty, tx) bounding-box tiles; fold the inside ones into `key`.

    rows: (n, 16) per-face table from rasterize; gface: (n,) int64 b·F + f; key: (B·H·W,) int64 packed
    (float32 depth bits, b·F + f), updated in place.
    """
    cx, cy, iz, thr = rows[:, 0:3], rows[:, 3:6], rows[:, 6:9], rows[:, 9:12]
    x0, y0, x1, y1 = rows[:, 12:13], rows[:, 13:14], rows[:, 14:15], rows[:, 15:16]
    px = x0 + torch.arange(tx, dtype=rows.dtype, device=rows.device)                # (n, tx)
    py = y0 + torch.arange(ty, dtype=rows.dtype, device=rows.device)                # (n, ty)
    ddx = [(cx[:, k:k + 1] - px)[:, None, :] for k in range(3)]                     # (n, 1, tx)
    ddy = [(cy[:, k:k + 1] - py)[:, :, None] for k in range(3)]                     # (n, ty, 1)
    inside = ((px <= x1)[:, None, :] & (py <= y1)[:, :, None])
    e = []
    for i in range(3):
        a, b = (i + 1) % 3, (i + 2) % 3
        e.append(ddx[a] * ddy[b] - ddy[a] * ddx[b])                                   # = _edge(corner a, b, p)
        inside &= e[i] > thr[:, i, None, None]
    flat = inside.reshape(-1).nonzero()[:, 0]                                         # 1-D indices: cheap gathers
    if flat.numel() == 0:
        return
    f = flat // (tx * ty)
    w = torch.stack([e[k].reshape(-1).index_select(0, flat) for k in range(3)], 1)
    depth = (w.sum(1) / (w * iz.index_select(0, f)).sum(1)).to(torch.float32)
    g = gface.index_select(0, f)                                                      # b·F + f
    base = (gface // nF) * (H * W) + y0[:, 0].to(torch.int64) * W + x0[:, 0].to(torch.int64)
    pix = base.index_select(0, f) + (flat % (tx * ty) // tx) * W + flat % tx
    key.scatter_reduce_(0, pix, (depth.view(torch.int32).to(torch.int64) << 32) | g, reduce="amin")


def _size_classes(limit: int) -> list[int]:
    """Tile sizes 1, 2, 4, 8, … ≥ limit: a bounding box is padded by < 2× per axis, in few groups (few launches)."""
    sizes = [1]
    while sizes[-1] < limit:
        sizes.append(2 * sizes[-1])
    return sizes


def rasterize(vertices: Tensor, faces: Tensor, camera: Camera, *, near: float = 1e-3,
              chunk_pixels: int = 1 << 21) -> Fragments:
    """Rasterise triangle meshes into the camera's image.

    vertices: (B, V, 3) float, in the camera's world frame (metres); faces: (F, 3) int64 vertex indices, shared
    by the batch; camera: Camera with B cameras (or 1, broadcast). near: triangles with any vertex at camera
    z ≤ near are dropped. chunk_pixels: at most this many (triangle, pixel) candidates are processed at once
    (or one triangle's padded bounding box, if bigger).
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3), got {tuple(vertices.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3) int64, got {tuple(faces.shape)}")
    B, V, _ = vertices.shape
    if camera.batch_size not in (1, B):
        raise ValueError(f"camera batch {camera.batch_size} does not match vertices batch {B}")
    camera = camera.to(device=vertices.device, dtype=vertices.dtype)
    if camera.batch_size != B:
        camera = Camera(K=camera.K.expand(B, 3, 3), world_to_camera=camera.world_to_camera.expand(B, 4, 4),
                        width=camera.width, height=camera.height)
    faces = faces.to(device=vertices.device, dtype=torch.int64)
    H, W = camera.height, camera.width
    nF = faces.shape[0]
    device, dtype = vertices.device, vertices.dtype
    if B * nF >= 2**31:
        raise ValueError(f"rasterize packs batch·faces into 31 bits; got B={B} × F={nF}; split the batch")

    # per-vertex screen position and depth, then per-face corners (B·F, 3)
    xy, z = camera.project(vertices)
    corners = faces.reshape(-1)  # index_select: a gather several times faster than advanced indexing on CPU
    fx, fy, fz = (c.index_select(1, corners).reshape(B * nF, 3) for c in (xy[..., 0], xy[..., 1], z))
    x0 = torch.ceil(fx.amin(1)).clamp(min=0)
    x1 = torch.floor(fx.amax(1)).clamp(max=W - 1)
    y0 = torch.ceil(fy.amin(1)).clamp(min=0)
    y1 = torch.floor(fy.amax(1)).clamp(max=H - 1)
    area = _edge(fx[:, 0], fy[:, 0], fx[:, 1], fy[:, 1], fx[:, 2], fy[:, 2])
    keep = ((fz > near).all(1) & (area != 0) & (x1 >= x0) & (y1 >= y0) & torch.isfinite(area)).nonzero()[:, 0]

    # Orient every kept triangle so that inside is where all three edge functions are positive (swap corners 1
    # and 2 of clockwise ones): an edge shared by two triangles is then walked in opposite directions, and its
    # edge function in one is exactly minus that in the other, so the top-left rule gives each centre to one.
    order = torch.where((area[keep] > 0)[:, None], torch.tensor([0, 1, 2], device=device),
                        torch.tensor([0, 2, 1], device=device))
    cx, cy, cz = (c[keep].gather(1, order) for c in (fx, fy, fz))
    # edge i runs from corner (i+1)%3 to (i+2)%3; top-left (y down): going up, or horizontal going right
    dx, dy = cx[:, [2, 0, 1]] - cx[:, [1, 2, 0]], cy[:, [2, 0, 1]] - cy[:, [1, 2, 0]]
    top_left = (dy < 0) | ((dy == 0) & (dx > 0))
    # e ≥ 0 as e > -tiny: edge functions of pixel-scale coordinates are 0 or far from the smallest normal float
    threshold = torch.where(top_left, torch.full_like(dx, -torch.finfo(dtype).tiny), torch.zeros_like(dx))
    table = torch.cat([cx, cy, 1.0 / cz, threshold, torch.stack([x0[keep], y0[keep], x1[keep], y1[keep]], 1)],
                      1)                                                              # (Fk, 16)

    # Group triangles by padded bounding-box size, and test each group's boxes as dense (n, ky, kx) tiles:
    # per-face values broadcast against per-row and per-column offsets, so no per-pixel gathers are needed.
    sizes = torch.tensor(_size_classes(max(W, H)), device=device)
    kx = torch.searchsorted(sizes, (x1[keep] - x0[keep] + 1).to(torch.int64))
    ky = torch.searchsorted(sizes, (y1[keep] - y0[keep] + 1).to(torch.int64))
    group = kx * len(sizes) + ky
    by_group = torch.argsort(group)
    table, keep = table[by_group], keep[by_group]                                     # groups are now slices
    groups, counts = torch.unique_consecutive(group[by_group], return_counts=True)
    key = torch.full((B * H * W,), _EMPTY, dtype=torch.int64, device=device)
    start = 0
    for g, count in zip(groups.tolist(), counts.tolist()):
        tx, ty = int(sizes[g // len(sizes)]), int(sizes[g % len(sizes)])
        step = max(1, chunk_pixels // (tx * ty))
        for lo in range(start, start + count, step):
            hi = min(lo + step, start + count)
            _scan(table[lo:hi], keep[lo:hi], tx, ty, key, nF, H, W)
        start += count

    hit = key != _EMPTY
    gface = torch.where(hit, key & 0xFFFFFFFF, torch.zeros_like(key))
    face_ids = torch.where(hit, gface % nF if nF else gface, torch.full_like(key, -1)).reshape(B, H, W)

    # barycentrics and depth of the winning faces, at the input precision
    bary = torch.zeros(B * H * W, 3, dtype=vertices.dtype, device=device)
    depth = torch.full((B * H * W,), float("inf"), dtype=vertices.dtype, device=device)
    pix = hit.nonzero()[:, 0]
    if pix.numel():
        g = gface[pix]
        px = (pix % W).to(vertices.dtype)
        py = ((pix // W) % H).to(vertices.dtype)
        ax, ay, az = fx[g], fy[g], fz[g]
        corners = [((i + 1) % 3, (i + 2) % 3) for i in range(3)]                       # edge opposite corner i
        w = torch.stack([_edge(ax[:, a], ay[:, a], ax[:, b], ay[:, b], px, py) for a, b in corners], 1) / az
        w = w / w.sum(1, keepdim=True)                                                # perspective-correct
        bary[pix] = w
        depth[pix] = (w * az).sum(1)
    return Fragments(face_ids=face_ids, bary=bary.reshape(B, H, W, 3), depth=depth.reshape(B, H, W))


def interpolate(fragments: Fragments, faces: Tensor, attributes: Tensor) -> Tensor:
    """Interpolate per-vertex attributes at the pixels: (V, C) or (B, V, C) → (B, H, W, C); 0 on background."""
    B, H, W = fragments.face_ids.shape
    if attributes.dim() == 2:
        attributes = attributes.expand(B, -1, -1)
    if attributes.dim() != 3 or attributes.shape[0] != B:
        raise ValueError(f"attributes must be (V, C) or (B={B}, V, C), got {tuple(attributes.shape)}")
    faces = faces.to(attributes.device, torch.int64)
    f = fragments.face_ids.clamp(min=0).reshape(B, -1)                               # (B, HW)
    verts = faces[f]                                                                 # (B, HW, 3)
    vals = torch.gather(attributes, 1, verts.reshape(B, -1, 1).expand(-1, -1, attributes.shape[-1]))
    vals = vals.reshape(B, H * W, 3, -1)
    out = (vals * fragments.bary.reshape(B, H * W, 3, 1).to(vals.dtype)).sum(2)
    return (out * fragments.mask.reshape(B, H * W, 1)).reshape(B, H, W, -1)


def part_map(fragments: Fragments, faces: Tensor, vertex_parts: Tensor) -> Tensor:
    """Part labels (B, H, W) int64: the label of the hit face's vertex with the largest barycentric weight
    (so part boundaries run through faces, as in a nearest-vertex labelling); 1 = background.

    faces: (F, 3); vertex_parts: (V,) or (B, V) int64 labels 2..25 (body.PosedBody.parts).
    """
    B, H, W = fragments.face_ids.shape
    faces = faces.to(fragments.face_ids.device, torch.int64)
    parts = vertex_parts.to(fragments.face_ids.device, torch.int64)
    parts = parts.expand(B, -1) if parts.dim() == 1 else parts
    corner = fragments.bary.argmax(-1, keepdim=True)                                 # (B, H, W, 1)
    vert = torch.gather(faces[fragments.face_ids.clamp(min=0)], -1, corner)[..., 0]  # (B, H, W)
    labels = torch.gather(parts, 1, vert.reshape(B, -1)).reshape(B, H, W)
    return torch.where(fragments.mask, labels, torch.ones_like(labels))


def parts_seen(posed, camera: Camera) -> Tensor:
    """Part labels (B, H, W) int64 of the posed bodies (body.PosedBody: vertices (B, V, 3) world, faces, parts) seen
    by the camera: `part_map` of their rasterisation."""
    return part_map(rasterize(posed.vertices, posed.faces, camera), posed.faces, posed.parts)


def winding_number(points: Tensor, vertices: Tensor, faces: Tensor) -> Tensor:
    """Generalised winding number (B, N) of points (B, N, 3) about the mesh vertices (B, V, 3), faces (F, 3): the
    solid angle the surface subtends at each point over 4π (Van Oosterom & Strackee's formula per triangle),
    ±1 inside a closed surface, 0 outside, and robust to small holes (about ½ only at the surface itself)."""
    faces = faces.to(vertices.device, torch.int64)
    a, b, c = (vertices[:, faces[:, k]][:, None] - points[:, :, None] for k in range(3))  # (B, N, F, 3)
    la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
    det = (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)
    den = la * lb * lc + (a * b).sum(-1) * lc + (a * c).sum(-1) * lb + (b * c).sum(-1) * la
    return 2 * torch.atan2(det, den).sum(-1) / (4 * math.pi)


def ray_distance(depth: Tensor, camera: Camera) -> Tensor:
    """Distance (B, H, W) along each pixel's unit ray to the surface whose camera z is `depth` (B, H, W), the
    rasteriser's depth: z / (camera z of a unit step along the ray). Background pixels stay meaningless."""
    _, directions = camera.rays()                                                   # (B, H·W, 3) world, unit
    cos = (directions @ camera.world_to_camera[:, :3, :3].transpose(1, 2))[..., 2]  # camera z of a unit step
    return depth / cos.reshape(depth.shape)


def part_palette() -> np.ndarray:
    """(26, 3) uint8 colours: 0 fake (black), 1 background (white), 2..25 parts, well separated hues."""
    colours = [(0, 0, 0), (255, 255, 255)]
    for k in range(24):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.55 + 0.35 * (k % 2), 0.95 - 0.25 * (k % 3 == 2))
        colours.append((round(255 * r), round(255 * g), round(255 * b)))
    return np.asarray(colours, dtype=np.uint8)

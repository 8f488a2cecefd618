"""Pure-torch z-buffer triangle rasteriser: face ids, perspective-correct barycentrics, depth, part maps.

3DHumanGAN conditions its generator and discriminator on part segmentation maps of the posed SMPL body (paper §3.3,
spec §2: labels 2..25 = the dominant skinning joint + 2, 1 = background). We make those maps, and the masks and
surface correspondences of the evaluation protocol (design.md §5), by rasterising the body mesh. No OpenGL, no
custom ops: the same code runs batched on CPU and CUDA (notes/feasibility.md §4(a) measured the approach).

Algorithm: project the vertices; list, for every triangle, the pixel centres inside its screen bounding box
(chunked so memory stays bounded however big the triangles are); keep the centres inside the triangle by edge
functions with the top-left fill rule (a centre exactly on an edge shared by two triangles belongs to exactly one);
keep the nearest per pixel with one `scatter_reduce(amin)` on an int64 key (float32 depth bits, then face index, so
equal depths resolve to the lower face index, deterministically); finally recompute barycentrics and depth of the
winning face at full precision. Triangles with a vertex at or behind the near plane are dropped whole (no
clipping): fine for bodies in front of the camera, which is all the renderer draws.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .camera import Camera

__all__ = ["Fragments", "rasterize", "part_map", "interpolate"]

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


def _chunks(counts: Tensor, budget: int) -> list[tuple[int, int]]:
    """Split faces (in order) into [start, end) runs of at most `budget` pixel candidates plus one face's count.

    A face joins the run in which its first candidate falls, so a run holds ≤ budget + (one face's bounding box).
    """
    if counts.numel() == 0:
        return []
    run = torch.div(torch.cumsum(counts, 0) - counts, budget, rounding_mode="floor")
    sizes = torch.unique_consecutive(run, return_counts=True)[1].tolist()
    ends = torch.tensor(sizes).cumsum(0).tolist()
    return list(zip([0] + ends[:-1], ends))


def rasterize(vertices: Tensor, faces: Tensor, camera: Camera, *, near: float = 1e-3,
              chunk_pixels: int = 1 << 21) -> Fragments:
    """Rasterise triangle meshes into the camera's image.

    vertices: (B, V, 3) float, in the camera's world frame (metres); faces: (F, 3) int64 vertex indices, shared
    by the batch; camera: Camera with B cameras (or 1, broadcast). near: triangles with any vertex at camera
    z ≤ near are dropped. chunk_pixels: at most this many (triangle, pixel) candidates are processed at once
    (plus one triangle's bounding box).
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
    device = vertices.device

    # per-vertex screen position and depth, then per-face corners (B·F, 3)
    xy, z = camera.project(vertices)
    fx = xy[..., 0][:, faces].reshape(B * nF, 3)
    fy = xy[..., 1][:, faces].reshape(B * nF, 3)
    fz = z[:, faces].reshape(B * nF, 3)
    x0 = torch.ceil(fx.amin(1)).clamp(min=0)
    x1 = torch.floor(fx.amax(1)).clamp(max=W - 1)
    y0 = torch.ceil(fy.amin(1)).clamp(min=0)
    y1 = torch.floor(fy.amax(1)).clamp(max=H - 1)
    area = _edge(fx[:, 0], fy[:, 0], fx[:, 1], fy[:, 1], fx[:, 2], fy[:, 2])
    ok = (fz > near).all(1) & (area != 0) & (x1 >= x0) & (y1 >= y0) & torch.isfinite(area)
    keep = ok.nonzero()[:, 0]
    if B * nF >= 2**31:
        raise ValueError(f"rasterize packs batch·faces into 31 bits; got B={B} × F={nF}; split the batch")
    x0, y0 = x0[keep], y0[keep]
    nx = (x1[keep] - x0 + 1).to(torch.int64)
    ny = (y1[keep] - y0 + 1).to(torch.int64)

    # per kept face: corners, inverse depths, orientation sign, top-left flags of the edges opposite each vertex
    s = torch.sign(area[keep])
    cx, cy, iz = fx[keep], fy[keep], 1.0 / fz[keep]
    nxt = [1, 2, 0]
    prv = [2, 0, 1]
    # edge i runs from vertex nxt[i] to prv[i] (opposite vertex i), in the orientation where inside is positive
    dx = (cx[:, prv] - cx[:, nxt]) * s[:, None]
    dy = (cy[:, prv] - cy[:, nxt]) * s[:, None]
    top_left = (dy < 0) | ((dy == 0) & (dx > 0))                                       # (Fk, 3) y points down

    key = torch.full((B * H * W,), _EMPTY, dtype=torch.int64, device=device)
    counts = nx * ny
    for start, end in _chunks(counts, chunk_pixels):
        c = counts[start:end]
        face = torch.repeat_interleave(torch.arange(start, end, device=device), c)
        local = torch.arange(face.numel(), device=device) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
        px = x0[face] + (local % nx[face]).to(vertices.dtype)
        py = y0[face] + (local // nx[face]).to(vertices.dtype)
        ax, ay, sf = cx[face], cy[face], s[face]
        e = [_edge(ax[:, nxt[i]], ay[:, nxt[i]], ax[:, prv[i]], ay[:, prv[i]], px, py) * sf for i in range(3)]
        tl = top_left[face]
        inside = torch.ones_like(px, dtype=torch.bool)
        for i in range(3):
            inside &= (e[i] > 0) | ((e[i] == 0) & tl[:, i])
        sel = inside.nonzero()[:, 0]
        if sel.numel() == 0:
            continue
        fsel = face[sel]
        izs = iz[fsel]
        w = torch.stack([e[i][sel] for i in range(3)], dim=1)
        inv_depth = (w * izs).sum(1) / w.sum(1)
        depth = (1.0 / inv_depth).to(torch.float32)
        gface = keep[fsel]                                                            # b·F + f
        b = gface // nF
        pix = b * (H * W) + py[sel].to(torch.int64) * W + px[sel].to(torch.int64)
        packed = (depth.view(torch.int32).to(torch.int64) << 32) | gface
        key.scatter_reduce_(0, pix, packed, reduce="amin")

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
        w = torch.stack([_edge(ax[:, nxt[i]], ay[:, nxt[i]], ax[:, prv[i]], ay[:, prv[i]], px, py)
                         for i in range(3)], dim=1) / fz[g]
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

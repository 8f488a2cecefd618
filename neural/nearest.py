"""Exact nearest-vertex search for the pose features (paper spec §1.4 step 2; official README §3).

Every sample point of the pose field needs its nearest posed body vertex. The official code uses pytorch3d's
brute-force `knn_points`; on this project's CPUs a brute-force search over 147,456 points × 6,890 vertices takes
about 20 s, so we keep it only as the reference (`nearest_naive`) and on CUDA, where it is fast.

The fast CPU search (`VertexBlocks`) is exact and never builds a points×vertices matrix:
1. the vertices are split into M = 2^L spatially compact blocks of G ≈ 32 (the leaves of a median kd-tree, built
   by L vectorised sort-and-halve steps); each block gets a bounding sphere (centre, radius);
2. a point's distance to the vertices of the block with the nearest centre is an upper bound U on its nearest
   distance; a block can hold the nearest vertex only if ‖p − centre‖ − radius ≤ U (triangle inequality);
3. the exact squared distances to the vertices of those candidate blocks (a handful per point) decide.
The candidate test uses ‖p‖² − 2p·c + ‖c‖² (one matmul) with a relative slack far above its rounding error, so it
can only keep extra blocks, never drop the right one. The final distances are computed exactly as in the brute
force, and ties go to the smallest vertex index in both, so fast and naive return identical results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["VertexBlocks", "NearestVertices", "nearest_naive", "squared_distances"]

_NO_INDEX = torch.iinfo(torch.int64).max


def squared_distances(vx: Tensor, vy: Tensor, vz: Tensor, px: Tensor, py: Tensor, pz: Tensor) -> Tensor:
    """(v − p)² summed over x, y, z in one fixed order, so every search path rounds identically.

    Coordinates broadcast against each other (planar layout: one tensor per axis).
    """
    dx = vx - px
    dx.mul_(dx)
    dy = vy - py
    dx.add_(dy.mul_(dy))
    dz = vz - pz
    return dx.add_(dz.mul_(dz))  # in place: this is the hot loop of the search


@torch.no_grad()
def nearest_naive(points: Tensor, vertices: Tensor, *, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Brute force: squared distance d2 (N,) and index (N,) int64 of the nearest vertex for every point.

    points (N, 3), vertices (V, 3), same frame. Ties go to the smallest vertex index. Memory: chunk × V floats.
    """
    _check(points, vertices)
    vx, vy, vz = (c[None] for c in vertices.unbind(-1))
    d2s, ids = [], []
    for p in points.split(chunk):
        d2 = squared_distances(vx, vy, vz, p[:, 0:1], p[:, 1:2], p[:, 2:3])
        best, index = d2.min(dim=1)  # first minimum = smallest index among exact ties
        d2s.append(best)
        ids.append(index)
    if not d2s:
        return points.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=points.device)
    return torch.cat(d2s), torch.cat(ids)


@dataclass(frozen=True)
class VertexBlocks:
    """One vertex set split into M spatially compact blocks of G vertices, for exact nearest-vertex queries.

    index (M, G) int64 vertex ids, ascending within a block (M·G ≥ V: the padding repeats vertex ids already in
    the block's neighbourhood); x, y, z (M, G) their coordinates; center (M, 3) and radius (M,) bounding spheres.
    """

    index: Tensor
    x: Tensor
    y: Tensor
    z: Tensor
    center: Tensor
    radius: Tensor

    @classmethod
    @torch.no_grad()
    def build(cls, vertices: Tensor, *, block_size: int = 32) -> VertexBlocks:
        """Split vertices (V, 3) into 2^L kd-tree leaves of about `block_size` vertices."""
        _check(vertices.new_zeros(0, 3), vertices)
        V = vertices.shape[0]
        levels = max(0, round(math.log2(V / block_size)))
        M = 2**levels
        G = -(-V // M)
        # Pad to M·G with second copies of vertices 0, 1, ...: a copy has its original's position and id, so it
        # changes no distance and no tie.
        ids = torch.arange(M * G, device=vertices.device) % V
        rows = ids[None]
        for _ in range(levels):  # halve every group along its widest axis at the median
            pts = vertices[rows]  # (groups, n, 3)
            axis = (pts.amax(1) - pts.amin(1)).argmax(-1)
            key = pts.gather(2, axis[:, None, None].expand(-1, pts.shape[1], 1))[..., 0]
            rows = rows.gather(1, key.argsort(dim=1, stable=True)).reshape(-1, rows.shape[1] // 2)
        rows = rows.sort(dim=1).values
        pts = vertices[rows]  # (M, G, 3)
        center = (pts.amax(1) + pts.amin(1)) / 2
        radius = (pts - center[:, None]).square().sum(-1).amax(1).sqrt()
        x, y, z = (c.contiguous() for c in pts.unbind(-1))
        return cls(index=rows, x=x, y=y, z=z, center=center, radius=radius)

    @torch.no_grad()
    def query(self, points: Tensor, *, chunk: int = 8192) -> tuple[Tensor, Tensor]:
        """Squared distance d2 (N,) and index (N,) int64 of the nearest vertex of every point (N, 3).

        Identical to `nearest_naive` (same arithmetic, same tie rule), in about O(N·(M + 6G)) work.
        """
        if points.dim() != 2 or points.shape[-1] != 3:
            raise ValueError(f"points must be (N, 3), got {tuple(points.shape)}")
        center_sq = self.center.square().sum(-1)
        # Rounding of the matmul form of ‖p − c‖² is ~1e-7 relative to ‖p‖² + ‖c‖²; 1e-5 of it is a safe margin.
        margin = 1e-5 * center_sq.amax()
        d2s, ids = [], []
        for p in points.split(chunk):
            n = p.shape[0]
            p_sq = p.square().sum(-1, keepdim=True)
            to_center = torch.addmm(center_sq[None].expand(n, -1), p, self.center.T, alpha=-2).add_(p_sq)
            px, py, pz = p[:, 0:1], p[:, 1:2], p[:, 2:3]
            b = to_center.argmin(1)
            upper = squared_distances(self.x[b], self.y[b], self.z[b], px, py, pz).amin(1)
            reach = (upper.sqrt()[:, None] + self.radius[None]).square_().add_(1e-5 * p_sq + margin)
            qi, bi = (to_center <= reach).nonzero(as_tuple=True)  # (query, block) candidate pairs
            d2 = squared_distances(self.x[bi], self.y[bi], self.z[bi], px[qi], py[qi], pz[qi])  # (pairs, G)
            pair_d2, pair_arg = d2.min(1)  # first minimum = smallest id in the block (rows are sorted)
            best = torch.full((n,), math.inf, dtype=p.dtype, device=p.device).scatter_reduce_(0, qi, pair_d2, "amin")
            pair_id = torch.where(pair_d2 == best[qi], self.index[bi, pair_arg], _NO_INDEX)
            index = torch.full((n,), _NO_INDEX, device=p.device).scatter_reduce_(0, qi, pair_id, "amin")
            if bool((index == _NO_INDEX).any()):
                raise ValueError("nearest-vertex query got non-finite points (NaN or inf); check the camera and "
                                 "body inputs")
            d2s.append(best)
            ids.append(index)
        if not d2s:
            return points.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=points.device)
        return torch.cat(d2s), torch.cat(ids)


class NearestVertices:
    """Nearest posed vertex for batches of points: built once per body batch, queried per chunk of points.

    vertices (B, V, 3). fast=True: `VertexBlocks` on CPU, chunked brute force on CUDA (fast there, no host sync);
    fast=False: brute force everywhere (the reference). Both return identical results.
    """

    def __init__(self, vertices: Tensor, *, fast: bool = True) -> None:
        if vertices.dim() != 3 or vertices.shape[-1] != 3 or vertices.shape[1] == 0:
            raise ValueError(f"vertices must be (B, V, 3) with V ≥ 1, got {tuple(vertices.shape)}")
        self.vertices = vertices.detach()
        self.blocks = None
        if fast and vertices.device.type == "cpu":
            self.blocks = [VertexBlocks.build(v) for v in self.vertices]

    def __call__(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """points (B, N, 3) → squared distance d2 (B, N) and vertex index (B, N) int64 (no gradient)."""
        B = self.vertices.shape[0]
        if points.dim() != 3 or points.shape[0] != B or points.shape[-1] != 3:
            raise ValueError(f"points must be (B={B}, N, 3), got {tuple(points.shape)}")
        points = points.detach()
        if self.blocks is not None:
            out = [blocks.query(p) for blocks, p in zip(self.blocks, points)]
        else:
            chunk = max(1, 2**27 // (4 * self.vertices.shape[1])) if points.is_cuda else 4096
            out = [nearest_naive(p, v, chunk=chunk) for p, v in zip(points, self.vertices)]
        return torch.stack([d for d, _ in out]), torch.stack([i for _, i in out])


def _check(points: Tensor, vertices: Tensor) -> None:
    if vertices.dim() != 2 or vertices.shape[-1] != 3 or vertices.shape[0] == 0:
        raise ValueError(f"vertices must be (V, 3) with V ≥ 1, got {tuple(vertices.shape)}")
    if points.dim() != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must be (N, 3), got {tuple(points.shape)}")

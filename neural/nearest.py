"""Exact nearest-vertex search for the pose features (docs/architecture.md §Pose features, step 2;
docs/official_conventions.md §Timings).

Every sample point of the pose field needs its nearest posed body vertex. The official code uses pytorch3d's
brute-force `knn_points`; on this project's CPUs a brute-force search over 147,456 points × 6,890 vertices takes
about 20 s, so we keep it only as the reference (`nearest_naive`); on an H100 it still took ~52 ms per 512×256
frame (147k points × 13.7k free-body vertices).

The fast search (`VertexBlocks`, CPU and CUDA) is exact and never builds a points×vertices matrix:
1. the vertices are split into M = 2^L spatially compact blocks of G ≈ 64 (the leaves of a median kd-tree, built
   by L vectorised sort-and-halve steps; for a batch of posed bodies, once from the rest pose, whose surface
   patches stay compact when posed); each block gets a bounding sphere (centre c, radius r) per body;
2. a point's distance to the vertices of the block of smallest power ‖p − c‖² − r² is an upper bound U on its
   nearest distance; a block can hold the nearest vertex only if ‖p − c‖ − r ≤ U (triangle inequality);
3. the exact squared distances to the vertices of those candidate blocks (a handful per point) decide.
The block tests use the matmul form ‖p‖² − 2p·c + ‖c‖² − r² (one matmul for all blocks) with a relative slack far
above its rounding error, so they can only keep extra blocks, never drop the right one. The final distances are
computed exactly as in the brute force, and ties go to the smallest vertex index in both, so fast and naive return
identical results.
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

    @staticmethod
    @torch.no_grad()
    def partition(vertices: Tensor, *, block_size: int = 64) -> Tensor:
        """(M, G) int64 vertex ids of the 2^L kd-tree leaves of vertices (V, 3), about `block_size` each, ascending
        within a leaf. Any partition gives exact queries; a compact one gives fast ones."""
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
        return rows.sort(dim=1).values

    @classmethod
    @torch.no_grad()
    def build(cls, vertices: Tensor, *, block_size: int = 64, rows: Tensor | None = None) -> VertexBlocks:
        """Blocks of vertices (V, 3): the kd-tree leaves of these vertices, or the given partition `rows` (M, G)
        (e.g. the leaves of the same mesh in its rest pose: posing bends a mesh, so its surface patches stay
        compact)."""
        return cls.build_batch(vertices[None], block_size=block_size, rows=rows)[0]

    @classmethod
    @torch.no_grad()
    def build_batch(cls, vertices: Tensor, *, block_size: int = 64, rows: Tensor | None = None) -> list[VertexBlocks]:
        """`build` for B meshes (B, V, 3) of one topology at once: one partition `rows` (M, G) for all (by default
        the kd-tree leaves of the first mesh)."""
        if rows is None:
            rows = cls.partition(vertices[0], block_size=block_size)
        pts = vertices[:, rows]  # (B, M, G, 3)
        center = (pts.amax(2) + pts.amin(2)) / 2
        radius = (pts - center[:, :, None]).square().sum(-1).amax(2).sqrt()
        x, y, z = (c.contiguous() for c in pts.unbind(-1))
        return [cls(index=rows, x=x[b], y=y[b], z=z[b], center=center[b], radius=radius[b])
                for b in range(vertices.shape[0])]

    @torch.no_grad()
    def query(self, points: Tensor, *, chunk: int | None = None) -> tuple[Tensor, Tensor]:
        """Squared distance d2 (N,) and index (N,) int64 of the nearest vertex of every point (N, 3).

        Identical to `nearest_naive` (same arithmetic, same tie rule), in about O(N·(M + 6G)) work. Default chunk:
        1024 points on a CPU (the (chunk, M) block tests stay in cache), 65536 on a GPU (each chunk's candidate
        count is one host sync).
        """
        chunk = chunk or (1024 if points.device.type == "cpu" else 65536)
        if points.dim() != 2 or points.shape[-1] != 3:
            raise ValueError(f"points must be (N, 3), got {tuple(points.shape)}")
        radius_sq = self.radius.square()
        power_bias = self.center.square().sum(-1) - radius_sq  # ‖c‖² − r²
        # Rounding of the matmul forms below is ~1e-7 relative to the squared lengths involved; 1e-5 of them is a
        # safe margin (it can only keep extra blocks).
        scale = 2 * self.center.square().sum(-1).amax() + radius_sq.amax()
        r_max = self.radius.amax()
        d2s, ids = [], []
        for p in points.split(chunk):
            p_sq = p.square().sum(-1)
            # power of p w.r.t. each bounding sphere, ‖p − c‖² − r², less ‖p‖²: one matmul, (n, M)
            power = torch.addmm(power_bias, p, self.center.T, alpha=-2)
            px, py, pz = p[:, 0:1], p[:, 1:2], p[:, 2:3]
            b = power.argmin(1)  # the vertices of this block bound the nearest distance from above
            upper = squared_distances(*self._rows(b), px, py, pz).amin(1)
            # block k can hold a vertex within √upper = u only if ‖p − c‖ ≤ u + r, i.e. ‖p − c‖² − r² − 2ur ≤ u²
            u = upper.sqrt()
            slack = 1e-5 * (p_sq + scale + (u + r_max).square())
            power.addr_(u, self.radius, alpha=-2)
            qi, bi = (power <= (upper - p_sq + slack)[:, None]).nonzero(as_tuple=True)  # (query, block) pairs
            pq = p.index_select(0, qi)
            d2 = squared_distances(*self._rows(bi), pq[:, 0:1], pq[:, 1:2], pq[:, 2:3])  # (pairs, G)
            pair_d2, pair_arg = d2.min(1)  # first minimum = smallest id in the block (rows are sorted)
            best = torch.full((n := p.shape[0],), math.inf, dtype=p.dtype, device=p.device)
            best.scatter_reduce_(0, qi, pair_d2, "amin")
            pair_id = torch.where(pair_d2 == best[qi], self.index.view(-1)[bi * self.index.shape[1] + pair_arg],
                                  _NO_INDEX)
            index = torch.full((n,), _NO_INDEX, device=p.device).scatter_reduce_(0, qi, pair_id, "amin")
            if bool((index == _NO_INDEX).any()):
                raise ValueError("nearest-vertex query got non-finite points (NaN or inf); check the camera and "
                                 "body inputs")
            d2s.append(best)
            ids.append(index)
        if not d2s:
            return points.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=points.device)
        return torch.cat(d2s), torch.cat(ids)

    def _rows(self, blocks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # index_select: a row gather several times faster than advanced indexing on CPU
        return tuple(c.index_select(0, blocks) for c in (self.x, self.y, self.z))


class NearestVertices:
    """Nearest posed vertex for batches of points: built once per body batch, queried per chunk of points.

    vertices (B, V, 3). Searched through `VertexBlocks`, or with brute_force=True by chunked brute force (the
    reference). Both return
    identical results. rest (V, 3): the same mesh in its rest pose (e.g. the template); its kd-tree leaves then
    partition every posed mesh of the batch, one partition instead of B (posing bends a mesh, so its surface patches
    stay compact). Results never depend on it.
    """

    def __init__(self, vertices: Tensor, *, brute_force: bool = False, rest: Tensor | None = None) -> None:
        if vertices.dim() != 3 or vertices.shape[-1] != 3 or vertices.shape[1] == 0:
            raise ValueError(f"vertices must be (B, V, 3) with V ≥ 1, got {tuple(vertices.shape)}")
        if rest is not None and rest.shape != vertices.shape[1:]:
            raise ValueError(f"rest must be the rest pose (V, 3) of the posed vertices {tuple(vertices.shape)}, "
                             f"got {tuple(rest.shape)}")
        self.vertices = vertices.detach()
        self.blocks = None
        if not brute_force:
            if rest is None:
                self.blocks = [VertexBlocks.build(v) for v in self.vertices]
            else:
                rows = VertexBlocks.partition(rest.detach().to(vertices))
                self.blocks = VertexBlocks.build_batch(self.vertices, rows=rows)

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

"""3D pose mapping network: a posed body + a camera → the pose style map (paper §3.2, Fig. 2;
docs/architecture.md §Pose features, §Pose field, §Volume rendering; docs/official_conventions.md §Forward pass, steps
1–6).

1. `condition`: the posed body moved into the *generator frame* (the official "world"): cano = Rx(π)·R_root⁻¹
   applied to (p − transl), so every body stands upright, y down, facing −z; the root rotation goes into the
   camera instead (the caller transforms its camera by `canonical_frame`).
2. `sample_rays` (volume_rendering.py): S stratified samples per pixel in a slab around the frame's origin.
3. `geo_features`: per sample point a 31-D pose feature: joint distances, the point carried back to the rest pose
   by inverse LBS with its nearest posed vertex's skinning weights, that vertex's template coordinate, and the
   distance to it (nearest vertex: nearest.py).
4. `PoseField` (pose_field.py): a FiLM-SIREN whose frequencies and phases come from `PoseMLP` fed zeros.
5. `composite` (volume_rendering.py) → `PoseMap`: style map, rgb, opacity and depth at render resolution.
   readout "surface" (ours; cpu-small, the `surface-readout` ablation elsewhere) keeps the volume's opacity and
   depth but reads the features once, at the body's first surface along each ray (rasterised at the pixel centre):
   F = f(x_surface). Rays that miss the body (the silhouette's soft halo) read at their expected termination
   t̄ = Σ w·t / Σ w, over white: O·f(o + t̄·d) + 1 − O. With `readout_subsamples` n > 1 this is done for n×n
   subpixels of each style-map pixel (misses at the pixel's own t̄) and averaged: an area average, as the backbone's
   bilinear upsampling expects, instead of one point whose choice jumps between views on high-contrast patterns.
   The volume sum mixes features over the depth range the density spreads along the ray, a range that changes with
   the view; one point on the surface does not (neural/assets/DEFAULT_MODEL.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .appearance import sample_latents
from .body import PosedBody
from .camera import Camera
from .config import GeneratorConfig
from .nearest import NearestVertices
from .pose_field import OFFICIAL_PREFIXES, PoseField, PoseMLP
from .raster import interpolate, rasterize
from .skeleton import NUM_JOINTS
from .volume_rendering import composite, sample_rays

__all__ = ["OFFICIAL_PREFIXES", "PoseCondition", "PoseMap", "PoseMappingNetwork", "canonical_frame", "condition",
           "geo_features"]

_CHUNK_FLOATS = {"cpu": 2**21, "cuda": 2**26}  # widest field activation per chunk: 8 MiB (cache-sized) / 256 MiB


def _chunk_floats(x: Tensor) -> int:
    return _CHUNK_FLOATS.get(x.device.type, _CHUNK_FLOATS["cpu"])


@dataclass(frozen=True)
class PoseCondition:
    """The body as the pose mapping network sees it, in the generator frame (metres, y down, facing −z).

    vertices (B, V, 3) posed by LBS of the shaped T-pose (no pose blend shapes, as the official loader);
    joints (B, 24, 3); transforms (B, 24, 4, 4) rest (shaped T-pose, body frame) → generator frame, the official
    `fk_matrices` = cano·A; weights (V, 24) skinning; template (V, 3) the raw mean template `v_template`;
    faces (F, 3) int64, needed only by the surface readout (the official inputs have none).
    """

    vertices: Tensor
    joints: Tensor
    transforms: Tensor
    weights: Tensor
    template: Tensor
    faces: Tensor | None = None

    def __post_init__(self) -> None:
        B, V = self.vertices.shape[:2] if self.vertices.dim() == 3 else (-1, -1)
        expected = {"vertices": (B, V, 3), "joints": (B, NUM_JOINTS, 3), "transforms": (B, NUM_JOINTS, 4, 4),
                    "weights": (V, NUM_JOINTS), "template": (V, 3)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape or B < 1:
                raise ValueError(f"PoseCondition.{name} must be {shape} (B, V from vertices (B, V, 3)), "
                                 f"got {tuple(getattr(self, name).shape)}")

    @property
    def batch_size(self) -> int:
        return self.vertices.shape[0]


def canonical_frame(posed: PosedBody) -> Tensor:
    """(B, 4, 4) rigid body frame → generator frame: p ↦ Rx(π)·R_root⁻¹·(p − transl)."""
    flip = torch.diag(posed.root_rotation.new_tensor([1.0, -1.0, -1.0]))
    rotation = flip @ posed.root_rotation.transpose(1, 2)
    out = torch.zeros(posed.transl.shape[0], 4, 4, dtype=rotation.dtype, device=rotation.device)
    out[:, :3, :3] = rotation
    out[:, :3, 3] = -(rotation @ posed.transl[..., None])[..., 0]
    out[:, 3, 3] = 1
    return out


def condition(posed: PosedBody) -> tuple[PoseCondition, Tensor]:
    """The pose condition of a posed body and the body → generator frame transform cano (B, 4, 4).

    A camera given in the body frame sees the same picture as `camera.transformed(cano)` in the generator frame.
    """
    cano = canonical_frame(posed)
    transforms = cano[:, None] @ posed.transforms
    blended = torch.einsum("vk,bkij->bvij", posed.weights, transforms[:, :, :3])  # (B, V, 3, 4)
    vertices = (blended[..., :3] @ posed.shaped[..., None])[..., 0] + blended[..., 3]
    joints = posed.joints @ cano[:, :3, :3].transpose(1, 2) + cano[:, None, :3, 3]
    body = PoseCondition(vertices=vertices, joints=joints, transforms=transforms, weights=posed.weights,
                         template=posed.template, faces=posed.faces)
    return body, cano


def geo_features(points: Tensor, body: PoseCondition, order: Literal["default", "legacy"] = "default", *,
                 nearest: tuple[Tensor, Tensor] | None = None, fast: bool = True) -> Tensor:
    """The 31-D pose feature of points (B, N, 3) in the generator frame → (B, N, 31).

    j (24) = ‖p − J_k‖/2.4; c (3) = (M·[p; 1]) with M = Σ_k W[v*, k]·transforms_k⁻¹ (inverse LBS with the nearest
    posed vertex v*'s weights), as (c_x/2, (c_y + 0.2)/2, c_z/1.3); t (3) = template[v*] as (t_x, t_y + 0.35,
    t_z/0.2); d (1) = ‖p − v*‖/1.3. Order "default" [c, j, t, d]; "legacy" (the released 512 model) [j, c, t, d].
    nearest: a precomputed (d2, index (B, N)); else searched here (fast or brute force, identical). Gradients
    flow to points and body, never through the choice of v*.
    """
    B, N = points.shape[:2]
    if points.shape != (B, N, 3) or B != body.batch_size:
        raise ValueError(f"points must be (B={body.batch_size}, N, 3), got {tuple(points.shape)}")
    if nearest is None:
        nearest = NearestVertices(body.vertices, brute_force=not fast, rest=body.template)(points)
    index = nearest[1]
    joint_dist = (points[:, :, None, :] - body.joints[:, None]).norm(dim=-1) / 2.4
    # inv_ex: linalg.inv's singularity check is a host sync on CUDA; LBS transforms are rigid, never singular
    inverse = torch.linalg.inv_ex(body.transforms).inverse.reshape(B, NUM_JOINTS, 16)[..., :12]
    blended = (body.weights[index] @ inverse).reshape(B, N, 3, 4)
    c = (blended[..., :3] @ points[..., None])[..., 0] + blended[..., 3]
    canonical = torch.stack([c[..., 0] / 2, (c[..., 1] + 0.2) / 2, c[..., 2] / 1.3], dim=-1)
    t = body.template[index]
    template = torch.stack([t[..., 0], t[..., 1] + 0.35, t[..., 2] / 0.2], dim=-1)
    vertex = body.vertices[torch.arange(B, device=index.device)[:, None], index]
    dist = (points - vertex).square().sum(-1, keepdim=True).sqrt() / 1.3
    if order == "legacy":
        return torch.cat([joint_dist, canonical, template, dist], dim=-1)
    if order == "default":
        return torch.cat([canonical, joint_dist, template, dist], dim=-1)
    raise ValueError(f"order must be 'default' or 'legacy', got {order!r}")


@dataclass(frozen=True)
class PoseMap:
    """The rendered pose field at the camera's resolution h × w: style_map (B, Ns, h, w) (white background ≈ 1 in
    every channel), rgb (B, 3, h, w) in [0, 1] plus background (the official ×2−1 comes later, for display only),
    opacity (B, 1, h, w) Σ w before any fill, depth (B, 1, h, w) Σ w·t, distance along the unit ray (not z),
    optical_depth (B, 1, h, w) the slab's τ (volume_rendering.composite)."""

    style_map: Tensor
    rgb: Tensor
    opacity: Tensor
    depth: Tensor
    optical_depth: Tensor


class PoseMappingNetwork(nn.Module):
    """The 3D pose mapping network: pose MLP (`mlp`) + FiLM-SIREN pose field (`field`) + volume rendering.

    Buffers `freq_avg`, `phase_avg` (blocks·H,) are the truncation means; fill them with
    `compute_truncation_means` whenever the weights change (after training, after an import) before ψ ≠ 1.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        H, blocks = config.hidden_dim, config.field_blocks
        self.mlp = PoseMLP(latent_dim=config.latent_dim, hidden_dim=H, blocks=blocks)
        self.field = PoseField(hidden_dim=H, feature_dim=config.feature_dim, blocks=blocks,
                               side_length=config.side_length)
        self.register_buffer("freq_avg", torch.zeros(blocks * H))
        self.register_buffer("phase_avg", torch.zeros(blocks * H))

    @torch.no_grad()
    def compute_truncation_means(self, *, seed: int = 0, n: int = 10_000) -> None:
        """Mean freq and phase of the MLP over n latents z ~ N(0, I) drawn on the CPU from `seed` (the same draw
        as `AppearanceMapping.compute_truncation_mean`, as the official code pushes one batch through both).
        At inference the MLP is fed zeros; this random-z mean is still what ψ mixes in
        (docs/official_conventions.md §Forward pass, step 2)."""
        z = sample_latents(seed, n, self.config.latent_dim)
        freq_sum = torch.zeros_like(self.freq_avg, dtype=torch.float64)
        phase_sum = torch.zeros_like(self.phase_avg, dtype=torch.float64)
        for chunk in z.split(1000):
            freq, phase = self.mlp(chunk.to(self.freq_avg))
            freq_sum += freq.sum(0, dtype=torch.float64)
            phase_sum += phase.sum(0, dtype=torch.float64)
        self.freq_avg.copy_(freq_sum / n)
        self.phase_avg.copy_(phase_sum / n)

    def modulation(self, psi: float = 1.0) -> tuple[Tensor, Tensor]:
        """The field's raw freq and phase (1, blocks·H): the MLP fed zeros, truncated toward the means by ψ."""
        zeros = self.freq_avg.new_zeros(1, self.config.latent_dim)
        freq, phase = self.mlp(zeros)
        if psi != 1.0:
            freq = self.freq_avg + psi * (freq - self.freq_avg)
            phase = self.phase_avg + psi * (phase - self.phase_avg)
        return freq, phase

    def features_at(self, points: Tensor, body: PoseCondition, *, psi: float = 1.0, fast: bool = True) -> Tensor:
        """The pose field at arbitrary points (B, N, 3), generator frame → (B, N, 3 + Ns + 1) =
        [rgb in (0, 1), feature (Ns), σ raw density], in chunks of bounded memory. Always float32 (see forward)."""
        with torch.autocast(points.device.type, enabled=False):
            nearest = NearestVertices(body.vertices, brute_force=not fast, rest=body.template)
            return self._field(points, body, self._evaluator(psi, fast), nearest)

    def forward(self, body: PoseCondition, camera: Camera, *, psi: float = 1.0, jitter: Tensor | None = None,
                rng: torch.Generator | None = None, last_back: bool = False, noise_std: float = 0.0,
                fast: bool = True, readout_scale: int = 1) -> PoseMap:
        """Render the pose field through `camera` (any resolution h × w, in the generator frame: the caller's
        camera transformed by `cano` from `condition`).

        readout_scale k > 1 (surface readout only): the style map at k·h × k·w, its pixels that meet the body read
        at their own surface point, the others the h × w map's features bilinearly upsampled; opacity and depth
        stay at h × w. Where the body is seen this equals rendering the field at k× (the volume only decides the
        pixels that miss it), at the cost of the k²·h·w surface points instead of k²·h·w·S samples.

        jitter (B, h·w, S) uniform draws reproduce a recorded stratified sampling; rng draws them (training);
        neither samples bin centres. last_back: the official inference fill. noise_std: density noise (training).
        fast=False is the faithful reference (brute-force nearest vertex, literal field); both give the same map.
        Always float32, also inside an autocast region: sin(30·…) layers turn bf16 rounding into O(1) errors
        (0.03 mean, 1.2 max on the paper-512 style map under CUDA bf16 autocast).
        """
        if camera.batch_size != body.batch_size:
            raise ValueError(f"camera batch {camera.batch_size} != body batch {body.batch_size}")
        if self.config.readout == "surface":
            if last_back:
                raise ValueError("last_back (the official fill) belongs to the volume readout, not 'surface'")
            if body.faces is None:
                raise ValueError("the surface readout rasterises the body: PoseCondition.faces is required")
        if int(readout_scale) != readout_scale or readout_scale < 1 or (
                readout_scale > 1 and (self.config.readout != "surface" or self.config.readout_subsamples != 1)):
            raise ValueError(f"readout_scale {readout_scale!r}: a positive integer, and > 1 only with the surface "
                             "readout (readout_subsamples 1); render a volume readout through a finer camera instead")
        with torch.autocast(camera.K.device.type, enabled=False):
            pose = self._render(body, camera, psi=psi, jitter=jitter, rng=rng, last_back=last_back,
                                noise_std=noise_std, fast=fast)
            return pose if readout_scale == 1 else self._fine_surface(pose, body, camera, psi, fast, readout_scale)

    def _fine_surface(self, pose: PoseMap, body: PoseCondition, camera: Camera, psi: float, fast: bool,
                      k: int) -> PoseMap:
        """`pose` (h × w) with its style map and rgb replaced by k× finer ones (see forward's readout_scale)."""
        fine = camera.resized(k * camera.width, k * camera.height)
        B = body.batch_size
        with torch.no_grad():
            fragments = rasterize(body.vertices, body.faces, fine)
            surface = interpolate(fragments, body.faces, body.vertices).reshape(B, -1, 3)
        hit = fragments.mask.reshape(B, -1)
        coarse = torch.cat([pose.rgb, pose.style_map], 1)
        out = F.interpolate(coarse, size=(fine.height, fine.width), mode="bilinear", align_corners=False)
        out = out.flatten(2).transpose(1, 2).clone()                                      # (B, k²hw, 3 + Ns)
        evaluate = self._evaluator(psi, fast)
        for b in range(B):  # each image reads only its own hits, however many
            index = hit[b].nonzero()[:, 0]
            if len(index):
                nearest = NearestVertices(body.vertices[b:b + 1], brute_force=not fast, rest=body.template)
                f = self._field(surface[b:b + 1, index], _take_body(body, b), evaluate, nearest)
                out[b, index] = f[0, :, :-1]
        image = out.transpose(1, 2).reshape(B, -1, fine.height, fine.width)
        return PoseMap(style_map=image[:, 3:], rgb=image[:, :3], opacity=pose.opacity, depth=pose.depth,
                       optical_depth=pose.optical_depth)

    def _render(self, body: PoseCondition, camera: Camera, *, psi: float, jitter: Tensor | None,
                rng: torch.Generator | None, last_back: bool, noise_std: float, fast: bool) -> PoseMap:
        cfg = self.config
        samples = sample_rays(camera, num_samples=cfg.num_samples, ray_start=cfg.ray_start, ray_end=cfg.ray_end,
                              jitter=jitter, rng=rng)
        B, R, S = samples.t.shape
        evaluate = self._evaluator(psi, fast)
        nearest = NearestVertices(body.vertices, brute_force=not fast, rest=body.template)
        rays_per_chunk = max(1, _chunk_floats(samples.t) // (S * 2 * cfg.hidden_dim))
        h, w, n = camera.height, camera.width, cfg.readout_subsamples
        if cfg.readout == "surface":
            with torch.no_grad():  # the body is given: no gradient flows into it anyway
                fragments = rasterize(body.vertices, body.faces, camera.resized(n * w, n * h))
                # (B, n·h, n·w) subpixels → (B, R, n², ·): the n×n subpixels of each style-map pixel
                surface = interpolate(fragments, body.faces, body.vertices).reshape(B, h, n, w, n, 3)
                surface = surface.permute(0, 1, 3, 2, 4, 5).reshape(B, R, n * n, 3)
                hit = fragments.mask.reshape(B, h, n, w, n).permute(0, 1, 3, 2, 4).reshape(B, R, n * n, 1)
        features, opacity, depth, optical_depth = [], [], [], []
        for start in range(0, R, rays_per_chunk):
            rays = slice(start, start + rays_per_chunk)
            points, t = samples.points[:, rays], samples.t[:, rays]
            out = self._field(points.reshape(B, -1, 3), body, evaluate, nearest)
            out = out.reshape(*t.shape, -1)
            # the slab is centred on the body's depth: for a body that reaches behind the camera its near end
            # lies behind the camera, where the ray's points belong to nothing the camera sees
            sigma = torch.where(t > 0, out[..., -1], torch.full_like(out[..., -1], -1.0))
            rendered = composite(out[..., :-1], sigma, t, last_back=last_back, noise_std=noise_std, rng=rng)
            if cfg.readout == "surface":
                O = rendered.opacity[..., None, None]  # (B, r, 1, 1)
                t_end = rendered.depth[..., None] / O[..., 0].clamp_min(1e-6)  # t̄: in the slab; O·t̄ = Σ w·t exactly
                end = samples.origins[:, rays] + samples.directions[:, rays] * t_end
                sub_hit = hit[:, rays]
                ends = torch.where(sub_hit, surface[:, rays], end[:, :, None])  # (B, r, n², 3)
                f = self._field(ends.reshape(B, -1, 3), body, evaluate, nearest)[..., :-1]
                f = f.reshape(*ends.shape[:3], -1)
                # a subpixel that meets the body is opaque; the pixel is the mean of its n² subpixels (area average)
                features.append(torch.where(sub_hit, f, O * f + (1 - O)).mean(2))
            else:
                features.append(rendered.features)
            opacity.append(rendered.opacity)
            depth.append(rendered.depth)
            optical_depth.append(rendered.optical_depth)

        def image(x: Tensor) -> Tensor:  # (B, R, C) row-major rays → (B, C, h, w)
            return x.reshape(B, h, w, -1).permute(0, 3, 1, 2)

        features = image(torch.cat(features, dim=1))
        return PoseMap(style_map=features[:, 3:], rgb=features[:, :3], opacity=image(torch.cat(opacity, 1)[..., None]),
                       depth=image(torch.cat(depth, 1)[..., None]),
                       optical_depth=image(torch.cat(optical_depth, 1)[..., None]))

    def _evaluator(self, psi: float, folded: bool) -> Callable[[Tensor, Tensor], Tensor]:
        """points (B, n, 3), geo (B, n, 31) → field output (B, n, 3 + Ns + 1): literal, or folded."""
        freq, phase = self.modulation(psi)
        if not folded:
            return lambda p, geo: self.field(p, geo, freq, phase)
        folded = self.field.fold(freq, phase)
        return lambda p, geo: folded(p.reshape(-1, 3), geo.reshape(-1, geo.shape[-1])).reshape(*p.shape[:2], -1)

    def _field(self, points: Tensor, body: PoseCondition, evaluate: Callable[[Tensor, Tensor], Tensor],
               nearest: NearestVertices) -> Tensor:
        chunk = max(1, _chunk_floats(points) // (2 * self.config.hidden_dim))
        outs = []
        for p in points.split(chunk, dim=1):
            outs.append(evaluate(p, geo_features(p, body, self.config.feature_order, nearest=nearest(p))))
        return torch.cat(outs, dim=1)


def _take_body(body: PoseCondition, b: int) -> PoseCondition:
    return PoseCondition(vertices=body.vertices[b:b + 1], joints=body.joints[b:b + 1],
                         transforms=body.transforms[b:b + 1], weights=body.weights, template=body.template,
                         faces=body.faces)


"""The 3DHumanGAN generator (paper Figure 2; docs/architecture.md): appearance mapping z → w (§Appearance mapping), the
3D pose mapping network volume-rendered into a low-resolution pose style map (docs/architecture.md §Pose field), and the
pixel-wise backbone (docs/architecture.md §Backbone).

`forward` takes a posed body and a camera in the *body* frame at the output resolution; the generator moves both
into its own canonical frame (`pose_mapping.condition`: root rotation and translation removed, y down), renders the
pose field through the camera resized to the style-map resolution, and runs the backbone at full resolution.
`prepare` + `synthesize` split the same computation so that a renderer can draw any tiles of pixels of one image
without redoing the per-image work.

Parameter layout: `appearance.*` (appearance.py), `pose_mapping.*` (pose_mapping.py), `backbone.*` (backbone.py);
each module's docstring gives its official-key mapping. Ablations (paper Table 2) are config fields:
`normalization="instance"`, `backbone="upsampling"`, `conditioning="feed_forward"` (the pose field rendered at full
resolution is the backbone's input feature; every block is styled by w).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import pose_mapping as pm
from .appearance import AppearanceMapping, sample_latents
from .backbone import Backbone
from .backbone_upsampling import UpsamplingBackbone
from .config import GeneratorConfig

TRUNCATION_SEED = 0
TRUNCATION_SAMPLES = 10_000


@dataclass(frozen=True)
class GeneratorOutput:
    image: Tensor      # (B, 3, H, W) in [-1, 1], not clamped; (B, 3, N) when rendered at `pixels`
    style_map: Tensor  # (B, Ns, h, w) rendered pose styles (h×w = render size; H×W for feed_forward)
    opacity: Tensor    # (B, 1, h, w) accumulated opacity of the pose field
    depth: Tensor      # (B, 1, h, w) expected ray distance t of the pose field (generator frame, metres)


@dataclass(frozen=True)
class Styles:
    """The per-image state that `prepare` computes once and every `synthesize` tile reuses."""

    w: Tensor          # (B, Ns) truncated appearance code
    pose: pm.PoseMap   # the rendered pose field: style_map, rgb, opacity, depth
    folded: dict | None  # the backbone's folded fast-path constants (Backbone.fold), or None
    scale: int = 1     # the image is rendered at (H·scale, W·scale) (`Generator.prepare`)


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.appearance = AppearanceMapping(latent_dim=config.latent_dim, style_dim=config.feature_dim,
                                            num_layers=config.mapping_layers,
                                            lr_multiplier=config.mapping_lr_multiplier)
        self.pose_mapping = pm.PoseMappingNetwork(config)
        if config.backbone == "pixelwise":
            self.backbone = Backbone(config)
        else:
            self.backbone = UpsamplingBackbone(config)

    def sample_z(self, seed: int, batch: int = 1) -> Tensor:
        """z (batch, latent_dim) ~ N(0, I), drawn on the CPU from `seed`: the same appearance on every device."""
        return sample_latents(seed, batch, self.config.latent_dim)

    @torch.no_grad()
    def compute_truncation_means(self, *, seed: int = TRUNCATION_SEED, n: int = TRUNCATION_SAMPLES) -> None:
        """Fill the truncation means of both mapping networks from the same n latents (as the official code does)."""
        self.appearance.compute_truncation_mean(seed=seed, n=n)
        self.pose_mapping.compute_truncation_means(seed=seed, n=n)

    def prepare(self, z: Tensor, body, camera, *, psi: float = 1.0, jitter: Tensor | None = None,
                rng: torch.Generator | None = None, last_back: bool = False, noise_std: float = 0.0,
                fast: bool = True, style_scale: int = 1) -> Styles:
        """Mapping networks and the rendered pose field. z (B, latent_dim); body: PosedBody (B); camera: Camera
        (B) in the body frame at the output resolution. jitter (B, h·w, S) recorded uniform draws, or rng
        to draw them, else bin centres (PoseMappingNetwork.forward); last_back: the official inference's
        background rule (docs/official_conventions.md §Forward pass, step 6); noise_std: density noise (training only).

        Detail beyond the model's resolution: a camera of (k·W, k·H) pixels renders the image k times finer (the
        backbone is a pixel-wise function of continuous coordinates); the pose field is rendered at style_scale
        times its own resolution (1: the model's map, upsampled further by the backbone; the pose field is a 3D
        function, so any size can be rendered), 1 ≤ style_scale ≤ k."""
        config = self.config
        scale = camera.width // config.width
        if scale < 1 or (camera.width, camera.height) != (config.width * scale, config.height * scale):
            raise ValueError(f"camera is {camera.width}×{camera.height}; this generator renders "
                             f"{config.width}×{config.height} or an integer multiple of it (use crop_camera(..., "
                             f"width={config.width}, height={config.height}) and Camera.resized)")
        if int(style_scale) != style_scale or not 1 <= style_scale <= scale:
            raise ValueError(f"style_scale must be an integer from 1 to the image scale {scale}, got {style_scale!r}")
        if z.ndim != 2 or z.shape[0] != camera.K.shape[0]:
            raise ValueError(f"z must be (B, {config.latent_dim}) with B = the camera batch "
                             f"{camera.K.shape[0]}; got {tuple(z.shape)}")
        w = self.appearance(z, psi=psi)
        # Geometry and the SIREN (sin(30·x) of metre-scale inputs) stay in float32 under a bf16 autocast: bf16
        # rounds a 3 m camera distance to ±1 cm and the sine phases by ~0.1 rad. The backbone takes bf16 well.
        with torch.autocast(z.device.type, enabled=False):
            condition, body_to_generator = pm.condition(body)
            canonical = camera.transformed(body_to_generator)
            readout_scale = 1
            if config.conditioning == "styles":
                # the surface readout reads a finer map at the body's surface over the model's own volume
                readout_scale = style_scale if config.readout == "surface" and config.readout_subsamples == 1 else 1
                volume_scale = style_scale // readout_scale
                canonical = canonical.resized(config.render_width * volume_scale,
                                              config.render_height * volume_scale)
            pose = self.pose_mapping(condition, canonical, psi=psi, jitter=jitter, rng=rng,
                                     last_back=last_back, noise_std=noise_std, fast=fast,
                                     readout_scale=readout_scale)
        folded = None
        if fast and not self.training and isinstance(self.backbone, Backbone) \
                and config.normalization == "batch":
            folded = self.backbone.fold(w, pose.style_map)
        return Styles(w=w, pose=pose, folded=folded, scale=scale)

    def synthesize(self, styles: Styles, *, pixels: Tensor | None = None, fast: bool = True,
                   tile_pixels: int | None = None) -> Tensor:
        """The backbone: image (B, 3, H·s, W·s) (s = styles.scale), or (B, 3, N) at pixels (N, 2) int64 (x, y),
        each pixel exact."""
        return self.backbone(styles.pose.style_map, styles.w, pixels=pixels, fast=fast, tile_pixels=tile_pixels,
                             folded=styles.folded if fast else None, scale=styles.scale)

    def opacity(self, styles: Styles) -> Tensor:
        """(B, 1, h, w) opacity of the rendered pose field."""
        return styles.pose.opacity

    def forward(self, z: Tensor, body, camera, *, psi: float = 1.0, jitter: Tensor | None = None,
                rng: torch.Generator | None = None, last_back: bool = False, noise_std: float = 0.0,
                pixels: Tensor | None = None, fast: bool = True) -> GeneratorOutput:
        """z (B, latent_dim), body: PosedBody (B), camera: Camera (B) in the body frame at the output resolution
        → GeneratorOutput. pixels (N, 2) int64 (x, y): only those output pixels (exact; eval mode)."""
        styles = self.prepare(z, body, camera, psi=psi, jitter=jitter, rng=rng, last_back=last_back,
                              noise_std=noise_std, fast=fast)
        image = self.synthesize(styles, pixels=pixels, fast=fast)
        return GeneratorOutput(image=image, style_map=styles.pose.style_map, opacity=styles.pose.opacity,
                               depth=styles.pose.depth)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The groups trained with their own learning rates (docs/architecture.md §Optimisation): pose MLP and SIREN
        (×0.05), appearance mapping and backbone (×1). Every parameter is in exactly one group."""
        return {"pose_mlp": list(self.pose_mapping.mlp.parameters()),
                "pose_field": list(self.pose_mapping.field.parameters()),
                "appearance": list(self.appearance.parameters()),
                "backbone": list(self.backbone.parameters())}

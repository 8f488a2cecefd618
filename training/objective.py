"""The training objective of one iteration (paper §3.4; docs/architecture.md §Optimisation), apart from the loop
that steps the optimisers: what the iteration draws (`Objective.draw`), the discriminator's terms and the
generator's, each returned by name so the loop logs and watches exactly what was optimised.

Per iteration: the batch's SMPL fits and cameras condition G. Step types cycle with period 8: on "rotate" steps G
renders from the batch's cameras turned about the body (yaw ~ N(0, σ_yaw), pitch ~ N(0, σ_pitch)) and must show the
body's part map from there; otherwise from the photo's camera, against the rasterised part map or (p = label_swap)
the real image's own map. The discriminator's real target is the photo's map or (p = label_swap) its fit's map from
the *photo's* camera. Lazy R1 (optional) on the cycle's `r1_phases`; the silhouette, surface-depth and
mode-seeking terms are optional (ours), each weighted by its λ in the total.

All randomness comes from the iteration's own `rng` (a pure function of seed, step and rank, made by the loop), drawn
in a fixed order here, which is what makes a resumed run bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor

from neural.body import BodyModel, PosedBody
from neural.camera import Camera
from neural.generator import Generator
from neural.raster import parts_seen, ray_distance, rasterize

from .config import TrainingConfig
from .data import rotate_about_body
from .discriminator import UNetDiscriminator
from .losses import (body_coverage, discriminator_loss, generator_loss, mode_seeking_loss, r1_penalty,
                     silhouette_loss, surface_depth_loss)

Terms = dict[str, Tensor]  # name → scalar; "loss_D" / "loss_G" are the totals that are optimised


def labels(posed, camera: Camera) -> Tensor:
    """(B, H, W) int64 part labels of the posed bodies seen by the camera."""
    return parts_seen(posed, camera)


def surface_distance(posed, camera: Camera) -> tuple[Tensor, Tensor]:
    """Distance (B, 1, h, w) along each pixel's unit ray (as PoseMap.depth measures it) to the body's first surface,
    and (B, 1, h, w) bool where a ray hits the body; camera at the resolution wanted (the style map's)."""
    fragments = rasterize(posed.vertices, posed.faces, camera)
    return ray_distance(fragments.depth, camera)[:, None], fragments.mask[:, None]


@dataclass(frozen=True)
class Draw:
    """What one iteration draws, without gradients: the posed bodies (B), the photo's and G's cameras, the
    discriminator's real target and G's target (B, H, W) labels, the fit's labels from G's camera (B, H, W), the
    latents (B, latent_dim) of the D step's fakes and of G's step, the ray-sampling generator, the density noise."""

    step: int
    posed: PosedBody
    fake_camera: Camera
    real_target: Tensor
    g_target: Tensor
    fake_fit_labels: Tensor
    z_d: Tensor
    z_g: Tensor
    ray_rng: torch.Generator
    noise_std: float


class Objective:
    """The losses of G and D for one iteration, as named terms (as EDM's loss_fn, StyleGAN2-ADA's
    accumulate_gradients); the loop owns the optimisers, scalers and logs."""

    def __init__(self, config: TrainingConfig, *, G: Generator, D: UNetDiscriminator, body: BodyModel,
                 autocast: AbstractContextManager) -> None:
        self.config, self.G, self.D, self.body, self.autocast = config, G, D, body, autocast

    @torch.no_grad()
    def draw(self, batch: dict[str, Tensor], step: int, rng: torch.Generator) -> Draw:
        """The iteration's bodies, cameras, targets and latents from the batch (on the device) and `rng` (CPU)."""
        config, gc = self.config, self.config.generator
        dev, local_batch = batch["image"].device, len(batch["image"])
        posed = self.body(betas=batch["betas"], pose=batch["pose"], transl=batch["transl"])
        camera = Camera(K=batch["K"], world_to_camera=batch["world_to_camera"], width=gc.width, height=gc.height)
        fit_labels = fake_fit_labels = labels(posed, camera)
        swap = (torch.rand(local_batch, generator=rng) < config.label_swap).to(dev)[:, None, None]
        real_target = torch.where(swap, fit_labels, batch["parts"])
        if config.rotate_cycle[step % len(config.rotate_cycle)]:
            yaw = torch.randn(local_batch, generator=rng) * config.yaw_std
            pitch = torch.randn(local_batch, generator=rng) * config.pitch_std
            w2c = rotate_about_body(camera.world_to_camera, posed.root_rotation, posed.joints[:, 0],
                                    yaw.to(dev), pitch.to(dev))
            fake_camera = Camera(K=camera.K, world_to_camera=w2c, width=gc.width, height=gc.height)
            g_target = fake_fit_labels = labels(posed, fake_camera)
        else:
            fake_camera = camera
            swap_g = (torch.rand(local_batch, generator=rng) < config.label_swap).to(dev)[:, None, None]
            g_target = torch.where(swap_g, fit_labels, batch["parts"])
        z_d = torch.randn(local_batch, gc.latent_dim, generator=rng).to(dev)
        z_g = torch.randn(local_batch, gc.latent_dim, generator=rng).to(dev)
        ray_rng = torch.Generator(device=dev).manual_seed(int(torch.randint(2**62, (1,), generator=rng)))
        return Draw(step=step, posed=posed, fake_camera=fake_camera, real_target=real_target, g_target=g_target,
                    fake_fit_labels=fake_fit_labels, z_d=z_d, z_g=z_g, ray_rng=ray_rng,
                    noise_std=max(0.0, 1.0 - step / config.density_noise_steps))

    def styles(self, draw: Draw):
        """G's styles for z_g from G's camera, with gradients. The pose field does not depend on z (its FiLM codes
        are learnt constants; docs/architecture.md §Pose field), so this one rendering of it serves the D step's
        fakes (z_d, no gradients) and the G step."""
        with self.autocast:
            return self.G.prepare(draw.z_g, draw.posed, draw.fake_camera, rng=draw.ray_rng, noise_std=draw.noise_std)

    def discriminator_terms(self, draw: Draw, real: Tensor, styles) -> tuple[Terms, Tensor]:
        """D's terms on the real images (B, 3, H, W) and fakes of the shared styles with z_d; also the fakes (for
        the mode-seeking term of G's step)."""
        config, G, D = self.config, self.G, self.D
        with torch.no_grad(), self.autocast:
            fake = G.synthesize(dataclasses.replace(styles, w=G.appearance(draw.z_d)))
        with self.autocast:
            logits = D(torch.cat([real, fake.float()]))
            total = discriminator_loss(logits[:len(real)], logits[len(real):], draw.real_target, kind=config.loss)
        r1 = torch.zeros((), device=real.device)
        if config.r1_lambda > 0 and draw.step % len(config.rotate_cycle) in config.r1_phases:
            r1 = r1_penalty(D, real, kind=config.loss)
            total = total + 0.5 * config.r1_lambda * config.r1_gain * r1
        return {"loss_D": total, "r1": r1}, fake

    def generator_terms(self, draw: Draw, styles, fake: Tensor) -> Terms:
        """G's terms: the segmentation (or binary) loss through D (in eval mode, so that its spectral-norm power
        iteration stays out of G's graph) and the optional ones, each already weighted into "loss_G"."""
        config, gc = self.config, self.config.generator
        with self.autocast:
            image = self.G.synthesize(styles)
            total = generator_loss(self.D(image), draw.g_target, kind=config.loss)
        zero = torch.zeros((), device=image.device)
        seeking = silhouette = surface = zero
        if config.mode_seeking_lambda > 0 and draw.step >= config.mode_seeking_start:
            seeking = mode_seeking_loss(image, fake, draw.z_g, draw.z_d)  # fake: the same styles with z_d
            total = total + config.mode_seeking_lambda * seeking
        if config.silhouette_lambda > 0:
            silhouette = silhouette_loss(styles.pose.optical_depth, draw.fake_fit_labels)
            total = total + config.silhouette_lambda * silhouette
        if config.depth_lambda > 0:
            with torch.no_grad():
                distance, hit = surface_distance(draw.posed, draw.fake_camera.resized(gc.render_width,
                                                                                      gc.render_height))
                full = body_coverage(draw.fake_fit_labels, (gc.render_height, gc.render_width)) == 1
            spacing = (gc.ray_end - gc.ray_start) / gc.num_samples
            surface = surface_depth_loss(styles.pose.depth, styles.pose.opacity, distance, full & hit, spacing)
            total = total + config.depth_lambda * surface
        return {"loss_G": total, "silhouette": silhouette, "surface_depth": surface, "mode_seeking": seeking}

"""Renderer: a frame request (scene camera + characters) → straight-alpha RGBA, depth and part maps.

The product's entry point (docs/overview.md §Data flow, §Speed). For each character the posed body is framed by a
body-centred crop camera (the 2:1 portrait frame 3DHumanGAN was trained on) that rolls with the body's own up axis,
so the generator sees every body upright as in its training crops, lying, upside down or in a cartwheel. The crop is
rendered at the resolution it covers in the scene frame (`detail`: the backbone is a pixel-wise function of
continuous coordinates and the style map a rendering of a 3D field, so both can be evaluated finer than the model's
own grid), only at the pixels that can show, and pasted into the frame through the crop → scene homography.
Characters are composited per pixel by depth, nearest first.

What each output means:
- colour: the generator's image, [-1, 1] → [0, 1], sRGB-encoded as the photos it learnt from, un-mixed from the
  white background of those photos where alpha < 1 (see alpha).
- alpha (our choice; the official code composites on white and gives no alpha), the matte: 1 where the body,
  rasterised at the crop's resolution, covers the pixel. Around the body (within `halo` × the crop height) the
  generator may paint what the mesh lacks (hair, loose clothes); there it paints over the white it learnt, so a
  pixel's colour I bounds its opacity: alpha = min(opacity · halo weight, 1 − min_c I_c) (white ⇒ 0), and the colour
  is un-mixed, c = (I − (1 − alpha)) / alpha. Over white the result is the generator's own image; over black or
  another person no white glow is left. Beyond the halo alpha is exactly 0.
- depth: camera z of the body surface, from rasterising the posed body in the scene camera (inf = empty).
- parts: the nearest body's part labels 2..25 from the same rasterisation, 1 = background.
Compositing order uses the distance along each pixel's ray to the body (rasterised in the crop, spread over the
halo by a min filter so that hair and clothes sort with their body).

The backbone is pixel-wise independent (docs/architecture.md §Backbone), so any subset of crop pixels renders exactly: pixels whose alpha is 0 are
never synthesised, tiles bound the memory, `render_pixels` serves progressive previews, `stride` renders a coarse
preview. The per-character work (mapping, truncation, pose field, style map, matte, rasterisation) is computed once
per character and shared by its tiles, and by the next calls with the same request (preview strides 4, 2, 1 render
the pose field once). A body that reaches behind the camera is rendered as far as the camera sees it (the crop frames
the part of the frame it covers); one the camera is inside is left out, alone, and named in `FrameResult.failures`
(not fatal: the camera sees none of it); one wholly behind the camera is simply not in the frame. Boundary: numpy in,
numpy out; torch inside.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from . import checkpoint
from .body import BodyModel, PosedBody, free_body_path
from .camera import BodyBehindCamera, Camera, crop_camera, in_frame_corners, map_pixels, paste
from .frame import (MAX_DETAIL, Character, CharacterFailure, FrameRequest, FrameResult, empty_result,
                    request_key)
from .raster import part_map, ray_distance, rasterize, winding_number
from .rotations import axis_angle_to_matrix

__all__ = ["Character", "CharacterFailure", "FrameRequest", "FrameResult", "MAX_DETAIL", "Renderer",
           "RenderCancelled", "composite", "default_model_path", "empty_result", "select_device"]



def default_model_path() -> Path:
    """`neural/assets/default_model.safetensors`, the model used when none is given."""
    return Path(__file__).resolve().parent / "assets" / "default_model.safetensors"














def composite(results: list[FrameResult]) -> FrameResult:
    """Per-pixel depth-ordered "over" of whole frames (e.g. one per body file), nearest first."""
    if len(results) == 1:
        return results[0]
    depth = torch.from_numpy(np.stack([r.depth for r in results]))
    rgba = torch.from_numpy(np.stack([r.rgba for r in results])).permute(0, 3, 1, 2)             # (K, 4, H, W)
    premultiplied = torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], 1)
    parts = torch.from_numpy(np.stack([r.parts for r in results]).astype(np.int64))
    return _over(premultiplied, depth, depth, parts,
                 tuple(f for r in results for f in r.failures))


def _over(layers: Tensor, keys: Tensor, depths: Tensor, parts: Tensor,
          failures: tuple[CharacterFailure, ...]) -> FrameResult:
    """The one compositor: premultiplied layers (K, 4, H, W) sorted per pixel by keys (K, H, W) (inf = empty) and
    laid front to back with "over"; depth is the nearest of depths (K, H, W), parts (K, H, W) the nearest body's."""
    order = keys.argsort(dim=0, stable=True)                                              # (K, H, W) near first
    layers = layers.gather(0, order[:, None].expand(-1, 4, -1, -1))
    out = torch.zeros(layers.shape[1:])
    transmittance = torch.ones(layers.shape[2:])
    for layer in layers:
        out += transmittance * layer
        transmittance = transmittance * (1 - layer[3])
    alpha = out[3].clamp(0, 1)
    rgb = torch.where(alpha > 0, out[:3] / alpha.clamp_min(1e-12), torch.zeros_like(out[:3])).clamp(0, 1)
    nearest = depths.argmin(0)
    return FrameResult(rgba=torch.cat([rgb, alpha[None]]).permute(1, 2, 0).contiguous().numpy(),
                       depth=depths.amin(0).numpy().astype(np.float32),
                       parts=parts.gather(0, nearest[None])[0].numpy().astype(np.uint8), failures=failures)


class CameraInside(ValueError):
    """The scene camera is inside a character's body: the camera sees none of it (not a fatal failure)."""


class RenderCancelled(Exception):
    """Raised by Renderer.render when should_stop() returned True between two tiles."""


def select_device(name: str = "auto") -> torch.device:
    """"auto" = CUDA, then Apple MPS, then CPU; otherwise any torch device string ("cpu", "cuda:1", ...)."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class _Work:
    """Everything of one character that its tiles share; the crop is h × w = the model's size × `scale`."""

    index: int              # the character's index in the request
    styles: object          # the generator's per-image state (w, pose style map, opacity, ...)
    crop: Camera            # crop camera, body frame, at the rendered resolution
    scale: int              # crop resolution ÷ the model's
    homography: Tensor      # (1, 3, 3) crop pixel → scene pixel
    covered: Tensor         # (h, w) bool: the body, rasterised in the crop
    coverage: Tensor        # (h, w) the body's coverage of the model's own pixels, upsampled (`matte`)
    halo_opacity: Tensor    # (h, w) the field's opacity × the halo weight: the most alpha beside the body
    shown: Tensor           # (h, w) bool: alpha may be > 0 and the pixel reaches the frame: the pixels synthesised
    key: Tensor             # (h, w) compositing key: ray distance to the body, inf where nothing shows
    scene_depth: Tensor     # (H, W) scene camera z of the body, inf = empty
    scene_parts: Tensor     # (H, W) int64 part labels, 1 = background


def matte(rgb: Tensor, covered: Tensor, coverage: Tensor, halo_opacity: Tensor) -> tuple[Tensor, Tensor]:
    """The generator's image I (..., 3) in [0, 1], painted over white as its training photos were → straight colour
    (..., 3) and alpha (...), given the body's coverage: `covered` (...) bool at the crop's resolution and
    `coverage` (...) the fraction of the model's own (coarser) pixel that the body covers, upsampled.

    The generator learnt anti-aliased photos: at a model pixel the body covers by `coverage`, it paints
    I ≈ coverage · c + (1 − coverage) · white. Where the body covers the crop pixel alpha = 1 and the colour is
    un-mixed by that coverage (no white rim along the silhouette or on thin limbs). Beside the body it may paint
    what the mesh lacks (hair, loose clothes): a pixel that far from white needs an opacity of at least
    1 − min_c I_c, of which the body's own anti-aliasing explains `coverage`; the rest, bounded by the pose field's
    opacity around the body (halo_opacity), is alpha there, and the colour is un-mixed from white by it. Over white
    the result repaints I; over anything else it leaves no white glow."""
    opacity_needed = 1 - rgb.amin(-1)
    beside = torch.minimum(opacity_needed - coverage, halo_opacity).clamp(0, 1)
    alpha = torch.where(covered, torch.ones_like(beside), beside)
    mix = torch.where(covered, coverage.clamp(0.3, 1), alpha)  # the share of the colour in I
    unmixed = (rgb - (1 - mix[..., None])) / mix[..., None].clamp_min(1e-6)
    colour = torch.where(alpha[..., None] > 0, unmixed.clamp(0, 1), torch.zeros_like(rgb))
    return colour, alpha


class Renderer:
    """Loads a generator checkpoint and a body file once; renders FrameRequests.

    model_path: a .safetensors checkpoint (default neural/assets/default_model.safetensors); body_path: an
    SMPL-format .npz (default the free body); device: "auto" | torch device string. tile_pixels: crop pixels per
    backbone call (bounds memory: about tile_pixels × width × 4 bytes × a few per activation). halo: how far around
    the body (fraction of the crop height) the field's opacity may add alpha. fast: the generator's fast path.
    style_detail: the most times its own resolution the pose style map is rendered at, when a crop is rendered
    finer than the model's grid (1: the model's map, upsampled by the backbone). Reading it finer at the body's
    surface makes part boundaries crisp and measured better on every metric (docs/detail.md); default 4 for a
    surface-readout model (a 128×64 map for the default model), 1 for a volume-readout one (paper presets, the
    released weights), whose finer map means k² times the pose field's samples.
    """

    def __init__(self, *, model_path: str | Path | None = None, body_path: str | Path | None = None,
                 device: str = "auto", tile_pixels: int = 65536, halo: float = 0.06, fast: bool = True,
                 style_detail: int | None = None) -> None:
        model_path = Path(model_path) if model_path is not None else default_model_path()
        body_path = Path(body_path) if body_path is not None else free_body_path()
        if not model_path.is_file():
            hint = " (the default model is not shipped yet)" if model_path == default_model_path() else ""
            raise FileNotFoundError(
                f"model file {model_path} does not exist{hint}; pass a generator checkpoint (.safetensors) with "
                "--model PATH (Renderer(model_path=PATH)), e.g. one written by `python -m training train`")
        body = BodyModel.load(body_path)
        expected = checkpoint.read_metadata(model_path).body_fingerprint
        if expected != body.fingerprint:
            raise ValueError(
                f"model {model_path} was trained on the body with fingerprint {expected}, but body file {body_path} "
                f"has fingerprint {body.fingerprint} ({body.num_vertices} vertices); pass the body the model was "
                "trained with (--body BODY.npz)")
        generator, _ = checkpoint.load(model_path)
        self._setup(generator, body, device, tile_pixels, halo, fast, style_detail)
        self.model_path, self.body_path = model_path, body_path

    @classmethod
    def from_modules(cls, *, generator: torch.nn.Module, body: BodyModel, device: str = "auto",
                     tile_pixels: int = 65536, halo: float = 0.06, fast: bool = True,
                     style_detail: int | None = None) -> "Renderer":
        """A renderer around an in-memory generator and body (training previews, benchmarks); no files."""
        renderer = cls.__new__(cls)
        renderer._setup(generator, body, device, tile_pixels, halo, fast, style_detail)
        renderer.model_path = renderer.body_path = None
        return renderer

    def _setup(self, generator, body, device, tile_pixels, halo, fast, style_detail) -> None:
        if tile_pixels < 1:
            raise ValueError(f"tile_pixels must be positive, got {tile_pixels}")
        if style_detail is None:  # the surface readout reads a finer map cheaply; the volume would cost k² more
            style_detail = 4 if generator.config.readout == "surface" else 1
        if int(style_detail) != style_detail or style_detail < 1:
            raise ValueError(f"style_detail must be a positive integer, got {style_detail!r}")
        self.device = select_device(device)
        self.generator = generator.eval().to(self.device)
        self.body = body.to(self.device)
        self.config = generator.config
        self.tile_pixels, self.halo, self.fast = int(tile_pixels), float(halo), bool(fast)
        self.style_detail = int(style_detail)
        self._cache: tuple[bytes, list[_Work], tuple[CharacterFailure, ...]] | None = None  # the last request's

    # --- public ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, request: FrameRequest, *, should_stop: Callable[[], bool] | None = None,
               on_progress: Callable[[float], None] | None = None, stride: int = 1) -> FrameResult:
        """Render a frame. should_stop() is polled before every tile (→ RenderCancelled); on_progress(fraction)
        after every tile. stride > 1 renders every stride-th crop pixel in x and y (exact there) and repeats it:
        a preview about stride² times cheaper. Characters that cannot be rendered are left out, each alone, and
        listed in the result's `failures`."""
        if stride < 1:
            raise ValueError(f"stride must be ≥ 1, got {stride}")
        work, failures = self._prepare_all(request)
        jobs = [(item, self._pixels_to_render(item, stride)) for item in work]
        tiles = [(item, tile) for item, pixels in jobs for tile in torch.split(pixels, self.tile_pixels)]
        done, rendered = 0, {id(item): [] for item in work}
        for item, tile in tiles:
            if should_stop is not None and should_stop():
                raise RenderCancelled(f"render cancelled after {done} of {len(tiles)} tiles")
            rendered[id(item)].append(self._synthesize(item, tile))
            done += 1
            if on_progress is not None:
                on_progress(done / len(tiles))
        crops = []
        for item, pixels in jobs:
            h, w = item.crop.height, item.crop.width
            rgb = torch.zeros(h, w, 3)
            if len(pixels):
                rgb[pixels[:, 1], pixels[:, 0]] = torch.cat(rendered[id(item)])
            if stride > 1:  # each rendered pixel stands for its stride × stride block
                rgb = rgb[::stride, ::stride].repeat_interleave(stride, 0).repeat_interleave(stride, 1)[:h, :w]
            crops.append(rgb)
        if on_progress is not None and not tiles:
            on_progress(1.0)
        return self._composite(request, work, crops, failures)

    @torch.no_grad()
    def pixels_to_synthesize(self, request: FrameRequest, *, stride: int = 1) -> int:
        """How many crop pixels `render` synthesises for this request (all characters): only those that show."""
        work, _ = self._prepare_all(request)
        return sum(len(self._pixels_to_render(item, stride)) for item in work)

    @torch.no_grad()
    def render_pixels(self, request: FrameRequest, pixels: np.ndarray, *, character: int = 0) -> np.ndarray:
        """RGBA (N, 4) float32 (straight alpha, sRGB) of one character's crop at integer crop pixels (N, 2) (x, y),
        exactly as in a full render of that crop (see render_crop)."""
        item = self._work_of(request, character)
        pixels = torch.as_tensor(np.asarray(pixels), dtype=torch.int64)
        if pixels.ndim != 2 or pixels.shape[1] != 2:
            raise ValueError(f"pixels must be (N, 2) integer (x, y); got shape {tuple(pixels.shape)}")
        h, w = item.crop.height, item.crop.width
        if bool(((pixels < 0) | (pixels >= torch.tensor([w, h]))).any()):
            raise ValueError(f"pixels must lie in the {w}×{h} crop (x < {w}, y < {h})")
        rgb = torch.cat([self._synthesize(item, t) for t in torch.split(pixels, self.tile_pixels)])
        x, y = pixels[:, 0], pixels[:, 1]
        colour, alpha = matte(rgb, item.covered.cpu()[y, x], item.coverage.cpu()[y, x], item.halo_opacity.cpu()[y, x])
        shown = item.shown.cpu()[y, x]
        rgba = torch.cat([colour, alpha[:, None]], -1)
        return torch.where(shown[:, None], rgba, torch.zeros_like(rgba)).numpy()

    def render_crop(self, request: FrameRequest, *, character: int = 0) -> np.ndarray:
        """RGBA (h, w, 4) of one character's crop at the resolution it is rendered at in this frame, before
        pasting (the model's h × w times the crop's detail scale)."""
        crop = self._work_of(request, character).crop
        h, w = crop.height, crop.width
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        pixels = np.stack([xs.reshape(-1), ys.reshape(-1)], -1)
        return self.render_pixels(request, pixels, character=character).reshape(h, w, 4)

    # --- per character ---------------------------------------------------------------------------------------
    def _work_of(self, request: FrameRequest, character: int) -> _Work:
        work, failures = self._prepare_all(request)
        for failure in failures:
            if failure.index == character:
                raise ValueError(f"{failure.name} cannot be rendered: {failure.reason}")
        for item in work:
            if item.index == character:
                return item
        raise ValueError(f"character {character} is not in the frame (behind the camera)")

    def _prepare_all(self, request: FrameRequest) -> tuple[list[_Work], tuple[CharacterFailure, ...]]:
        """Per-character work, reused when the same request comes again (preview strides 4, 2, 1; render_pixels
        calls), so the pose field is rendered once per frame. A character whose preparation fails is left out and
        reported by name; the others are unaffected."""
        key = request_key(request)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        work, failures = [], []
        for index, character in enumerate(request.characters):
            try:
                item = self._prepare(request, character, index)
            except ValueError as error:  # e.g. the camera inside this body: only this one is left out
                failures.append(CharacterFailure(index=index, name=character.name or f"character {index}",
                                                 reason=str(error), fatal=not isinstance(error, CameraInside)))
                continue
            if item is not None:  # None: wholly behind the camera
                work.append(item)
        self._cache = (key, work, tuple(failures))
        return work, tuple(failures)

    def _prepare(self, request: FrameRequest, character: Character, index: int) -> _Work | None:
        dev, f32 = self.device, torch.float32
        # The root's rotation and translation are moved into the placement (below), so the generator always sees
        # the body as it stands in its own frame: rotating the pelvis bone or the object gives the same picture.
        pose = character.pose.copy()
        pose[0] = 0
        body = self.body(betas=torch.as_tensor(character.betas[None], dtype=f32, device=dev),
                         pose=torch.as_tensor(pose[None], dtype=f32, device=dev))
        # the scene camera with points in the body frame: world_to_camera @ body_to_world
        w2c = request.world_to_camera @ character.body_to_world @ _root_placement(
            character.pose[0], character.transl, body.joints[0, 0].double().cpu().numpy())
        scene = Camera(K=torch.as_tensor(request.K[None], dtype=f32, device=dev),
                       world_to_camera=torch.as_tensor(w2c[None], dtype=f32, device=dev),
                       width=int(request.width), height=int(request.height))
        h, w = self.config.height, self.config.width
        # upright in the crop: the root's +Y (the body's up, as in every training crop) and +Z (its front)
        axes = torch.eye(3, dtype=f32, device=dev)
        try:
            crop, homography = crop_camera(scene, body.vertices, width=w, height=h, up=axes[1], front=axes[2])
        except BodyBehindCamera:  # frame what the camera sees of it, unless the camera is inside it
            if float(winding_number(scene.center[:, None], body.vertices, body.faces).abs().max()) > 0.5:
                raise CameraInside("the scene camera is inside it; move the camera out of the character") from None
            corners = in_frame_corners(scene, body.vertices)
            if corners is None:
                return None
            crop, homography = crop_camera(scene, corners, width=w, height=h, up=axes[1], front=axes[2])
        scale = detail_scale(homography, w, h, request.detail)
        if scale > 1:
            fine = crop.resized(w * scale, h * scale)
            homography = homography @ crop.K @ torch.linalg.inv(fine.K)
            crop = fine
        z = self.generator.sample_z(int(character.seed)).to(dev)  # drawn on the CPU: the same on every device
        with self._autocast():
            styles = self.generator.prepare(z, body, crop, psi=float(character.psi), fast=self.fast,
                                            style_scale=min(scale, self.style_detail))
        covered, coverage, halo_opacity, key = self._matte_geometry(body, crop, styles, scale)
        shown = (covered | (halo_opacity > 0)) & _reaches_frame(homography, crop, scene)
        key = torch.where(shown, key, torch.full_like(key, torch.inf))
        fragments = rasterize(body.vertices, body.faces, scene)
        parts = part_map(fragments, body.faces, body.parts)
        return _Work(index=index, styles=styles, crop=crop, scale=scale, homography=homography, covered=covered,
                     coverage=coverage, halo_opacity=halo_opacity, shown=shown, key=key, scene_depth=fragments.depth[0],
                     scene_parts=parts[0])

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _pixels_to_render(self, item: _Work, stride: int) -> Tensor:
        """(N, 2) int64 (x, y) crop pixels to synthesise: those that can show; with a stride, one per block."""
        shown = item.shown.cpu()
        if stride > 1:
            shown = F.max_pool2d(shown[None, None].float(), stride, stride, ceil_mode=True)[0, 0] > 0
        ys, xs = torch.nonzero(shown, as_tuple=True)
        return torch.stack([xs * stride, ys * stride], -1)

    def _synthesize(self, item: _Work, pixels: Tensor) -> Tensor:
        """sRGB (N, 3) float32 in [0, 1] on the CPU at crop pixels (N, 2) int64 (x, y)."""
        with self._autocast():
            image = self.generator.synthesize(item.styles, pixels=pixels.to(self.device), fast=self.fast)
        return ((image.float()[0].reshape(3, -1).T + 1) / 2).clamp(0, 1).cpu()

    def _matte_geometry(self, body: PosedBody, crop: Camera, styles,
                        scale: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """covered (h, w) bool, coverage (h, w), halo_opacity (h, w) and the compositing key (h, w) at the crop's
        resolution (`matte`). The halo weight and the key's spread are built at the model's resolution (the halo is
        a few model pixels wide) and upsampled: a min filter 2·halo wide at 32× detail would cost more than the rest
        of the frame."""
        h, w = crop.height, crop.width
        fragments = rasterize(body.vertices, body.faces, crop)
        covered = fragments.mask[0]
        distance = ray_distance(fragments.depth, crop)[0]
        distance = torch.where(covered, distance, torch.full_like(distance, torch.inf))
        coarse = F.max_pool2d(covered[None, None].float(), scale, scale)                 # (1, 1, h/s, w/s)
        def coverage_of(block: int) -> Tensor:  # the body's share of block × block pixels, upsampled bilinearly
            return F.interpolate(F.avg_pool2d(covered[None, None].float(), block, block), size=(h, w),
                                 mode="bilinear", align_corners=False)[0, 0]

        coverage = coverage_of(scale)
        # beside the body, the blur the generator paints is as coarse as its pose style map: the body's coverage
        # of a style-map pixel, upsampled as the backbone upsamples the map
        blurred = coverage_of(scale * self.config.height // self.config.render_height)
        coverage = torch.where(covered, coverage, torch.maximum(coverage, blurred))
        coarse_distance = -F.max_pool2d(-distance[None, None], scale, scale)
        r = max(1, round(self.halo * self.config.height))
        grown = F.max_pool2d(coarse, 2 * r + 1, stride=1, padding=r)
        halo = F.avg_pool2d(grown, 2 * r + 1, stride=1, padding=r, count_include_pad=False)  # 1 near, 0 by 2r
        halo = F.interpolate(halo, size=(h, w), mode="bilinear", align_corners=False)
        opacity = F.interpolate(self.generator.opacity(styles).float(), size=(h, w), mode="bilinear",
                                align_corners=False).clamp(0, 1)
        halo_opacity = (opacity * halo)[0, 0] * (halo[0, 0] > 1e-3)                     # exactly 0 beyond it
        spread = -F.max_pool2d(-coarse_distance, 4 * r + 1, stride=1, padding=2 * r)
        spread = F.interpolate(spread, size=(h, w), mode="nearest")[0, 0]
        key = torch.where(covered, distance, spread)
        return covered, coverage, halo_opacity, key

    # --- the frame -------------------------------------------------------------------------------------------
    def _composite(self, request: FrameRequest, work: list[_Work], crops: list[Tensor],
                   failures: tuple[CharacterFailure, ...]) -> FrameResult:
        H, W = int(request.height), int(request.width)
        if not work:
            return empty_result(W, H, failures)
        layers, keys = [], []
        for item, rgb in zip(work, crops):
            colour, alpha = matte(rgb, item.covered.cpu(), item.coverage.cpu(), item.halo_opacity.cpu())
            alpha = torch.where(item.shown.cpu(), alpha, torch.zeros_like(alpha))
            premultiplied = torch.cat([colour * alpha[..., None], alpha[..., None]], -1).permute(2, 0, 1)[None]
            homography = item.homography.cpu()
            pasted, _ = paste(premultiplied, homography, W, H)
            key, _ = paste(item.key.cpu()[None, None], homography, W, H, mode="nearest")
            layers.append(pasted[0])                                                       # (4, H, W)
            keys.append(torch.where(pasted[0, 3] > 0, key[0, 0], torch.full_like(key[0, 0], torch.inf)))
        depths = torch.stack([item.scene_depth.float().cpu() for item in work])
        parts = torch.stack([item.scene_parts.cpu() for item in work])
        return _over(torch.stack(layers), torch.stack(keys), depths, parts, failures)


def _root_placement(root: np.ndarray, transl: np.ndarray, pelvis: np.ndarray) -> np.ndarray:
    """(4, 4) rigid map taking the body posed with a zero root (rotation and translation) to the body posed with
    `root` (3,) axis-angle and `transl` (3,): LBS turns the whole body about the rest pelvis J₀ (3,), then
    translates it, so p = R·(p₀ − J₀) + J₀ + transl."""
    m = np.eye(4)
    m[:3, :3] = axis_angle_to_matrix(np.asarray(root, np.float64))
    m[:3, 3] = pelvis + transl - m[:3, :3] @ pelvis
    return m




def detail_scale(homography: Tensor, width: int, height: int, detail: int | None) -> int:
    """How many times finer than the model's w × h crop to render, so that one crop pixel covers at most about
    one frame pixel: ⌈√|det J|⌉ of the crop → scene homography at the crop's centre, capped by `detail`."""
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    points = torch.stack([centre, centre + torch.tensor([1.0, 0.0], dtype=torch.float64),
                          centre + torch.tensor([0.0, 1.0], dtype=torch.float64)])
    xy, _ = map_pixels(homography[0].double().cpu(), points)
    jacobian = torch.stack([xy[1] - xy[0], xy[2] - xy[0]], 1)
    frame_pixels = float(jacobian.det().abs().sqrt())
    return int(min(max(1, math.ceil(frame_pixels - 0.05)), detail or MAX_DETAIL))


def _reaches_frame(homography: Tensor, crop: Camera, scene: Camera) -> Tensor:
    """(h, w) bool: crop pixels within one crop pixel of a pixel that lands inside the scene frame (bilinear
    pasting reads the neighbours of each frame pixel's preimage)."""
    xy, front = map_pixels(homography[0], crop.pixel_grid())
    inside = front & (xy[:, 0] >= -1.5) & (xy[:, 0] <= scene.width + 0.5) & (xy[:, 1] >= -1.5) \
        & (xy[:, 1] <= scene.height + 0.5)
    inside = inside.reshape(crop.height, crop.width)[None, None].float()
    return F.max_pool2d(inside, 3, stride=1, padding=1)[0, 0] > 0

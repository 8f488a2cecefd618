"""Renderer: a frame request (scene camera + characters) → straight-alpha RGBA, depth and part maps.

The product's entry point (docs/overview.md §Data flow, §Speed). For each character the posed body (paper §3.1) is
framed by a body-centred crop camera at the generator's resolution (the 2:1 portrait frame 3DHumanGAN was trained
on), the generator renders that crop, and the crop is pasted into the scene frame through the crop → scene homography.
Characters are composited per pixel by depth, nearest first.

What each output means:
- colour: the generator's image, [-1, 1] → [0, 1], sRGB-encoded as the photos it learnt from.
- alpha (our choice; the official code composites on white and gives no alpha): the pose field's opacity (its
  volume-rendering weight sum, low resolution) upsampled bilinearly, refined by the body rasterised in the crop:
  alpha = max(body mask, opacity · halo). The body is opaque wherever it is seen; around it the field's opacity
  carries hair and loose clothes; beyond a halo of `halo` × crop height the field is unconstrained (its density is
  never trained to be zero there), so alpha fades to exactly 0. With random weights alpha is thus the body's mask.
- depth: camera z of the body surface, from rasterising the posed body in the scene camera (inf = empty).
- parts: the nearest body's part labels 2..25 from the same rasterisation, 1 = background.
Compositing order uses the distance along each pixel's ray to the body (rasterised in the crop, spread over the
halo by a min filter so that hair and clothes sort with their body).

The backbone is pixel-wise independent (docs/architecture.md §Backbone), so any subset of crop pixels renders exactly:
tiles bound the memory, `render_pixels` serves progressive previews, `stride` renders a coarse preview. The
per-character work (mapping, truncation, pose field, style map, alpha, rasterisation) is computed once per character and
shared by its tiles, and by the next calls with the same request (preview strides 4, 2, 1 render the pose field once).
Boundary: numpy in, numpy out; torch inside.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from . import checkpoint
from .body import BodyModel, PosedBody, free_body_path
from .camera import Camera, crop_camera, paste
from .raster import part_map, rasterize

__all__ = ["Character", "FrameRequest", "FrameResult", "Renderer", "RenderCancelled", "default_model_path",
           "select_device"]


def default_model_path() -> Path:
    """`neural/assets/default_model.safetensors`, the model used when none is given."""
    return Path(__file__).resolve().parent / "assets" / "default_model.safetensors"


def _array(value, shape: tuple[int, ...], name: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.shape != shape or not np.isfinite(a).all():
        raise ValueError(f"{name} must be a finite array of shape {shape}; got shape {a.shape}")
    return a


@dataclass(frozen=True, kw_only=True)
class Character:
    """One person: SMPL pose (24, 3) axis-angle (root first, body frame), betas (n,), transl (3,) body-frame
    metres, appearance seed, truncation ψ, and body_to_world (4, 4) rigid placing the body frame in the world."""

    pose: np.ndarray
    betas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    transl: np.ndarray = field(default_factory=lambda: np.zeros(3))
    seed: int = 0
    psi: float = 0.7
    body_to_world: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        object.__setattr__(self, "pose", _array(self.pose, (24, 3), "Character.pose"))
        betas = np.asarray(self.betas, dtype=np.float64)
        object.__setattr__(self, "betas", _array(betas, (betas.size,), "Character.betas"))
        object.__setattr__(self, "transl", _array(self.transl, (3,), "Character.transl"))
        object.__setattr__(self, "body_to_world", _array(self.body_to_world, (4, 4), "Character.body_to_world"))
        if int(self.seed) != self.seed:
            raise ValueError(f"Character.seed must be an integer, got {self.seed!r}")


@dataclass(frozen=True, kw_only=True)
class FrameRequest:
    """A frame: OpenCV scene camera K (3, 3) pixels and world_to_camera (4, 4), image width × height, and the
    characters to draw (world frame: whatever the caller uses)."""

    K: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int
    characters: tuple[Character, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", _array(self.K, (3, 3), "FrameRequest.K"))
        object.__setattr__(self, "world_to_camera",
                           _array(self.world_to_camera, (4, 4), "FrameRequest.world_to_camera"))
        object.__setattr__(self, "characters", tuple(self.characters))
        if int(self.width) < 1 or int(self.height) < 1:
            raise ValueError(f"FrameRequest size must be positive, got {self.width}×{self.height}")


@dataclass(frozen=True, kw_only=True)
class FrameResult:
    """rgba (H, W, 4) float32 straight alpha, sRGB colour, row 0 = top; depth (H, W) float32 camera z of the
    nearest body surface, inf = empty; parts (H, W) uint8 labels 2..25, 1 = background."""

    rgba: np.ndarray
    depth: np.ndarray
    parts: np.ndarray


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
    """Everything of one character that its tiles share (crop frame of size h × w at model resolution)."""

    styles: object          # the generator's per-image state (w, pose style map, opacity, ...)
    crop: Camera            # crop camera, body frame
    homography: Tensor      # (1, 3, 3) crop pixel → scene pixel
    alpha: Tensor           # (h, w) final crop alpha
    key: Tensor             # (h, w) compositing key: ray distance to the body, inf where alpha is 0
    scene_depth: Tensor     # (H, W) scene camera z of the body, inf = empty
    scene_parts: Tensor     # (H, W) int64 part labels, 1 = background


class Renderer:
    """Loads a generator checkpoint and a body file once; renders FrameRequests.

    model_path: a .safetensors checkpoint (default neural/assets/default_model.safetensors); body_path: an
    SMPL-format .npz (default the free body); device: "auto" | torch device string. tile_pixels: crop pixels per
    backbone call (bounds memory: about tile_pixels × width × 4 bytes × a few per activation). halo: how far around
    the body (fraction of the crop height) the field's opacity may add alpha. fast: the generator's fast path.
    """

    def __init__(self, *, model_path: str | Path | None = None, body_path: str | Path | None = None,
                 device: str = "auto", tile_pixels: int = 65536, halo: float = 0.06, fast: bool = True) -> None:
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
        self._setup(generator, body, device, tile_pixels, halo, fast)
        self.model_path, self.body_path = model_path, body_path

    @classmethod
    def from_modules(cls, *, generator: torch.nn.Module, body: BodyModel, device: str = "auto",
                     tile_pixels: int = 65536, halo: float = 0.06, fast: bool = True) -> "Renderer":
        """A renderer around an in-memory generator and body (training previews, benchmarks); no files."""
        renderer = cls.__new__(cls)
        renderer._setup(generator, body, device, tile_pixels, halo, fast)
        renderer.model_path = renderer.body_path = None
        return renderer

    def _setup(self, generator, body, device, tile_pixels, halo, fast) -> None:
        if tile_pixels < 1:
            raise ValueError(f"tile_pixels must be positive, got {tile_pixels}")
        self.device = select_device(device)
        self.generator = generator.eval().to(self.device)
        self.body = body.to(self.device)
        self.config = generator.config
        self.tile_pixels, self.halo, self.fast = int(tile_pixels), float(halo), bool(fast)
        self._cache: tuple[bytes, list[_Work]] | None = None  # the last request's per-character work

    # --- public ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, request: FrameRequest, *, should_stop: Callable[[], bool] | None = None,
               on_progress: Callable[[float], None] | None = None, stride: int = 1) -> FrameResult:
        """Render a frame. should_stop() is polled before every tile (→ RenderCancelled); on_progress(fraction)
        after every tile. stride > 1 renders every stride-th crop pixel in x and y (exact there) and repeats it:
        a preview about stride² times cheaper."""
        if stride < 1:
            raise ValueError(f"stride must be ≥ 1, got {stride}")
        work = self._prepare_all(request)
        h, w = self.config.height, self.config.width
        ys, xs = torch.meshgrid(torch.arange(0, h, stride), torch.arange(0, w, stride), indexing="ij")
        pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)
        tiles = list(torch.split(pixels, self.tile_pixels))
        total, done = len(tiles) * len(work), 0
        crops = []
        for item in work:
            parts = []
            for tile in tiles:
                if should_stop is not None and should_stop():
                    raise RenderCancelled(f"render cancelled after {done} of {total} tiles")
                parts.append(self._synthesize(item, tile))
                done += 1
                if on_progress is not None:
                    on_progress(done / total)
            rgb = torch.cat(parts).reshape(ys.shape[0], ys.shape[1], 3)
            rgb = rgb.repeat_interleave(stride, 0).repeat_interleave(stride, 1)[:h, :w]
            crops.append(rgb)
        return self._composite(request, work, crops)

    @torch.no_grad()
    def render_pixels(self, request: FrameRequest, pixels: np.ndarray, *, character: int = 0) -> np.ndarray:
        """RGBA (N, 4) float32 (straight alpha, sRGB) of one character's crop at integer crop pixels (N, 2) (x, y),
        exactly as in a full render of that crop (see render_crop)."""
        item = self._prepare_all(request)[character]
        pixels = torch.as_tensor(np.asarray(pixels), dtype=torch.int64)
        if pixels.ndim != 2 or pixels.shape[1] != 2:
            raise ValueError(f"pixels must be (N, 2) integer (x, y); got shape {tuple(pixels.shape)}")
        h, w = self.config.height, self.config.width
        if bool(((pixels < 0) | (pixels >= torch.tensor([w, h]))).any()):
            raise ValueError(f"pixels must lie in the {w}×{h} crop (x < {w}, y < {h})")
        rgb = torch.cat([self._synthesize(item, t) for t in torch.split(pixels, self.tile_pixels)])
        alpha = item.alpha.cpu()[pixels[:, 1], pixels[:, 0]]
        return torch.cat([rgb, alpha[:, None]], -1).numpy()

    def render_crop(self, request: FrameRequest, *, character: int = 0) -> np.ndarray:
        """RGBA (h, w, 4) of one character's crop at the model's resolution, before pasting."""
        h, w = self.config.height, self.config.width
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        pixels = np.stack([xs.reshape(-1), ys.reshape(-1)], -1)
        return self.render_pixels(request, pixels, character=character).reshape(h, w, 4)

    # --- per character ---------------------------------------------------------------------------------------
    def _prepare_all(self, request: FrameRequest) -> list[_Work]:
        """Per-character work, reused when the same request comes again (preview strides 4, 2, 1; render_pixels
        calls), so the pose field is rendered once per frame."""
        parts = [request.K, request.world_to_camera, np.array([request.width, request.height])]
        for c in request.characters:
            parts += [c.pose, c.betas, c.transl, c.body_to_world, np.array([c.seed, c.psi])]
        raw = [np.ascontiguousarray(p, dtype=np.float64).tobytes() for p in parts]
        key = b"".join(len(r).to_bytes(4, "little") + r for r in raw)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        work = [self._prepare(request, c) for c in request.characters]
        self._cache = (key, work)
        return work

    def _prepare(self, request: FrameRequest, character: Character) -> _Work:
        dev, f32 = self.device, torch.float32
        body = self.body(betas=torch.as_tensor(character.betas[None], dtype=f32, device=dev),
                         pose=torch.as_tensor(character.pose[None], dtype=f32, device=dev),
                         transl=torch.as_tensor(character.transl[None], dtype=f32, device=dev))
        # the scene camera with points in the body frame: world_to_camera @ body_to_world
        w2c = request.world_to_camera @ character.body_to_world
        scene = Camera(K=torch.as_tensor(request.K[None], dtype=f32, device=dev),
                       world_to_camera=torch.as_tensor(w2c[None], dtype=f32, device=dev),
                       width=int(request.width), height=int(request.height))
        h, w = self.config.height, self.config.width
        crop, homography = crop_camera(scene, body.vertices, width=w, height=h)
        styles = self._styles(body, crop, character)
        alpha, key = self._alpha_and_key(body, crop, styles)
        fragments = rasterize(body.vertices, body.faces, scene)
        parts = part_map(fragments, body.faces, body.parts)
        return _Work(styles=styles, crop=crop, homography=homography, alpha=alpha, key=key,
                     scene_depth=fragments.depth[0], scene_parts=parts[0])

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _styles(self, body: PosedBody, crop: Camera, character: Character):
        # z from the seed on the CPU generator: the same appearance on every device
        z = torch.randn(1, self.config.latent_dim, generator=torch.Generator().manual_seed(int(character.seed)))
        with self._autocast():
            return self.generator.prepare(z.to(self.device), body, crop, psi=float(character.psi), fast=self.fast)

    def _synthesize(self, item: _Work, pixels: Tensor) -> Tensor:
        """sRGB (N, 3) float32 in [0, 1] on the CPU at crop pixels (N, 2) int64 (x, y)."""
        with self._autocast():
            image = self.generator.synthesize(item.styles, pixels=pixels.to(self.device), fast=self.fast)
        return ((image.float()[0].reshape(3, -1).T + 1) / 2).clamp(0, 1).cpu()

    def _alpha_and_key(self, body: PosedBody, crop: Camera, styles) -> tuple[Tensor, Tensor]:
        h, w = crop.height, crop.width
        fragments = rasterize(body.vertices, body.faces, crop)
        mask = fragments.mask[:, None].float()                                           # (1, 1, h, w)
        r = max(1, round(self.halo * h))
        grown = F.max_pool2d(mask, 2 * r + 1, stride=1, padding=r)
        halo = F.avg_pool2d(grown, 2 * r + 1, stride=1, padding=r, count_include_pad=False)  # 1 near, 0 by 2r
        opacity = F.interpolate(self.generator.opacity(styles).float(), size=(h, w), mode="bilinear",
                                align_corners=False).clamp(0, 1)
        alpha = torch.maximum(mask, opacity * halo)[0, 0]
        # key = distance along the ray (the same for the crop and the scene camera: they share the centre)
        _, directions = crop.rays()
        rays_z = (directions @ crop.world_to_camera[0, :3, :3].T)[0, :, 2].reshape(h, w)
        distance = torch.where(fragments.mask[0], fragments.depth[0] / rays_z, torch.full_like(rays_z, torch.inf))
        spread = -F.max_pool2d(-distance[None, None], 4 * r + 1, stride=1, padding=2 * r)[0, 0]
        key = torch.where(fragments.mask[0], distance, spread)
        key = torch.where(alpha > 0, key, torch.full_like(key, torch.inf))
        return alpha, key

    # --- the frame -------------------------------------------------------------------------------------------
    def _composite(self, request: FrameRequest, work: list[_Work], crops: list[Tensor]) -> FrameResult:
        H, W = int(request.height), int(request.width)
        if not work:
            return FrameResult(rgba=np.zeros((H, W, 4), np.float32), depth=np.full((H, W), np.inf, np.float32),
                               parts=np.ones((H, W), np.uint8))
        colours, keys = [], []
        for item, rgb in zip(work, crops):
            alpha = item.alpha.cpu()
            premultiplied = torch.cat([rgb * alpha[..., None], alpha[..., None]], -1).permute(2, 0, 1)[None]
            homography = item.homography.cpu()
            pasted, _ = paste(premultiplied, homography, W, H)
            key, _ = paste(item.key.cpu()[None, None], homography, W, H, mode="nearest")
            colours.append(pasted[0])                                                      # (4, H, W)
            keys.append(torch.where(pasted[0, 3] > 0, key[0, 0], torch.full_like(key[0, 0], torch.inf)))
        order = torch.stack(keys).argsort(dim=0)                                           # (K, H, W) near first
        colours = torch.stack(colours).gather(0, order[:, None].expand(-1, 4, -1, -1))
        out = torch.zeros(4, H, W)
        transmittance = torch.ones(H, W)
        for layer in colours:                                                             # front-to-back "over"
            out += transmittance * layer
            transmittance = transmittance * (1 - layer[3])
        alpha = out[3].clamp(0, 1)
        rgb = torch.where(alpha > 0, out[:3] / alpha.clamp_min(1e-12), torch.zeros_like(out[:3])).clamp(0, 1)
        depths = torch.stack([item.scene_depth.float().cpu() for item in work])
        nearest = depths.argmin(0)
        parts = torch.stack([item.scene_parts.cpu() for item in work]).gather(0, nearest[None])[0]
        return FrameResult(rgba=torch.cat([rgb, alpha[None]]).permute(1, 2, 0).contiguous().numpy(),
                           depth=depths.amin(0).numpy().astype(np.float32),
                           parts=parts.numpy().astype(np.uint8))

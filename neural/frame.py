"""The renderer's boundary, numpy only (docs/overview.md §Data flow): what a frame asks for (FrameRequest of
Characters) and what comes back (FrameResult), the empty frame, and the one key of a request. The Blender add-on
builds requests and reads results on its main thread without importing torch; neural.renderer does the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .cli import PSI_RANGE

MAX_DETAIL = 32  # the finest crop, as a multiple of the model's resolution (64×32 → 2048×1024)


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
    name: str = ""  # how reports name it (the Blender object's name); "" → "character <index>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "pose", _array(self.pose, (24, 3), "Character.pose"))
        betas = np.asarray(self.betas, dtype=np.float64)
        object.__setattr__(self, "betas", _array(betas, (betas.size,), "Character.betas"))
        object.__setattr__(self, "transl", _array(self.transl, (3,), "Character.transl"))
        object.__setattr__(self, "body_to_world", _array(self.body_to_world, (4, 4), "Character.body_to_world"))
        if int(self.seed) != self.seed or not 0 <= int(self.seed) < 2**63:
            raise ValueError(f"Character.seed must be an integer in 0..2**63-1, got {self.seed!r}")
        low, high = PSI_RANGE
        if not (math.isfinite(float(self.psi)) and low <= float(self.psi) <= high):
            raise ValueError(f"Character.psi (truncation ψ) must be a finite number in [{low}, {high}], "
                             f"got {self.psi!r}")


@dataclass(frozen=True, kw_only=True)
class FrameRequest:
    """A frame: OpenCV scene camera K (3, 3) pixels and world_to_camera (4, 4), image width × height, and the
    characters to draw (world frame: whatever the caller uses). detail: the finest a character's crop is rendered,
    as a multiple of the model's resolution (1 = the model's own grid, stretched into the frame); None = as fine as
    the frame needs, up to MAX_DETAIL."""

    K: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int
    characters: tuple[Character, ...]
    detail: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", _array(self.K, (3, 3), "FrameRequest.K"))
        object.__setattr__(self, "world_to_camera",
                           _array(self.world_to_camera, (4, 4), "FrameRequest.world_to_camera"))
        object.__setattr__(self, "characters", tuple(self.characters))
        if int(self.width) < 1 or int(self.height) < 1:
            raise ValueError(f"FrameRequest size must be positive, got {self.width}×{self.height}")
        if self.detail is not None and (int(self.detail) != self.detail or not 1 <= self.detail <= MAX_DETAIL):
            raise ValueError(f"FrameRequest.detail must be None or an integer in 1..{MAX_DETAIL}, got {self.detail!r}")


@dataclass(frozen=True)
class CharacterFailure:
    """A character left out of a frame: its index in the request, its name, and why (the others render).
    fatal False: left out because the camera cannot see it (the camera is inside it), so the frame still shows what
    the camera sees; fatal True: the frame is not what was asked."""

    index: int
    name: str
    reason: str
    fatal: bool = True


@dataclass(frozen=True, kw_only=True)
class FrameResult:
    """rgba (H, W, 4) float32 straight alpha, sRGB colour, row 0 = top; depth (H, W) float32 camera z of the
    nearest body surface, inf = empty; parts (H, W) uint8 labels 2..25, 1 = background."""

    rgba: np.ndarray
    depth: np.ndarray
    parts: np.ndarray
    failures: tuple[CharacterFailure, ...] = ()


def empty_result(width: int, height: int, failures: tuple[CharacterFailure, ...] = ()) -> FrameResult:
    """A frame with nothing in it: transparent, depth inf, background parts."""
    return FrameResult(rgba=np.zeros((height, width, 4), np.float32), depth=np.full((height, width), np.inf, np.float32),
                       parts=np.ones((height, width), np.uint8), failures=failures)


def length_prefixed(parts: list[bytes]) -> bytes:
    """The parts joined so that no two different lists give the same bytes: each is preceded by its length."""
    return b"".join(len(r).to_bytes(4, "little") + r for r in parts)


def request_key(request: FrameRequest) -> bytes:
    """A key that two requests share only when they render the same frame: every field, length-prefixed."""
    parts = [request.K, request.world_to_camera, np.array([request.width, request.height, request.detail or 0])]
    for c in request.characters:
        parts += [c.pose, c.betas, c.transl, c.body_to_world, np.array([c.seed, c.psi])]
    raw = [np.ascontiguousarray(p, dtype=np.float64).tobytes() for p in parts]
    raw += [c.name.encode() for c in request.characters]
    return length_prefixed(raw)


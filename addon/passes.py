"""Blender's side of a frame, numpy only: the engine's id and its passes (docs/overview.md §Data flow).

- Combined: scene-linear Rec.709 RGB, premultiplied alpha, row 0 at the bottom. The generator's colours are
  sRGB-encoded (as the photos it learnt from); they are decoded to linear here, so with the view transform
  "Standard" a saved PNG holds exactly the generator's colours. Blender's default "AgX" tone-maps them.
- Depth (View Layer > Passes > Z): camera z in metres (distance along the view axis), 1e10 where there is no body
  (Cycles' background value).
- Body Part: SMPL joint index + 1 of the body part seen (1 = pelvis … 24 = right hand), 0 = background; a
  vertex belongs to its dominant skinning joint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bpy
import numpy as np

if TYPE_CHECKING:
    from neural.frame import FrameResult

ENGINE_ID = "HUMANGAN"
BACKGROUND_DEPTH = 1e10
PART_PASS = "Body Part"


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB decoding (IEC 61966-2-1), elementwise on [0, 1], float32. Both branches over contiguous memory:
    numpy's masked (`where=`) power is some 30× slower than the plain one."""
    c = np.ascontiguousarray(c, np.float32)
    curve = np.power((c + np.float32(0.055)) * np.float32(1 / 1.055), np.float32(2.4))
    return np.where(c > np.float32(0.04045), curve, c * np.float32(1 / 12.92))


def world_colour(scene: bpy.types.Scene) -> np.ndarray:
    """The world's background colour (3,) linear, as Blender's engines show it behind everything: the Background
    node feeding the world output (colour × strength; a linked colour counts as its default), else world.color;
    black without a world."""
    world = scene.world
    if world is None:
        return np.zeros(3, np.float32)
    tree = world.node_tree if getattr(world, "use_nodes", True) else None
    for node in (tree.nodes if tree is not None else ()):
        if node.type == "OUTPUT_WORLD" and node.inputs["Surface"].is_linked:
            source = node.inputs["Surface"].links[0].from_node
            if source.type == "BACKGROUND":
                colour = np.array(source.inputs["Color"].default_value[:3], np.float32)
                return colour * np.float32(source.inputs["Strength"].default_value)
    return np.array(world.color[:3], np.float32)


def to_passes(result: FrameResult, background: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Blender pass buffers (flat float32, row 0 at the bottom) from a FrameResult (row 0 at the top, colours
    already in [0, 1] as the Renderer gives them). background: linear RGB (3,) under the people (Film >
    Transparent off), or None for straight alpha over nothing."""
    rgba = result.rgba[::-1]
    combined = np.zeros(rgba.shape, np.float32)
    alpha = rgba[..., 3]
    seen = alpha > 0  # premultiplied colour is 0 elsewhere: decode only where a person is
    combined[seen, :3] = srgb_to_linear(rgba[seen, :3]) * alpha[seen, None]
    combined[..., 3] = alpha
    if background is not None:  # Film > Transparent off: over the world colour, opaque, as Blender's engines
        combined[..., :3] += (1 - alpha)[..., None] * np.asarray(background, np.float32)[:3]
        combined[..., 3] = 1
    depth = np.where(np.isfinite(result.depth), result.depth, np.float32(BACKGROUND_DEPTH))[::-1]
    parts = result.parts[::-1].astype(np.float32) - 1
    return {"Combined": combined.ravel(), "Depth": np.ascontiguousarray(depth, np.float32).ravel(),
            PART_PASS: np.ascontiguousarray(parts).ravel()}


"""Argument types of the training command line: sizes as WIDTHxHEIGHT, positive counts.

Sizes follow Blender's and image tools' order, WIDTHxHEIGHT, like `neural render` and `addon render`. Until this
version `training synth/prepare --size` read HEIGHTxWIDTH; since images are 2:1 portrait, a size in the old order
(e.g. 256x128) reads as landscape and is refused with the size it probably meant, rather than silently swapped.
"""

from __future__ import annotations

import argparse


def portrait_size(text: str) -> tuple[int, int]:
    """"128x256" → (width, height) = (128, 256); images are 2:1 portrait (height = 2 × width), width ≥ 8."""
    try:
        width, height = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must be WIDTHxHEIGHT, e.g. 128x256") from None
    if width == 2 * height:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is WIDTHxHEIGHT: {width} wide and {height} high, landscape. Images are 2:1 portrait; "
            f"sizes used to be written HEIGHTxWIDTH, so you probably mean {height}x{width}")
    if height != 2 * width or width < 8:
        raise argparse.ArgumentTypeError(f"size {text!r} (WIDTHxHEIGHT): images are 2:1 portrait (height = 2 × "
                                         f"width) and at least 8 wide, e.g. 128x256")
    return width, height


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value

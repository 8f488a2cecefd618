"""The person's frame in a photo: a 2:1 (height = 2 · width) pixel box around a mask, as the dataset's portrait
crops are cut (training/prepare.py) and as the photo fitter frames its targets (training/photos/fit.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Crop:
    """An integer pixel box of the original image: left, top, width, height (height = 2·width)."""

    left: int
    top: int
    width: int
    height: int


def crop_box(mask: np.ndarray, *, margin: float) -> Crop:
    """The 2:1 box centred on the mask's bounding box, with `margin` of the frame left free on the limiting side."""
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2           # continuous, edges at .0
    extent = max(ys.max() - ys.min() + 1, 2 * (xs.max() - xs.min() + 1)) / (1 - 2 * margin)
    height = max(2, int(round(extent / 2)) * 2)
    return Crop(left=int(round(cx - height / 4)), top=int(round(cy - height / 2)), width=height // 2, height=height)

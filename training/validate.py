"""Checking a dataset folder before training: every item's files and fit, so that no bad item can stop a run
mid-way (and, since the batch order is seeded, stop every resume of it at the same step).

Per item: the image, mask and part-map PNGs exist, are whole (PNG chunk checksums, `Image.verify`), have the
dataset's size and the right kind (image RGB/RGBA, mask and part map one channel), the part labels are 1..25 and the
fit's numbers are finite. The checks read PNG chunks without decoding the photos; only the small part maps are
decoded. `train` refuses a dataset with bad items, listing them, or with `--skip-bad` trains on the rest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FIT_SHAPES = {"pose": (24, 3), "transl": (3,), "K": (3, 3), "world_to_camera": (4, 4)}  # per item; betas (nb,)
MODES = {"images": ("RGB", "RGBA"), "masks": ("L",), "parts": ("L",)}
LISTED = 20  # bad items named in one message; the count says how many more


def check_fits(root: Path, fits: dict[str, np.ndarray], count: int, num_betas: int) -> None:
    """fits.npz as a whole has one row per item of the documented shapes (else the dataset is unusable)."""
    for key, shape in {**FIT_SHAPES, "betas": (num_betas,)}.items():
        if key not in fits:
            raise ValueError(f"{root / 'fits.npz'} lacks the array {key!r}; rebuild the dataset")
        array = fits[key]
        want = (count, *shape)
        if array.shape != want or not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{root / 'fits.npz'}: {key} has shape {array.shape} {array.dtype}; expected float "
                             f"{want} for {count} items; rebuild the dataset")


def bad_items(root: Path, names: list[str], fits: dict[str, np.ndarray], *, width: int,
              height: int) -> dict[str, str]:
    """{name: reason} of every item whose files or fit are unusable, in dataset order."""
    problems = {}
    for i, name in enumerate(names):
        reason = _fit_problem(fits, i) or _files_problem(root, name, width, height)
        if reason:
            problems[name] = reason
    return problems


def _fit_problem(fits: dict[str, np.ndarray], i: int) -> str | None:
    bad = [key for key in (*FIT_SHAPES, "betas") if not np.isfinite(fits[key][i]).all()]
    return f"its fit's {', '.join(bad)} hold NaN or inf (fits.npz row {i})" if bad else None


def _files_problem(root: Path, name: str, width: int, height: int) -> str | None:
    for folder, modes in MODES.items():
        path = root / folder / f"{name}.png"
        if not path.is_file():
            return f"{path} is missing"
        try:
            with Image.open(path) as img:
                size, mode = img.size, img.mode
                img.verify()  # chunk checksums through to the end: catches truncation without decoding
        except Exception as error:  # PIL raises OSError, SyntaxError, struct.error... for damaged files
            return f"{path} is damaged or not a PNG ({type(error).__name__}: {error})"
        if size != (width, height):
            return f"{path} is {size[0]}×{size[1]}; the dataset is {width}×{height}"
        if mode not in modes:
            return f"{path} is {mode}; expected {' or '.join(modes)}"
        if folder == "parts":
            with Image.open(path) as img:
                labels = np.asarray(img)
            if labels.min() < 1 or labels.max() > 25:
                return f"{path} holds part labels {labels.min()}..{labels.max()}; labels are 1..25"
    return None


def listing(problems: dict[str, str]) -> str:
    lines = [f"  {name}: {reason}" for name, reason in list(problems.items())[:LISTED]]
    if len(problems) > LISTED:
        lines.append(f"  ... and {len(problems) - LISTED} more")
    return "\n".join(lines)

"""Pictures of the product demo (commands/addon_demo.py) from its PNG sequences: a contact sheet and animated GIFs.

The frames are RGBA with straight alpha (the people over a transparent background); both pictures lay them over
white, the background of the generator's training images (around the body the pose field's opacity adds alpha, and
a trained generator paints that halo the white it learnt; over another colour it shows as a pale rim). The Body
Part row colours each part as `python -m neural demo` does (neural.raster.part_palette). Pillow and numpy only, no
bpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BACKGROUND = (255, 255, 255)
COLUMNS = 8


def on_background(path: Path):
    """An RGBA PNG over BACKGROUND → RGB PIL image."""
    from PIL import Image

    image = Image.open(path).convert("RGBA")
    base = Image.new("RGBA", image.size, BACKGROUND + (255,))
    return Image.alpha_composite(base, image).convert("RGB")


def part_colours(path: Path):
    """A Body Part PNG (0 = background, SMPL joint index + 1) → RGB PIL image in the part palette."""
    from PIL import Image

    from neural.raster import part_palette

    labels = np.asarray(Image.open(path))
    if labels.ndim != 2 or labels.max() > 24:
        raise ValueError(f"{path} is not a Body Part image (greyscale values 0..24); got shape {labels.shape}, "
                         f"max {labels.max()}")
    palette = part_palette()                # 1 = background (white), 2..25 = parts: our labels shifted by one
    colours = np.where(labels[..., None] == 0, np.array(BACKGROUND, np.uint8), palette[labels + 1])
    return Image.fromarray(colours.astype(np.uint8))


def pick(count: int, columns: int = COLUMNS) -> list[int]:
    """`columns` evenly spread indices into a sequence of `count` (all of them when there are fewer)."""
    return sorted(set(np.linspace(0, count - 1, min(columns, count)).round().astype(int).tolist()))


def contact_sheet(rows: list[tuple[str, list]], path: Path) -> Path:
    """Rows of (label, RGB images of one size) side by side, a label in each row's first tile; writes `path`."""
    from PIL import Image, ImageDraw

    width, height = rows[0][1][0].size
    columns = max(len(images) for _, images in rows)
    sheet = Image.new("RGB", (columns * width, len(rows) * height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for r, (label, images) in enumerate(rows):
        for c, image in enumerate(images):
            if image.size != (width, height):
                raise ValueError(f"contact sheet row '{label}': tile {c} is {image.size}, the others {width}×{height}")
            sheet.paste(image, (c * width, r * height))
        draw.text((6, r * height + 4), label, fill=(0, 0, 0))
    sheet.save(path)
    return Path(path)


def write_gif(images: list, path: Path, fps: float) -> Path:
    """An endlessly looping GIF of RGB images at `fps` (GIF delays are whole centiseconds: 24 fps → 40 ms)."""
    from PIL import Image

    frames = [image.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
              for image in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(100 / fps) * 10, loop=0,
                   disposal=1)
    return Path(path)

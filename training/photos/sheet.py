"""`python -m training.photos.sheet --data DIR --out sheet.png`: an overlay sheet of a prepared dataset.

Per item, three panels side by side: the prepared photo, the fitted body drawn over it (grey, shaded by its camera-
facing normals, half transparent), and the part map the discriminator trains on (a fixed colour per label).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.nn import functional as F

from neural.body import BodyModel
from neural.cli import run_command
from neural.camera import Camera
from neural.raster import interpolate, rasterize

from ..data import PhotoDataset

_PALETTE = (np.random.default_rng(3).uniform(40, 255, size=(26, 3))).astype(np.uint8)
_PALETTE[:2] = 255  # fake and background: white


def _vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(V, 3) area-weighted unit normals of one mesh."""
    tri = vertices[faces]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return F.normalize(torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), n.repeat_interleave(3, 0)), dim=-1)


def panels(dataset: PhotoDataset, body: BodyModel, i: int) -> np.ndarray:
    """(H, 3W, 3) uint8: photo | fitted body over the photo | part map, for item i."""
    item = dataset[i]
    image = ((item["image"].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    H, W = image.shape[:2]
    with torch.no_grad():
        posed = body(betas=item["betas"][None], pose=item["pose"][None], transl=item["transl"][None])
        camera = Camera(K=item["K"][None], world_to_camera=item["world_to_camera"][None], width=W, height=H)
        frags = rasterize(posed.vertices, posed.faces, camera)
        normals = _vertex_normals(posed.vertices[0], posed.faces) @ camera.world_to_camera[0, :3, :3].T
        shade = interpolate(frags, posed.faces, (-normals[:, 2:3]).clamp(0, 1))[0, ..., 0].numpy()  # facing: z < 0
    body_rgb = (60 + 180 * shade)[..., None].repeat(3, -1)
    hit = frags.mask[0].numpy()[..., None]
    overlay = np.where(hit, 0.35 * image + 0.65 * body_rgb, image).astype(np.uint8)
    parts = _PALETTE[item["parts"].numpy()]
    return np.concatenate([image, overlay, parts], 1)


def sheet(data: Path, out: Path, *, columns: int = 4, limit: int | None = None) -> Path:
    """Write the sheet PNG of the first `limit` items of a dataset folder, `columns` items a row."""
    dataset = PhotoDataset(data)
    body = BodyModel.load(dataset.manifest["body"]["file"])
    n = min(len(dataset), limit or len(dataset))
    tiles = []
    for i in range(n):
        tile = Image.fromarray(panels(dataset, body, i))
        ImageDraw.Draw(tile).text((2, 2), dataset.names[i][:24], fill=(0, 0, 0))
        tiles.append(np.asarray(tile))
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    gap = lambda t: np.pad(t, ((4, 4), (4, 4), (0, 0)), constant_values=255)  # noqa: E731
    rows = [np.concatenate([gap(t) for t in tiles[r:r + columns]], 1) for r in range(0, len(tiles), columns)]
    Image.fromarray(np.concatenate(rows, 0)).save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.photos.sheet", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a dataset folder (python -m training prepare)")
    p.add_argument("--out", type=Path, required=True, help="the sheet PNG to write")
    p.add_argument("--columns", type=int, default=4)
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)
    return run_command("python -m training.photos.sheet",
                       lambda: print(sheet(args.data, args.out, columns=args.columns, limit=args.limit)))


if __name__ == "__main__":
    sys.exit(main())

"""Sample grids of a run: fixed seeds × fixed poses and views, rendered by the EMA generator.

Row 0 shows the conditioning part maps; each further row is one seed (one appearance). Columns: the first pose
seen from yaw −30°, 0°, +30° about the body, then two more poses from their photos' cameras. A generator that has
learnt 3D-consistent people keeps each row's clothing colours across its columns (the "done" check of training).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from neural.body import BodyModel, PosedBody
from neural.appearance import sample_latents
from neural.camera import Camera
from neural.config import GeneratorConfig
from neural.files import write_atomic
from neural.raster import part_palette, parts_seen

from .data import PhotoDataset, rotate_about_body

SEEDS = (0, 1, 2, 3)
VIEWS_DEG = (-30.0, 0.0, 30.0)


def _to_uint8(image: Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] → (H, W, 3) uint8."""
    return ((image.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def write_grid(path: Path, rows: list[list[np.ndarray]], *, min_height: int = 128) -> None:
    """Tile equally sized (H, W, 3) uint8 images row by row into one PNG, written atomically. Tiles lower than
    `min_height` are enlarged by an integer factor (nearest), so small CPU models stay readable."""
    scale = max(1, -(-min_height // rows[0][0].shape[0]))
    rows = [[tile.repeat(scale, 0).repeat(scale, 1) for tile in row] for row in rows]
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * h, cols * w, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            sheet[i * h:(i + 1) * h, j * w:(j + 1) * w] = tile
    write_atomic(path, lambda tmp: Image.fromarray(sheet).save(tmp, format="PNG"))


@dataclass(frozen=True)
class SampleSet:
    """The fixed bodies, cameras and latents of a run's sample grids (on `device`)."""

    posed: PosedBody  # (C,) one body per column
    camera: Camera  # (C,)
    z: Tensor  # (S, latent_dim)
    parts: Tensor  # (C, H, W) conditioning part labels
    real_images: Tensor  # (P, 3, H, W) the photos the poses come from

    @classmethod
    def build(cls, dataset: PhotoDataset, body: BodyModel, config: GeneratorConfig, *, device) -> SampleSet:
        picks = [int(i) for i in np.linspace(0, len(dataset) - 1, 3).round()]
        items = [dataset[i] for i in picks]
        columns = [0] * len(VIEWS_DEG) + [1, 2]
        yaw = torch.tensor([*np.radians(VIEWS_DEG), 0.0, 0.0], dtype=torch.float32, device=device)
        stack = {k: torch.stack([items[c][k] for c in columns]).to(device) for k in ("betas", "pose", "transl", "K",
                                                                                      "world_to_camera")}
        with torch.no_grad():
            posed = body(betas=stack["betas"], pose=stack["pose"], transl=stack["transl"])
            w2c = rotate_about_body(stack["world_to_camera"], posed.root_rotation, posed.joints[:, 0], yaw,
                                    torch.zeros_like(yaw))
            camera = Camera(K=stack["K"], world_to_camera=w2c, width=config.width, height=config.height)
            parts = parts_seen(posed, camera)
        z = torch.cat([sample_latents(s, 1, config.latent_dim) for s in SEEDS])
        return cls(posed=posed, camera=camera, z=z.to(device), parts=parts,
                   real_images=torch.stack([item["image"] for item in items]))

    def reals(self) -> list[list[np.ndarray]]:
        palette = part_palette()
        return [[_to_uint8(img) for img in self.real_images], [palette[p.cpu().numpy()] for p in self.parts[[0, 3, 4]]]]

    @torch.no_grad()
    def render(self, generator: torch.nn.Module) -> list[list[np.ndarray]]:
        """Rows: part maps, then one row per seed; the generator is used in eval mode (ray bins at their centres)."""
        was_training = generator.training
        generator.eval()
        C = self.camera.batch_size
        rows = [[part_palette()[p.cpu().numpy()] for p in self.parts]]
        for z in self.z:
            out = generator(z[None].expand(C, -1), self.posed, self.camera)
            rows.append([_to_uint8(img) for img in out.image])
        generator.train(was_training)
        return rows

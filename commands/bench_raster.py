"""Timing of the rasteriser (neural/raster.py) on the free body: the part-map pass of every rendered frame.

`bench_raster()` is called by the main benchmark (commands/bench.py); `python -m commands.bench_raster` prints it.
Target (docs/environment.md §Rasteriser): a 14k-vertex body at 512×256 (H×W) in ≤ 100 ms on a 2-core CPU.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from neural.body import free_body_path
from neural.camera import Camera
from neural.raster import part_map, rasterize

FREE_BODY = free_body_path()


def bench_raster(*, body_path: str | Path = FREE_BODY, width: int = 256, height: int = 512, repeats: int = 10,
                 device: str = "cpu") -> float:
    """Median milliseconds of rasterize + part_map for the body's template mesh seen from the front.

    body_path: SMPL-format .npz with v_template (V, 3), f (F, 3), weights (V, J). On CUDA the time includes a
    synchronisation after each call.
    """
    path = Path(body_path)
    if not path.exists():
        raise FileNotFoundError(f"bench_raster needs the body file {path}; build it with tools/ or pass body_path=")
    with np.load(path) as data:
        verts = torch.as_tensor(np.asarray(data["v_template"], dtype=np.float32), device=device)[None]
        faces = torch.as_tensor(np.asarray(data["f"], dtype=np.int64), device=device)
        parts = torch.as_tensor(np.asarray(data["weights"]).argmax(1) + 2, device=device)
    center = 0.5 * (verts[0].amin(0) + verts[0].amax(0))
    camera = Camera.orbit(center.cpu(), 3.5, 0.0, 0.0, fov_y_deg=30.0, width=width, height=height).to(device)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        labels = part_map(rasterize(verts, faces, camera), faces, parts)
        if device != "cpu":
            torch.cuda.synchronize()
        if i:                                                                        # the first call warms up
            times.append(1000 * (time.perf_counter() - start))
    if int((labels > 1).sum()) == 0:
        raise RuntimeError(f"bench_raster drew no body pixels from {path}; is the file a body in metres, Y up?")
    return statistics.median(times)


if __name__ == "__main__":
    print(f"rasterize + part_map, {FREE_BODY.name}, 512×256: {bench_raster():.1f} ms (median)")

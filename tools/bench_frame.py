"""Engine time per 1920×1080 frame with one person filling ~80% of the frame's height (README "Speed").

For the default model and for `paper-512` (random weights: the time does not depend on them), at the detail the
frame needs, the same request rendered three ways in one process:
  stretch — the model's own crop (Detail: Model), as before frame-resolution crops;
  all     — every pixel of the frame-resolution crop synthesised (before culling);
  shown   — only the crop pixels whose alpha can be > 0 and that reach the frame (the renderer's path).
Medians over --repeats after one warm-up; the pixels synthesised are counted by the renderer.

    python tools/bench_frame.py --threads 2 --repeats 3
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from neural.body import BodyModel, free_body_path
from neural.camera import Camera
from neural.config import preset
from neural.generator import Generator
from neural.renderer import Character, FrameRequest, Renderer


def person_request(renderer: Renderer, *, detail: int | None, width: int = 1920, height: int = 1080,
                   fill: float = 0.8) -> FrameRequest:
    pose = np.zeros((24, 3))
    pose[16, 2], pose[17, 2] = -1.0, 1.0
    with torch.no_grad():
        v = renderer.body(pose=torch.as_tensor(pose[None], dtype=torch.float32)).vertices[0].double().numpy()
    centre = 0.5 * (v.min(0) + v.max(0))
    fov = 30.0
    distance = (v.max(0)[1] - v.min(0)[1]) / fill / (2 * math.tan(math.radians(fov) / 2))
    camera = Camera.look_at(torch.tensor(centre + np.array([0.0, 0.0, distance])), torch.tensor(centre),
                            fov_y_deg=fov, width=width, height=height, dtype=torch.float64)
    return FrameRequest(K=camera.K[0].numpy(), world_to_camera=camera.world_to_camera[0].numpy(), width=width,
                        height=height, characters=(Character(pose=pose, seed=1),), detail=detail)


def timed(renderer: Renderer, request: FrameRequest, repeats: int) -> float:
    renderer.render(request)
    times = []
    for _ in range(repeats):
        renderer._cache = None  # the whole frame each time, per-character work included
        start = time.perf_counter()
        renderer.render(request)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def every_pixel(item, stride):
    return torch.stack(torch.meshgrid(torch.arange(item.crop.width), torch.arange(item.crop.height),
                                      indexing="xy"), -1).reshape(-1, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--presets", nargs="+", default=["default", "paper-512"])
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| model | crop (detail) | stretch | all pixels | shown pixels | pixels synthesised (all → shown) | all ÷ shown |")
    print("|---|---|---|---|---|---|---|")
    for name in args.presets:
        if name == "default":
            renderer = Renderer(device="cpu")
        else:
            torch.manual_seed(0)
            renderer = Renderer.from_modules(generator=Generator(preset(name)), body=BodyModel.load(free_body_path()),
                                             device="cpu")
        request = person_request(renderer, detail=None)
        stretch = timed(renderer, person_request(renderer, detail=1), args.repeats)
        shown = timed(renderer, request, args.repeats)
        count = renderer.pixels_to_synthesize(request)
        item = renderer._work_of(request, 0)
        total = item.crop.width * item.crop.height
        renderer._pixels_to_render = every_pixel
        everything = timed(renderer, request, args.repeats)
        print(f"| {name} | {item.crop.height}×{item.crop.width} ({item.scale}×) | {stretch:.2f} s | "
              f"{everything:.2f} s | {shown:.2f} s | {total:,} → {count:,} | {everything / shown:.2f}× |", flush=True)


if __name__ == "__main__":
    main()

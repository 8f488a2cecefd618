"""`python -m commands.addon_bench`: the render engine's cost per frame beyond the generator (target ≤ 20 ms at 512×256).

A walking human (free body, procedural gait, new pose every frame) is rendered through Blender's own render
operator; the time spent inside `neural.Renderer.render` is subtracted from each frame's wall time. What is left
is the engine: the depsgraph update for the frame, reading the rig and camera, the rest-pelvis lookup, pass
conversion (sRGB → linear, premultiply, flip) and Blender's result handling; with --png also the file writing.
The generator is a tiny random-weight model unless --model is given (its cost does not enter the overhead).
`neural.bench` cannot import this module (neural never imports the add-on); run it as its own command.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _tiny_model(folder: Path, body_path: Path) -> Path:
    import torch

    from neural import checkpoint
    from neural.body import BodyModel
    from neural.config import preset
    from neural.generator import Generator

    torch.manual_seed(0)
    path = folder / "tiny.safetensors"
    checkpoint.save(path, Generator(preset("tiny")).eval(), body_fingerprint=BodyModel.load(body_path).fingerprint)
    return path


def _scene(width: int, height: int, frames: int, model: Path | None, body_file: str, folder: Path):
    import bpy

    import addon

    from .addon_demo import build_walk
    from addon.frames import body_path

    if not hasattr(bpy.types.Scene, "humangan"):
        addon.register()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    build_walk(scene, body_file=body_file, seeds=(1,))  # one walker: the engine's cost per character
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.frame_start, scene.frame_end = 1, frames
    scene.humangan.model_file = str(model or _tiny_model(folder, body_path(body_file)))
    scene.humangan.device = "CPU"
    return scene


def measure(*, frames: int = 10, width: int = 512, height: int = 256, model: Path | None = None,
            body_file: str = "", png: bool = False) -> dict[str, float]:
    """Median milliseconds per frame: total (render operator), generator (inside Renderer.render), overhead."""
    import bpy

    from neural.renderer import Renderer

    from addon import engine

    inside: list[float] = []
    original = Renderer.render

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            inside.append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory(prefix="humangan-bench-") as tmp:
        scene = _scene(width, height, frames + 1, model, body_file, Path(tmp))
        Renderer.render = timed
        try:
            scene.frame_set(1)
            engine.render_still()  # warm-up: loads the model, first torch calls
            inside.clear()
            totals = []
            if png:
                scene.frame_start = 2
                scene.render.filepath = str(Path(tmp) / "frame_")
                start = time.perf_counter()
                bpy.ops.render.render(animation=True)
                totals = [(time.perf_counter() - start) / frames] * frames
            else:
                for f in range(2, frames + 2):
                    scene.frame_set(f)
                    start = time.perf_counter()
                    engine.render_still()
                    totals.append(time.perf_counter() - start)
        finally:
            Renderer.render = original
    if engine.LAST_REPORTS:
        raise RuntimeError("the benchmark scene did not render: " + "; ".join(engine.LAST_REPORTS))
    total = statistics.median(totals) * 1e3
    generator = statistics.median(inside) * 1e3
    if png:
        total, generator = sum(totals) / frames * 1e3, sum(inside) / frames * 1e3
    return {"total_ms": total, "generator_ms": generator, "overhead_ms": total - generator}


def components(*, frames: int = 10, width: int = 512, height: int = 256, body_file: str = "") -> dict[str, float]:
    """Median milliseconds of the engine's own steps on the benchmark scene: reading the frame (rig, camera,
    rest pelvis) and converting a full-frame result to Blender's passes."""
    import bpy
    import numpy as np

    from neural.frame import FrameResult

    from addon import frames, passes, scene as scene_module

    with tempfile.TemporaryDirectory(prefix="humangan-bench-") as tmp:
        scene = _scene(width, height, frames + 1, None, body_file, Path(tmp))
        reads, passes = [], []
        rng = np.random.default_rng(0)
        result = FrameResult(rgba=rng.random((height, width, 4), dtype=np.float32),
                             depth=rng.random((height, width), dtype=np.float32),
                             parts=rng.integers(1, 26, (height, width)).astype(np.uint8))
        for f in range(1, frames + 1):
            scene.frame_set(f)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            start = time.perf_counter()
            scene_module.read_frame(depsgraph, rest_joints=frames.safe_rest_joints)
            reads.append(time.perf_counter() - start)
            start = time.perf_counter()
            passes.to_passes(result)
            passes.append(time.perf_counter() - start)
    return {"read_ms": statistics.median(reads) * 1e3, "passes_ms": statistics.median(passes) * 1e3}


def table(rows: list[tuple[str, dict[str, float]]], width: int, height: int) -> str:
    lines = [f"HumanGAN engine overhead per frame at {width}×{height} (target ≤ 20 ms beyond the generator)", "",
             "| path | total ms | generator ms | overhead ms |", "|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['total_ms']:.1f} | {r['generator_ms']:.1f} | {r['overhead_ms']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m commands.addon_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", default="512x256", help="W×H, e.g. 512x256")
    parser.add_argument("--model", type=Path, help="generator checkpoint (default: a tiny random model)")
    parser.add_argument("--body", default="", help="body file (default: the free body)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    rows = [(name, measure(frames=args.frames, width=width, height=height, model=args.model, body_file=args.body,
                           png=png)) for name, png in (("still, no file", False), ("animation → PNG", True))]
    print(table(rows, width, height))
    parts = components(frames=args.frames, width=width, height=height, body_file=args.body)
    print(f"\nof which: reading the frame (rig, camera) {parts['read_ms']:.1f} ms, "
          f"result → passes {parts['passes_ms']:.1f} ms; the rest is Blender's (depsgraph, result, file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

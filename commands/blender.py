"""`python -m addon`: the add-on's command line (docs/overview.md §Packages), dispatched from addon/__main__.py:

    python -m addon build --out dist/ [--no-wheels] [--torch-index URL]
    python -m addon render --blend FILE --out DIR [--frames A-B] [--size WxH] [--model PATH] [--device auto|cpu|cuda]
    python -m addon render --demo --out DIR [--frames A-B] [--size WxH] [--model PATH] [--save-blend FILE]
    python -m addon demo --out DIR [--model PATH] [--size WxH] [--frames N] [--seeds A,B] [--threads N]

`render` renders the frame range through the HumanGAN engine (bpy module), with the file's output settings except
the path: frames go to DIR/frame_####.png, each written whole or not at all. Exit codes: 0 every frame written;
1 a frame not rendered as asked (no file for it; the reason names the character, file and flag or setting) or a
bad argument; 130 Ctrl+C; 143 SIGTERM (frames already written are complete). `--demo` builds the demo's walk scene
(addon_demo.py) instead of opening a file: two people walking, filmed by a moving camera. `demo` is the whole product demo (addon_demo.py): the
walk and a turntable as PNG sequences with their Body Part pass, a contact sheet and GIFs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from neural.cli import EXPECTED_ERRORS, run_command

from .addon_demo import walk_pose

__all__ = ["main", "walk_pose"]


def _frames(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        a, b = int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frames takes A-B (e.g. 1-48), got {text!r}") from None
    if b < a:
        raise argparse.ArgumentTypeError(f"--frames {text}: the last frame is before the first")
    return a, b


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size takes W×H (e.g. 512x256), got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"--size {text}: both sides must be positive")
    return width, height


def _seeds(text: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes two integers A,B (e.g. 1,2), got {text!r}") from None
    if a == b or min(a, b) < 0:
        raise argparse.ArgumentTypeError(f"--seeds {text}: two different seeds ≥ 0")
    return a, b


@contextmanager
def registered() -> Iterator[None]:
    """The add-on registered for one command and unregistered after it (bpy 4.5 hangs at exit while add-on
    classes are still registered)."""
    import bpy

    import addon

    mine = not hasattr(bpy.types.Scene, "humangan")
    if mine:
        addon.register()
    try:
        yield
    finally:
        if mine:
            addon.unregister()


def demo(args: argparse.Namespace) -> int:
    from . import addon_demo as product

    if args.frames is not None and args.frames < 1:
        print(f"error: --frames {args.frames}: at least one frame", file=sys.stderr)
        return 2
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    with registered():
        outputs = product.run_demo(args.out, model=args.model, body_file=args.body or "",
                                   size=args.size or product.SIZE, frames=args.frames or product.FRAMES,
                                   seeds=args.seeds or product.SEEDS, device=args.device,
                                   log=lambda line: print(line, file=sys.stderr, flush=True))
    for name, sequence in (("walk", outputs.walk), ("turntable", outputs.turntable)):
        print(f"{name}: {len(sequence.frames)} frames {sequence.folder}/frame_####.png, "
              f"body parts {sequence.folder}/parts/part_####.png")
    print(f"contact sheet: {outputs.contact_sheet}")
    print("GIFs: " + " ".join(map(str, outputs.gifs)))
    return 0


def render(args: argparse.Namespace) -> int:
    """Render every frame of the range through the HumanGAN engine, one still at a time, each written atomically
    with the scene's image settings to the path Blender's animation render would use. A frame the engine could
    not render as asked (a character or the model missing) is not written; the reasons are printed and the exit
    code is 1. SIGINT / SIGTERM stop within the frame in progress (exit 130 / 143 through neural.cli)."""
    import bpy

    from neural.cli import Terminated
    from neural.files import atomic_path, refuse_overwriting_input

    from addon import engine, frames, signals

    from .addon_demo import build_walk

    frames.SETTINGS["model"] = "--model PATH (or the .blend's Render Properties > HumanGAN > Model)"
    if args.demo:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        build_walk(bpy.context.scene, body_file=args.body or "")
    else:
        if not Path(args.blend).is_file():
            raise FileNotFoundError(f"--blend {args.blend} does not exist")
        try:
            bpy.ops.wm.open_mainfile(filepath=str(Path(args.blend).resolve()))
        except RuntimeError as error:
            raise ValueError(f"--blend {args.blend} cannot be opened by Blender {bpy.app.version_string}: "
                             f"{str(error).strip()}") from None
    scene = bpy.context.scene
    scene.render.engine = "HUMANGAN"
    if args.model:
        scene.humangan.model_file = str(Path(args.model).resolve())
    if args.device:
        scene.humangan.device = args.device.upper()
    if args.frames:
        scene.frame_start, scene.frame_end = args.frames
    if args.size:
        scene.render.resolution_x, scene.render.resolution_y = args.size
        scene.render.resolution_percentage = 100
    if args.save_blend:
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(args.save_blend).resolve()))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(out / "frame_")
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    inputs = [p for p in (args.blend, args.model) if p]
    written, failed = 0, {}
    signals.watch(exit_process=False)
    try:
        for frame in range(scene.frame_start, scene.frame_end + 1, scene.frame_step):
            scene.frame_set(frame)
            engine.render_still()
            if signals.caught() is not None:
                raise KeyboardInterrupt if signals.caught() == signal.SIGINT else Terminated()
            for line in dict.fromkeys(engine.LAST_REPORTS):
                print(f"frame {frame}: {line}", file=sys.stderr)
            if engine.LAST_FAILURES:
                for line in dict.fromkeys(engine.LAST_FAILURES):
                    failed.setdefault(line, []).append(frame)
                continue
            path = Path(scene.render.frame_path(frame=frame))
            refuse_overwriting_input(path, *inputs)
            with atomic_path(path) as tmp:
                bpy.data.images["Render Result"].save_render(filepath=str(tmp), scene=scene)
            written += 1
    finally:
        signals.unwatch()
    print(f"{written} frames in {out}")
    for line, frames in failed.items():
        print(f"error: {len(frames)} frame(s) not written ({_ranges(frames)}): {line}", file=sys.stderr)
    return 1 if failed or not written else 0


def _ranges(frames: list[int]) -> str:
    """[1, 2, 3, 7] → "1-3, 7"."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m addon", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="the installable extension zip")
    b.add_argument("--out", type=Path, default=Path("dist"))
    b.add_argument("--no-wheels", action="store_true", help="leave out torch and safetensors (tests, own torch)")
    b.add_argument("--torch-index", help="extra pip index with the CPU torch wheel, e.g. "
                                          "https://download.pytorch.org/whl/cpu")
    r = commands.add_parser("render", help="render a .blend (or the demo scene) through the HumanGAN engine")
    source = r.add_mutually_exclusive_group(required=True)
    source.add_argument("--blend", type=Path)
    source.add_argument("--demo", action="store_true")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--frames", type=_frames, help="A-B, inclusive (default: the scene's range)")
    r.add_argument("--size", type=_size, help="W×H output size, e.g. 512x256 (default: the scene's)")
    r.add_argument("--model", type=Path, help="generator checkpoint (default: the scene's, else the default model)")
    r.add_argument("--body", help="body file for --demo (default: the free body)")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"])
    r.add_argument("--save-blend", type=Path, help="also save the scene as a .blend")
    d = commands.add_parser("demo", help="the product demo: a walk and a turntable → PNGs, contact sheet, GIFs")
    d.add_argument("--out", type=Path, default=Path("demo_out"))
    d.add_argument("--model", type=Path, help="generator checkpoint (default: the default model)")
    d.add_argument("--size", type=_size, default=None, help="W×H of every frame (default 320x240)")
    d.add_argument("--frames", type=int, default=None, help="frames per sequence at 24 fps (default 48)")
    d.add_argument("--seeds", type=_seeds, default=None, help="the walkers' appearance seeds A,B (default 1,2); "
                                                              "the turntable shows A")
    d.add_argument("--body", help="body file (default: the free body)")
    d.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    d.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    # a failed pip download or a Blender that refuses the scene (RuntimeError) is the user's to fix here too
    expected = EXPECTED_ERRORS + (RuntimeError,)
    if args.command == "demo":
        return run_command("python -m addon demo", lambda: demo(args), expected=expected)
    if args.command == "build":
        from .build import build

        return run_command("python -m addon build", lambda: print(build(args.out, wheels=not args.no_wheels,
                                                                        torch_index=args.torch_index)),
                           expected=(RuntimeError, FileNotFoundError))

    def command() -> int:
        with registered():
            return render(args)

    return run_command("python -m addon render", command)


if __name__ == "__main__":
    sys.exit(main())

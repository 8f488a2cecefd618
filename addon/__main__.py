"""Command line of the add-on (design.md §2):

    python -m addon build --out dist/ [--no-wheels] [--torch-index URL]
    python -m addon render --blend FILE --out DIR [--frames A-B] [--size WxH] [--model PATH] [--device auto|cpu|cuda]
    python -m addon render --demo --out DIR [--frames A-B] [--size WxH] [--model PATH] [--save-blend FILE]

`render` runs Blender's own animation render (bpy module) through the HumanGAN engine, with the file's output
settings except the path: frames go to DIR/frame_####.png. `--demo` builds the README scene instead of opening a
file: a person walking in place (free body, procedural gait) filmed by a camera on a turntable.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

DEMO_FRAMES = 48  # two gait cycles at 24 fps, one turn of the table


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


def walk_pose(frame: float, fps: float = 24.0) -> tuple[np.ndarray, np.ndarray]:
    """A procedural gait: SMPL pose (24, 3) and transl (3,) at a frame (one step cycle per second)."""
    from .rig import axis_angle_to_matrix, matrix_to_axis_angle

    phase = 2 * math.pi * frame / fps
    s = math.sin(phase)
    pose = np.zeros((24, 3))
    pose[1, 0], pose[2, 0] = -0.45 * s, 0.45 * s                       # hips swing about body X
    pose[4, 0] = 0.7 * max(0.0, math.sin(phase + 1.2))                   # knees bend on the back swing
    pose[5, 0] = 0.7 * max(0.0, -math.sin(phase + 1.2))
    pose[7, 0], pose[8, 0] = 0.15 * s, -0.15 * s                        # ankles
    for joint, down, swing in ((16, -1.25, 0.35 * s), (17, 1.25, -0.35 * s)):  # arms down, opposite to the legs
        rotation = axis_angle_to_matrix(np.array([swing, 0, 0])) @ axis_angle_to_matrix(np.array([0, 0, down]))
        pose[joint] = matrix_to_axis_angle(rotation)
    pose[18, 1], pose[19, 1] = 0.25, -0.25                               # elbows a little bent
    pose[3, 1] = pose[9, 1] = 0.05 * s                                    # torso counter-rotation
    transl = np.array([0.0, 0.02 * math.cos(2 * phase), 0.0])
    return pose, transl


def build_demo(scene, *, body_file: str = "") -> None:
    """The README scene in `scene`: a walking person, a turntable camera, frames 1..DEMO_FRAMES."""
    import bpy

    from neural.body import BodyModel

    from . import rig
    from .engine import body_path

    scene.render.engine = "HUMANGAN"
    scene.render.fps, scene.frame_start, scene.frame_end = 24, 1, DEMO_FRAMES
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 512, 512, 100
    scene.view_settings.view_transform = "Standard"  # the generator's colours, untouched
    arm = rig.create_human(bpy.context, BodyModel.load(body_path(body_file)), name="Walker", body_file=body_file)
    arm.humangan.seed, arm.humangan.psi = 1, 0.7
    info = rig.read_rig(arm)
    for frame in range(scene.frame_start, scene.frame_end + 1):
        pose, transl = walk_pose(frame)
        rig.set_pose(arm, info, pose, transl)
        for name in info.bones:
            arm.keyframe_insert(f'pose.bones["{name}"].rotation_quaternion', frame=frame)
        arm.keyframe_insert(f'pose.bones["{info.bones[0]}"].location', frame=frame)
    table = bpy.data.objects.new("Turntable", None)
    scene.collection.objects.link(table)
    table.location = (0.0, 0.0, 0.9)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.parent = table
    camera.location, camera.rotation_euler = (0.0, -4.0, 0.0), (math.pi / 2, 0.0, 0.0)
    camera.data.lens = 50.0
    scene.camera = camera
    table.rotation_euler = (0.0, 0.0, 0.0)
    table.keyframe_insert("rotation_euler", index=2, frame=scene.frame_start)
    table.rotation_euler = (0.0, 0.0, 2 * math.pi)
    table.keyframe_insert("rotation_euler", index=2, frame=scene.frame_end + 1)  # a seamless loop
    for curve in _curves(table):
        for key in curve.keyframe_points:
            key.interpolation = "LINEAR"


def _curves(obj):
    """The F-curves of an object's action (Blender 5 layered actions)."""
    action = obj.animation_data.action
    slot = obj.animation_data.action_slot
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                yield from bag.fcurves


def render(args: argparse.Namespace) -> int:
    import bpy

    import addon

    from . import engine

    if not hasattr(bpy.types.Scene, "humangan"):
        addon.register()
    if args.demo:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        build_demo(bpy.context.scene, body_file=args.body or "")
    else:
        if not Path(args.blend).is_file():
            print(f"error: --blend {args.blend} does not exist", file=sys.stderr)
            return 2
        bpy.ops.wm.open_mainfile(filepath=str(Path(args.blend).resolve()))
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
    bpy.ops.render.render(animation=True)
    written = sorted(out.glob("frame_*.png"))
    for line in dict.fromkeys(engine.LAST_REPORTS):
        print(line, file=sys.stderr)
    print(f"{len(written)} frames in {out}")
    return 0 if written else 1


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
    args = parser.parse_args(argv)
    if args.command == "build":
        from .build import build

        try:
            print(build(args.out, wheels=not args.no_wheels, torch_index=args.torch_index))
        except (RuntimeError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    return render(args)


if __name__ == "__main__":
    sys.exit(main())

"""The product demo through the HumanGAN render engine (docs/overview.md §Data flow, README "Two commands"):

    python -m addon demo --out demo_out [--model M.safetensors] [--size 320x240] [--frames 48] [--seeds 1,2]

Two scenes, each rendered frame by frame by Blender (bpy module, no UI) with the engine of engine.py:
- walk: two free-body people with different appearance seeds walk along +X for two seconds (procedural gait,
  24 fps), filmed by a camera on a dolly that follows them and swings from their front-right to their right side.
  They walk staggered (one ahead and to the left of the other) so that the swing never lines them up.
- turntable: one person (the first seed) standing, a camera circling once around them.

Each frame is saved twice from the same Render Result: the Combined pass as an 8-bit RGBA PNG (view transform
Standard: exactly the generator's colours), and a multilayer EXR from which the Body Part pass is kept as an 8-bit
greyscale PNG (0 = background, SMPL joint index + 1). demo_sheet.py makes the contact sheet and the GIFs.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

FPS = 24
FRAMES = 48                 # two seconds: two gait cycles, one turn of the table
SIZE = (320, 240)           # the people are 140-180 px tall: the 64 × 32 crops of cpu-small upsampled 2.5-3×
SEEDS = (1, 2)
WALK_SPEED = 1.2            # m/s, about what the gait's stride covers
# (x, y) at frame 1, metres: staggered, so the view direction lines them up only at a dolly yaw of -55°
WALKERS = ((0.7, 0.5), (-0.7, -0.5))
WALK_PHASES = (0, 7)        # frames of gait offset, so the two do not step in lockstep
DOLLY_YAW = (60.0, -10.0)   # degrees: camera at the walkers' front-right, then at their right side
WALK_DISTANCE, TURNTABLE_DISTANCE = 4.8, 4.3  # camera to subject, metres (50 mm lens)


def _arms_down(pose: np.ndarray, swing: float) -> None:
    """Arms hanging at the sides (swinging ±swing rad about body X), elbows a little bent; pose (24, 3) in place."""
    from addon.rig import axis_angle_to_matrix, matrix_to_axis_angle

    for joint, down, sign in ((16, -1.25, 1.0), (17, 1.25, -1.0)):
        rotation = axis_angle_to_matrix(np.array([sign * swing, 0, 0])) @ axis_angle_to_matrix(np.array([0, 0, down]))
        pose[joint] = matrix_to_axis_angle(rotation)
    pose[18, 1], pose[19, 1] = 0.25, -0.25


def walk_pose(frame: float, fps: float = FPS) -> tuple[np.ndarray, np.ndarray]:
    """A procedural gait: SMPL pose (24, 3) and transl (3,) at a frame (one step cycle per second)."""
    phase = 2 * math.pi * frame / fps
    s = math.sin(phase)
    pose = np.zeros((24, 3))
    pose[1, 0], pose[2, 0] = -0.45 * s, 0.45 * s                       # hips swing about body X
    pose[4, 0] = 0.7 * max(0.0, math.sin(phase + 1.2))                   # knees bend on the back swing
    pose[5, 0] = 0.7 * max(0.0, -math.sin(phase + 1.2))
    pose[7, 0], pose[8, 0] = 0.15 * s, -0.15 * s                        # ankles
    _arms_down(pose, 0.35 * s)                                          # arms opposite to the legs
    pose[3, 1] = pose[9, 1] = 0.05 * s                                    # torso counter-rotation
    transl = np.array([0.0, 0.02 * math.cos(2 * phase), 0.0])
    return pose, transl


def stand_pose() -> np.ndarray:
    """A relaxed standing pose (24, 3): arms down, legs straight."""
    pose = np.zeros((24, 3))
    _arms_down(pose, 0.0)
    return pose


def _setup(scene, *, frames: int, size: tuple[int, int]) -> None:
    scene.render.engine = "HUMANGAN"
    scene.render.fps, scene.frame_start, scene.frame_end = FPS, 1, frames
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True  # RGBA frames: the sheets and GIFs lay them over their own backgrounds
    scene.view_settings.view_transform = "Standard"  # the generator's colours, untouched
    scene.render.dither_intensity = 0.0              # no noise added to the 8-bit PNGs


def _add_human(scene, body, *, name: str, body_file: str, seed: int, location: tuple[float, float]):
    import bpy

    from addon import rig

    scene.cursor.location = (location[0], location[1], 0.0)
    arm = rig.create_human(bpy.context, body, name=name, body_file=body_file)
    arm.humangan.seed, arm.humangan.psi = seed, 0.7
    return arm


def _add_camera(scene, parent, distance: float):
    """A 50 mm camera on `parent` at (0, -distance, 0), looking along the parent's +Y."""
    import bpy

    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.parent = parent
    camera.location, camera.rotation_euler = (0.0, -distance, 0.0), (math.pi / 2, 0.0, 0.0)
    camera.data.lens = 50.0
    scene.camera = camera
    return camera


def _linear(obj, path: str, start, end, first: int, after_last: int) -> None:
    """Keyframe obj.<path> from `start` at frame `first` to `end` at frame `after_last`, linearly."""
    setattr(obj, path, start)
    obj.keyframe_insert(path, frame=first)
    setattr(obj, path, end)
    obj.keyframe_insert(path, frame=after_last)
    for curve in _curves(obj):
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


def build_walk(scene, *, body_file: str = "", seeds: tuple[int, ...] = SEEDS, frames: int = FRAMES,
               size: tuple[int, int] = SIZE) -> list:
    """The walk scene in `scene`: one person per seed (at most two; the demo has two) walking along +X, and a
    camera that follows and swings. Returns the armatures, in the order of the seeds."""
    import bpy

    from neural.body import BodyModel

    from addon import rig
    from addon.frames import body_path

    if not 1 <= len(seeds) <= len(WALKERS):
        raise ValueError(f"the walk has places for 1 to {len(WALKERS)} people; got {len(seeds)} seeds")
    _setup(scene, frames=frames, size=size)
    body = BodyModel.load(body_path(body_file))
    end = frames + 1  # the position one frame past the last, so the last frame is not the end point
    travel = WALK_SPEED * frames / FPS
    walkers = []
    for index, (seed, place, offset) in enumerate(zip(seeds, WALKERS, WALK_PHASES)):
        arm = _add_human(scene, body, name=f"Walker {index + 1}", body_file=body_file, seed=seed, location=place)
        arm.rotation_euler = (math.pi / 2, 0.0, math.pi / 2)  # body +Z (its front) → world +X
        start = tuple(arm.location)
        _linear(arm, "location", start, (start[0] + travel, start[1], start[2]), 1, end)
        info = rig.read_rig(arm)
        for frame in range(1, frames + 1):
            pose, transl = walk_pose(frame + offset)
            rig.set_pose(arm, info, pose, transl)
            for name in info.bones:
                arm.keyframe_insert(f'pose.bones["{name}"].rotation_quaternion', frame=frame)
            arm.keyframe_insert(f'pose.bones["{info.bones[0]}"].location', frame=frame)
        walkers.append(arm)
    dolly = bpy.data.objects.new("Dolly", None)
    scene.collection.objects.link(dolly)
    centre = np.mean(WALKERS[: len(seeds)], axis=0)
    _linear(dolly, "location", (centre[0], centre[1], 0.9), (centre[0] + travel, centre[1], 0.9), 1, end)
    _linear(dolly, "rotation_euler", (0.0, 0.0, math.radians(DOLLY_YAW[0])),
            (0.0, 0.0, math.radians(DOLLY_YAW[1])), 1, end)
    _add_camera(scene, dolly, WALK_DISTANCE)
    return walkers


def build_turntable(scene, *, body_file: str = "", seed: int = SEEDS[0], frames: int = FRAMES,
                    size: tuple[int, int] = SIZE):
    """The turntable scene in `scene`: one person standing, a camera circling once (a seamless loop).
    Returns the armature."""
    import bpy

    from neural.body import BodyModel

    from addon import rig
    from addon.frames import body_path

    _setup(scene, frames=frames, size=size)
    arm = _add_human(scene, BodyModel.load(body_path(body_file)), name="Model", body_file=body_file, seed=seed,
                     location=(0.0, 0.0))
    rig.set_pose(arm, rig.read_rig(arm), stand_pose(), np.zeros(3))
    table = bpy.data.objects.new("Turntable", None)
    scene.collection.objects.link(table)
    table.location = (0.0, 0.0, 0.9)
    _linear(table, "rotation_euler", (0.0, 0.0, 0.0), (0.0, 0.0, 2 * math.pi), 1, frames + 1)
    _add_camera(scene, table, TURNTABLE_DISTANCE)
    return arm


@dataclass(frozen=True)
class Sequence:
    """A rendered sequence: RGBA PNGs (Combined, straight alpha, sRGB) and greyscale Body Part PNGs, per frame."""

    folder: Path
    frames: tuple[Path, ...]
    parts: tuple[Path, ...]


def _oiio():
    """The OpenImageIO module that ships inside bpy (Blender 4.5+; Pillow is not bundled with Blender)."""
    import sys

    import bpy

    site = bpy.utils.system_resource("PYTHON") + "/lib/python3.11/site-packages"
    if site not in sys.path:
        sys.path.append(site)
    import OpenImageIO as oiio

    return oiio


def write_labels(path: Path, labels: np.ndarray) -> None:
    """A (H, W) uint8 label image as an 8-bit grey PNG, with bpy's OpenImageIO."""
    oiio = _oiio()
    out = oiio.ImageOutput.create(str(path))
    if out is None or not out.open(str(path), oiio.ImageSpec(labels.shape[1], labels.shape[0], 1, "uint8")):
        raise OSError(f"cannot write {path}: {oiio.geterror()}")
    out.write_image(np.ascontiguousarray(labels[..., None]))
    out.close()


def set_format(settings, file_format: str, color_depth: str) -> None:
    """Output format of image_settings; Blender 5.0 first chooses the media type (4.x has no such field)."""
    if hasattr(settings, "media_type"):
        settings.media_type = "MULTI_LAYER_IMAGE" if file_format == "OPEN_EXR_MULTILAYER" else "IMAGE"
    settings.file_format, settings.color_depth = file_format, color_depth


def read_exr(path: Path) -> dict[str, np.ndarray]:
    """All passes of a multilayer EXR as {"Combined": (H, W, 4), "Body Part": (H, W, 1), ...}, row 0 = top,
    read with the OpenImageIO that ships inside bpy."""
    oiio = _oiio()
    image = oiio.ImageInput.open(str(path))
    if image is None:
        raise OSError(f"cannot read {path}: {oiio.geterror()}")
    passes, index = {}, 0
    while image.seek_subimage(index, 0):
        spec = image.spec()
        pixels = image.read_image(index, 0, 0, spec.nchannels, "float")
        for c, channel in enumerate(spec.channelnames):
            name = channel.split(".")[-2]
            passes.setdefault(name, []).append(pixels[..., c])
        index += 1
    image.close()
    return {k: np.stack(v, -1) for k, v in passes.items()}


def render_sequence(scene, folder: Path) -> Sequence:
    """Render the scene's frames (start to end by frame_step) through the engine into folder/frame_####.png and
    folder/parts/part_####.png. RuntimeError naming the frame when the engine reported a problem (a frame without
    its people is no demo)."""
    import bpy

    from addon import engine, passes

    folder = Path(folder)
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    scratch = folder / ".passes"
    scratch.mkdir(exist_ok=True)
    settings = scene.render.image_settings
    frames, parts = [], []
    try:
        for frame in range(scene.frame_start, scene.frame_end + 1, scene.frame_step):
            scene.frame_set(frame)
            engine.render_still()
            if engine.LAST_REPORTS:
                raise RuntimeError(f"frame {frame} of {folder.name}: " + "; ".join(dict.fromkeys(engine.LAST_REPORTS)))
            result = bpy.data.images["Render Result"]  # saved with the settings of the scene that rendered it
            set_format(settings, "PNG", "8")
            settings.color_mode = "RGBA"
            frames.append(folder / f"frame_{frame:04d}.png")
            result.save_render(str(frames[-1]), scene=scene)
            set_format(settings, "OPEN_EXR_MULTILAYER", "16")
            exr = scratch / f"{frame:04d}.exr"
            result.save_render(str(exr), scene=scene)
            labels = np.rint(read_exr(exr)[passes.PART_PASS][..., 0]).astype(np.uint8)
            parts.append(folder / "parts" / f"part_{frame:04d}.png")
            write_labels(parts[-1], labels)
            exr.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        set_format(settings, "PNG", "8")
    return Sequence(folder=folder, frames=tuple(frames), parts=tuple(parts))


@dataclass(frozen=True)
class DemoOutputs:
    """What the demo wrote: the two sequences, the contact sheet and the GIFs (walk, turntable)."""

    walk: Sequence
    turntable: Sequence
    contact_sheet: Path
    gifs: tuple[Path, ...]


def run_demo(out: Path, *, model: Path | None = None, body_file: str = "", size: tuple[int, int] = SIZE,
             frames: int = FRAMES, seeds: tuple[int, int] = SEEDS, device: str = "auto",
             log: Callable[[str], None] | None = None) -> DemoOutputs:
    """Build and render both scenes into out/walk and out/turntable, then out/contact_sheet.png, out/walk.gif and
    out/turntable.gif. model: a generator checkpoint (default: the default model); log: progress lines."""
    import bpy

    import addon
    from neural.renderer import default_model_path

    from . import demo_sheet

    model = Path(model) if model is not None else default_model_path()
    if not model.is_file():
        hint = " (the default model is not in this checkout)" if model == default_model_path() else ""
        raise FileNotFoundError(f"model file {model} does not exist{hint}; pass a generator checkpoint with "
                                "--model PATH, e.g. a generator-<step>.safetensors of a `python -m training train` run")
    if len(seeds) != 2 or seeds[0] == seeds[1]:
        raise ValueError(f"the walk needs two different appearance seeds, got {seeds}")
    if not hasattr(bpy.types.Scene, "humangan"):
        addon.register()
    out = Path(out)
    sequences = {}
    for name, build in (("walk", lambda s: build_walk(s, body_file=body_file, seeds=seeds, frames=frames, size=size)),
                        ("turntable", lambda s: build_turntable(s, body_file=body_file, seed=seeds[0],
                                                                frames=frames, size=size))):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        build(scene)
        scene.humangan.model_file = str(model.resolve())
        scene.humangan.device = device.upper()
        if log is not None:
            log(f"rendering {name}: {frames} frames at {size[0]}×{size[1]} with {model}")
        sequences[name] = render_sequence(scene, out / name)
    walk, turntable = sequences["walk"], sequences["turntable"]
    every = demo_sheet.pick(len(walk.frames))
    rows = [(f"walk: seeds {seeds[0]} and {seeds[1]}", [demo_sheet.on_background(walk.frames[i]) for i in every]),
            ("walk: Body Part pass", [demo_sheet.part_colours(walk.parts[i]) for i in every]),
            (f"turntable: seed {seeds[0]}", [demo_sheet.on_background(turntable.frames[i]) for i in every])]
    sheet = demo_sheet.contact_sheet(rows, out / "contact_sheet.png")
    gifs = tuple(demo_sheet.write_gif([demo_sheet.on_background(p) for p in s.frames], out / f"{name}.gif", FPS)
                 for name, s in sequences.items())
    return DemoOutputs(walk=walk, turntable=turntable, contact_sheet=sheet, gifs=gifs)

"""The HumanGAN render engine (docs/overview.md §Data flow): F12 stills, Ctrl+F12 animations through Blender's own
output settings, and the progressive viewport preview (preview.py).

Passes, in Blender's layout:
- Combined: scene-linear Rec.709 RGB, premultiplied alpha, row 0 at the bottom. The generator's colours are
  sRGB-encoded (as the photos it learnt from); they are decoded to linear here, so with the view transform
  "Standard" a saved PNG holds exactly the generator's colours. Blender's default "AgX" tone-maps them.
- Depth (View Layer > Passes > Z): camera z in metres (distance along the view axis), 1e10 where there is no body
  (Cycles' background value).
- Body Part: SMPL joint index + 1 of the body part seen (1 = pelvis … 24 = right hand), 0 = background; a
  vertex belongs to its dominant skinning joint.

Errors never stop Blender: a character that cannot be read, a model or body file that is missing or does not
match are reported (Info bar, and LAST_REPORTS for the panel) naming the character, the file and the setting to
change; the other characters render. LAST_FAILURES keeps the reports that mean the frame is not what was asked
(a character missing from it): `python -m addon render` writes no file for such a frame and exits 1. Esc
(test_break) and, in headless renders, SIGINT / SIGTERM (signals.py) are checked before every tile.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import bpy
import numpy as np

from . import preview, signals
from .scene import SceneError, SceneFrame, read_frame, render_size
from .ui import ENGINE_ID

if TYPE_CHECKING:  # torch is imported on the first render, not when Blender starts
    from neural.renderer import FrameRequest, FrameResult

BACKGROUND_DEPTH = 1e10
PART_PASS = "Body Part"
LAST_REPORTS: list[str] = []  # the latest render's problems, shown in the render panel
LAST_FAILURES: list[str] = []  # those of them that left a character out of the frame
# Where a user changes the model: the command line (python -m addon render) puts its flag here.
SETTINGS = {"model": "Render Properties > HumanGAN > Model",
            "body": "the character's Object Data Properties > HumanGAN Character > Body File"}
_RENDERERS: dict[tuple, object] = {}
_LOCK = threading.Lock()
_BODIES: dict[tuple, object] = {}

Report = Callable[[str], None]


def _stamp(path: Path | None) -> tuple:
    return (str(path), os.path.getmtime(path)) if path is not None and path.is_file() else (str(path), None)


def resolve_path(text: str, setting: str) -> Path:
    """A file setting as an absolute path: Blender's "//" (relative to the .blend) resolved with bpy.path.abspath;
    ValueError when the .blend is not saved, so "//" has nothing to be relative to."""
    if text.startswith("//") and not bpy.data.filepath:
        raise ValueError(f"{setting} is {text}, relative to the .blend file, but this file is not saved yet: save "
                         "it next to the file, or choose the file again with an absolute path")
    return Path(bpy.path.abspath(text)).resolve()


def model_path(scene: bpy.types.Scene) -> Path | None:
    """The scene's model file, or None for the default model."""
    name = scene.humangan.model_file
    return resolve_path(name, SETTINGS["model"]) if name else None


def check_model(model: Path | None, body: Path) -> None:
    """The model file exists, is a checkpoint and fits the body; errors name the setting to change (the
    Renderer's own messages speak of its command-line flags)."""
    from neural import checkpoint
    from neural.body import BodyModel
    from neural.renderer import default_model_path

    path = model or default_model_path()
    fix = f"set {SETTINGS['model']} to a generator checkpoint (.safetensors)"
    if not path.is_file():
        missing = "the default model is not shipped yet" if model is None else f"model file {path} does not exist"
        raise FileNotFoundError(f"{missing}; {fix}")
    try:
        expected = checkpoint.read_metadata(path).body_fingerprint
    except checkpoint.CheckpointError as error:
        raise ValueError(f"{error}; {fix}") from error
    found = BodyModel.load(body).fingerprint
    if expected != found:
        raise ValueError(f"model {path} was trained on the body with fingerprint {expected}, but body file {body} "
                         f"has fingerprint {found}: set {SETTINGS['body']} to the body the model was trained with, or "
                         f"{SETTINGS['model']} to a model made for this body")


def body_path(body_file: str) -> Path:
    """An absolute body file ('' = the free body); scene.py resolves Blender's '//' paths on the main thread."""
    from neural.body import free_body_path

    return Path(body_file) if body_file else free_body_path()


def get_renderer(model: Path | None, body_file: str, device: str):
    """A cached neural.Renderer (reloaded when a file changes); raises what the Renderer raises."""
    from neural.renderer import Renderer

    body = body_path(body_file)
    key = (_stamp(model), _stamp(body), device)
    with _LOCK:  # the viewport's worker thread and F12 may ask at the same time
        if key not in _RENDERERS:
            check_model(model, body)
            if len({k[0] for k in _RENDERERS} | {key[0]}) > 1 or any(k[2] != device for k in _RENDERERS):
                _RENDERERS.clear()  # one model on one device in memory at a time
            _RENDERERS[key] = Renderer(model_path=model, body_path=body, device=device.lower())
        return _RENDERERS[key]


def joint_model(body_file: str):
    """The body file's rest joints as a linear function of the betas (rest.JointModel), cached per file."""
    from neural.body import BodyModel

    from .rest import JointModel

    key = _stamp(body_path(body_file))
    if key not in _BODIES:
        _BODIES[key] = JointModel.of(BodyModel.load(body_path(body_file)))
    return _BODIES[key]


def rest_joints(body_file: str, betas: np.ndarray) -> np.ndarray:
    """The body model's T-pose joints (24, 3) for these betas, body frame: the rig's pose is read relative to
    them, and the model's pelvis is put on the rig's."""
    return joint_model(body_file).joints(betas)


def composite(results: list[FrameResult]) -> FrameResult:
    """Depth-ordered "over" of the frames of several body files (neural.renderer.composite)."""
    from neural.renderer import composite as composite_frames

    return composite_frames(results)


def empty_result(width: int, height: int) -> FrameResult:
    from neural.renderer import empty_result as empty

    return empty(width, height)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB decoding (IEC 61966-2-1), elementwise on [0, 1], float32. Both branches over contiguous memory:
    numpy's masked (`where=`) power is some 30× slower than the plain one."""
    c = np.ascontiguousarray(c, np.float32)
    curve = np.power((c + np.float32(0.055)) * np.float32(1 / 1.055), np.float32(2.4))
    return np.where(c > np.float32(0.04045), curve, c * np.float32(1 / 12.92))


def world_colour(scene: bpy.types.Scene) -> np.ndarray:
    """The world's background colour (3,) linear, as Blender's engines show it behind everything: the Background
    node feeding the world output (colour × strength; a linked colour counts as its default), else world.color;
    black without a world."""
    world = scene.world
    if world is None:
        return np.zeros(3, np.float32)
    tree = world.node_tree if getattr(world, "use_nodes", True) else None
    for node in (tree.nodes if tree is not None else ()):
        if node.type == "OUTPUT_WORLD" and node.inputs["Surface"].is_linked:
            source = node.inputs["Surface"].links[0].from_node
            if source.type == "BACKGROUND":
                colour = np.array(source.inputs["Color"].default_value[:3], np.float32)
                return colour * np.float32(source.inputs["Strength"].default_value)
    return np.array(world.color[:3], np.float32)


def to_passes(result: FrameResult, background: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Blender pass buffers (flat float32, row 0 at the bottom) from a FrameResult (row 0 at the top, colours
    already in [0, 1] as the Renderer gives them). background: linear RGB (3,) under the people (Film >
    Transparent off), or None for straight alpha over nothing."""
    rgba = result.rgba[::-1]
    combined = np.zeros(rgba.shape, np.float32)
    alpha = rgba[..., 3]
    seen = alpha > 0  # premultiplied colour is 0 elsewhere: decode only where a person is
    combined[seen, :3] = srgb_to_linear(rgba[seen, :3]) * alpha[seen, None]
    combined[..., 3] = alpha
    if background is not None:  # Film > Transparent off: over the world colour, opaque, as Blender's engines
        combined[..., :3] += (1 - alpha)[..., None] * np.asarray(background, np.float32)[:3]
        combined[..., 3] = 1
    depth = np.where(np.isfinite(result.depth), result.depth, np.float32(BACKGROUND_DEPTH))[::-1]
    parts = result.parts[::-1].astype(np.float32) - 1
    return {"Combined": combined.ravel(), "Depth": np.ascontiguousarray(depth, np.float32).ravel(),
            PART_PASS: np.ascontiguousarray(parts).ravel()}


def render_frame(frame: SceneFrame, *, model: Path | None, device: str, report: Report,
                 should_stop: Callable[[], bool] | None = None,
                 on_progress: Callable[[float], None] | None = None, stride: int = 1,
                 fail: Report | None = None) -> FrameResult | None:
    """Render a SceneFrame, one Renderer per body file; None when cancelled. A character left out is passed to
    fail (default: report) by name, warnings to report. No bpy access: the viewport preview calls this from its
    worker thread."""
    fail = fail or report
    from neural.renderer import RenderCancelled

    groups = frame.requests()
    results = []
    for index, (body_file, names, request) in enumerate(groups):
        def progress(fraction: float, index=index) -> None:
            if on_progress is not None:
                on_progress((index + fraction) / len(groups))

        who = ", ".join(f"'{n}'" for n in names)
        try:
            renderer = get_renderer(model, body_file, device)
        except Exception as error:  # a missing / wrong model or body file must not stop the other characters
            fail(f"HumanGAN: cannot render {who}: {error}")
            continue
        request = fit_betas(request, names, renderer.body.num_betas, report)
        try:
            result = renderer.render(request, should_stop=should_stop, on_progress=progress, stride=stride)
        except RenderCancelled:
            return None
        except Exception as error:
            fail(f"HumanGAN: rendering {who} failed: {type(error).__name__}: {error}")
            continue
        for failure in result.failures:  # characters the renderer had to leave out, each alone
            fail(f"HumanGAN: character '{failure.name}' skipped: {failure.reason}")
        results.append(result)
    return composite(results) if results else empty_result(frame.width, frame.height)


def fit_betas(request: FrameRequest, names: tuple[str, ...], count: int, report: Report) -> FrameRequest:
    """The characters' betas cut to the body's shape components (the panel always has NUM_BETAS)."""
    characters = []
    for name, c in zip(names, request.characters):
        if np.any(c.betas[count:] != 0):
            report(f"HumanGAN: character '{name}': betas beyond the first {count} are ignored (the body file has "
                   f"{count} shape components)")
        characters.append(replace(c, betas=c.betas[:count]))
    return replace(request, characters=tuple(characters))


class HumanGanEngine(bpy.types.RenderEngine):
    bl_idname = ENGINE_ID
    bl_label = "HumanGAN"
    bl_use_preview = False
    bl_use_shading_nodes_custom = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.preview = None

    def __del__(self):
        try:
            state = getattr(self, "preview", None)
        except ReferenceError:  # Blender freed the engine before Python did
            return
        if state is not None and state.job is not None:
            state.job.stop()

    def update_render_passes(self, scene=None, renderlayer=None):
        self.register_pass(scene, renderlayer, "Combined", 4, "RGBA", "COLOR")
        if renderlayer.use_pass_z:
            self.register_pass(scene, renderlayer, "Depth", 1, "Z", "VALUE")
        self.register_pass(scene, renderlayer, PART_PASS, 1, "X", "VALUE")

    def _report(self, message: str) -> None:
        LAST_REPORTS.append(message)
        self.report({"WARNING"}, message)

    def _fail(self, message: str) -> None:
        LAST_FAILURES.append(message)
        self._report(message)

    def _should_stop(self) -> bool:
        return self.test_break() or signals.caught() is not None

    def render(self, depsgraph):
        scene = depsgraph.scene
        width, height = render_size(scene)
        LAST_REPORTS.clear()
        LAST_FAILURES.clear()
        if bpy.app.background:  # no Esc headless: Ctrl+C and SIGTERM stop the render instead
            signals.watch(exit_process=True)
        result = None
        try:
            frame = read_frame(depsgraph, rest_joints=safe_rest_joints)
            for problem in frame.problems:
                self._fail(problem)
            for warning in frame.warnings:
                self._report(warning)
            self.update_stats("", f"HumanGAN | frame {scene.frame_current} | {len(frame.jobs)} characters")
            result = render_frame(frame, model=model_path(scene), device=scene.humangan.device, report=self._report,
                                  fail=self._fail, should_stop=self._should_stop, on_progress=self.update_progress)
        except SceneError as error:
            self._fail(f"HumanGAN: {error}")
            result = empty_result(width, height)
        except Exception as error:  # never let a bug take Blender down: report and write an empty frame
            self._fail(f"HumanGAN: frame {scene.frame_current} failed: {type(error).__name__}: {error}")
            result = empty_result(width, height)
        self.add_pass(PART_PASS, 1, "X")
        out = self.begin_result(0, 0, width, height, layer=depsgraph.view_layer.name)
        if result is None or signals.caught() is not None:  # Esc or a signal: this frame is not written
            self.end_result(out, cancel=True)
            signals.stop_process_if_caught(scene.frame_current)
            return
        passes = out.layers[0].passes
        background = None if scene.render.film_transparent else world_colour(scene)
        for name, buffer in to_passes(result, background).items():
            target = passes.get(name)
            if target is not None:
                target.rect.foreach_set(buffer)
        self.end_result(out)

    # viewport (Rendered shading): a worker thread refines a reduced-resolution image; see preview.py
    def view_update(self, context, depsgraph):
        preview.view_update(self, context, depsgraph)

    def view_draw(self, context, depsgraph):
        preview.view_draw(self, context, depsgraph)


def safe_rest_joints(body_file: str, betas: np.ndarray) -> np.ndarray:
    try:
        return rest_joints(body_file, betas)
    except Exception as error:  # reported per character by scene.read_characters
        raise ValueError(str(error)) from error


_RENDER_END = (bpy.app.handlers.render_complete, bpy.app.handlers.render_cancel)


def register() -> None:
    bpy.utils.register_class(HumanGanEngine)
    for handlers in _RENDER_END:
        handlers.append(signals.render_ended)


def unregister() -> None:
    preview.stop_all()
    for handlers in _RENDER_END:
        if signals.render_ended in handlers:
            handlers.remove(signals.render_ended)
    bpy.utils.unregister_class(HumanGanEngine)

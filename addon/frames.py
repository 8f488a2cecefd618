"""Rendering a SceneFrame outside the engine class (docs/overview.md §Data flow): the model and body files a scene
names, the cached neural.Renderer per model, body file and device, and the frame rendered one Renderer per body
file. F12 (engine.py), the viewport preview's worker thread (preview.py), Fit Shape to Rig (ui.py) and the command
line (`python -m addon render`) all come here; nothing here touches bpy except path resolution on the main
thread. torch is imported on the first render, not when Blender starts.

Errors never stop Blender: a character that cannot be read, a model or body file that is missing or does not
match are reported through the caller's `report` / `fail`, naming the character, the file and the setting to
change; the other characters render.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import bpy
import numpy as np

from .scene import SceneFrame

if TYPE_CHECKING:  # torch is imported on the first render, not when Blender starts
    from neural.frame import FrameRequest, FrameResult

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
    from .preload import load_body
    from .rest import JointModel

    key = _stamp(body_path(body_file))
    if key not in _BODIES:
        _BODIES[key] = JointModel.of(load_body(body_path(body_file)))
    return _BODIES[key]


def rest_joints(body_file: str, betas: np.ndarray) -> np.ndarray:
    """The body model's T-pose joints (24, 3) for these betas, body frame: the rig's pose is read relative to
    them, and the model's pelvis is put on the rig's."""
    return joint_model(body_file).joints(betas)


def safe_rest_joints(body_file: str, betas: np.ndarray) -> np.ndarray:
    try:
        return rest_joints(body_file, betas)
    except Exception as error:  # reported per character by scene.read_characters
        raise ValueError(str(error)) from error


def render_frame(frame: SceneFrame, *, model: Path | None, device: str, report: Report,
                 should_stop: Callable[[], bool] | None = None,
                 on_progress: Callable[[float], None] | None = None, stride: int = 1,
                 fail: Report | None = None) -> FrameResult | None:
    """Render a SceneFrame, one Renderer per body file; None when cancelled. A character left out is passed to
    fail (default: report) by name, warnings to report. No bpy access: the viewport preview calls this from its
    worker thread."""
    fail = fail or report
    from neural.frame import empty_result
    from neural.renderer import RenderCancelled, composite

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
            (fail if failure.fatal else report)(f"HumanGAN: character '{failure.name}' skipped: {failure.reason}")
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


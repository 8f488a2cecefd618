"""Viewport preview in Rendered shading: a reduced-resolution frame refined progressively on a worker thread.

The backbone is pixel-wise independent (paper §3.3; docs/architecture.md §Backbone), so the renderer's `stride` renders
every stride-th crop pixel exactly and repeats it: each refinement level (stride 4, 2, 1) shows exact pixels of the
final preview, at 1/16, 1/4 and all of the generator's work. The viewport's own view is used (its projection and view
matrices), so the preview follows navigation as well as the camera view. Preview size = region × Preview Scale.

Threading: every bpy read happens on the main thread (view_update / view_draw build the frame); the worker thread
only runs torch; a timer asks the viewport to redraw when a level is ready. Nothing here blocks the UI.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import bpy
import numpy as np

from neural.frame import length_prefixed, request_key

from . import frames
from .passes import to_passes
from .scene import FLIP, SceneError, SceneFrame, intrinsics_from_projection, read_characters

STRIDES = (4, 2, 1)
POLL_SECONDS = 0.1
_JOBS: "weakref.WeakSet[PreviewJob]" = weakref.WeakSet()

if TYPE_CHECKING:
    from neural.frame import FrameResult

RenderLevel = Callable[[int, Callable[[], bool]], "FrameResult | None"]  # (stride, should_stop) → result


class PreviewJob:
    """Renders the levels of one preview frame on a daemon thread; the newest finished level is kept until
    taken. stop() makes the renderer raise at its next tile (RenderCancelled → the render function gives None)."""

    def __init__(self, render: RenderLevel, strides: tuple[int, ...] = STRIDES,
                 reports: list[str] | None = None) -> None:
        self._render, self._strides = render, strides
        self.reports = reports if reports is not None else []  # what the render function reported
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: tuple[int, FrameResult] | None = None
        self.finished: list[int] = []  # strides done, in order
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="HumanGAN preview", daemon=True)
        _JOBS.add(self)

    def start(self) -> PreviewJob:
        self._thread.start()
        return self

    def _run(self) -> None:
        for stride in self._strides:
            try:
                result = self._render(stride, self._stop.is_set)
            except Exception as error:  # shown in the viewport's header, never raised into Blender
                self.error = f"{type(error).__name__}: {error}"
                return
            if result is None or self._stop.is_set():
                return
            with self._lock:
                self._latest = (stride, result)
                self.finished.append(stride)

    def take(self) -> tuple[int, FrameResult] | None:
        """The newest finished level not taken yet, as (stride, result)."""
        with self._lock:
            latest, self._latest = self._latest, None
        return latest

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def stop(self, wait: bool = False) -> None:
        self._stop.set()
        if wait and self._thread.is_alive():
            self._thread.join()


def stop_all() -> None:
    for job in list(_JOBS):
        job.stop(wait=True)


def frame_key(frame: SceneFrame) -> bytes:
    """Bytes that two frames share only when they draw the same (camera, size, each body file's request): the
    renderer's own request_key per body file, length-prefixed with the file's name."""
    return length_prefixed([part for body_file, _, request in frame.requests()
                            for part in (body_file.encode(), request_key(request))])


def viewport_frame(context, depsgraph, scale: float, rest_joints=None) -> SceneFrame:
    """The region's own view as a SceneFrame at `scale` × the region's pixels (main thread)."""
    region, view = context.region, context.region_data
    width, height = max(1, round(region.width * scale)), max(1, round(region.height * scale))
    K = intrinsics_from_projection(view.window_matrix, width, height)
    w2c = FLIP @ np.array(view.view_matrix, dtype=np.float64)
    jobs, problems, warnings = read_characters(depsgraph, K, w2c, width, height, rest_joints)
    return SceneFrame(K=K, world_to_camera=w2c, width=width, height=height, jobs=tuple(jobs),
                      problems=tuple(problems), warnings=tuple(warnings))


@dataclass
class PreviewState:
    """Per-engine preview: the current job, the frame it renders and the texture last drawn."""

    key: bytes = b""
    job: PreviewJob | None = None
    texture: object = None
    stride: int = 0
    message: str = ""


def _start(engine, context, depsgraph) -> None:
    state: PreviewState = engine.preview
    scene = depsgraph.scene
    try:
        frame = viewport_frame(context, depsgraph, scene.humangan.preview_scale, frames.safe_rest_joints)
    except SceneError as error:
        state.message = str(error)
        return
    key = frame_key(frame)
    if key == state.key and state.job is not None:
        return
    if state.job is not None:
        state.job.stop()
    state.key, state.message = key, "; ".join(frame.problems + frame.warnings)
    model, device = frames.model_path(scene), scene.humangan.device
    reports: list[str] = []

    def render(stride: int, should_stop: Callable[[], bool]):
        return frames.render_frame(frame, model=model, device=device, report=reports.append,
                                          should_stop=should_stop, stride=stride)

    state.job = PreviewJob(render, reports=reports).start()
    bpy.app.timers.register(_poller(engine, state.job), first_interval=POLL_SECONDS)


def _poller(engine, job: PreviewJob):
    def poll():
        try:
            engine.tag_redraw()
        except ReferenceError:  # the engine was freed (shading mode changed): stop its work
            job.stop()
            return None
        return POLL_SECONDS if job.running else None
    return poll


def view_update(engine, context, depsgraph) -> None:
    if getattr(engine, "preview", None) is None:
        engine.preview = PreviewState()
    _start(engine, context, depsgraph)


def view_draw(engine, context, depsgraph) -> None:
    if getattr(engine, "preview", None) is None:
        engine.preview = PreviewState()
    state: PreviewState = engine.preview
    _start(engine, context, depsgraph)  # navigation changes the view without a view_update
    if state.job is not None:
        taken = state.job.take()
        if taken is not None:
            state.stride, result = taken
            state.texture = make_texture(result)
        text = state.message or "; ".join(getattr(state.job, "reports", [])) or state.job.error or ""
        level = f"HumanGAN preview 1/{state.stride}" if state.stride > 1 else "HumanGAN preview"
        engine.update_stats("", f"{level} {text}".strip())
    if state.texture is not None:
        draw_texture(engine, depsgraph.scene, state.texture, context.region.width, context.region.height)


def make_texture(result: FrameResult):
    """A GPU texture of the Combined pass (linear, premultiplied, row 0 at the bottom) of a FrameResult."""
    import gpu

    height, width = result.rgba.shape[:2]
    combined = to_passes(result)["Combined"]
    buffer = gpu.types.Buffer("FLOAT", combined.size, combined)
    return gpu.types.GPUTexture((width, height), format="RGBA16F", data=buffer)


def draw_texture(engine, scene, texture, width: int, height: int) -> None:
    """Draw the texture over the region (width × height pixels) through Blender's display transform."""
    import gpu
    from gpu_extras.presets import draw_texture_2d

    gpu.state.blend_set("ALPHA_PREMULT")
    engine.bind_display_space_shader(scene)
    draw_texture_2d(texture, (0, 0), width, height)
    engine.unbind_display_space_shader()
    gpu.state.blend_set("NONE")

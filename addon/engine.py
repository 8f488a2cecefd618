"""The HumanGAN render engine (docs/overview.md §Data flow): F12 stills, Ctrl+F12 animations through Blender's own
output settings, and the progressive viewport preview (preview.py).

The passes and their layout are passes.py's; the frame itself is rendered by frames.py (one neural.Renderer per
body file), which the preview's worker thread shares.

Errors never stop Blender: a character that cannot be read, a model or body file that is missing or does not
match are reported (Info bar, and LAST_REPORTS for the panel) naming the character, the file and the setting to
change; the other characters render and are shown. A report that means the frame is not what was asked (a
character missing from it; LAST_FAILURES) is an error report, which is how Blender's own engines fail a frame:
Blender writes no file for it (F12 > Save, Ctrl+F12, `-f`/`-a` on the command line), an animation stops at it,
and `bpy.ops.render.render` raises RuntimeError naming it in scripts. Warnings (a camera inside a character, betas
beyond the body's) leave the frame as it is. Esc (test_break) and, in headless renders, SIGINT / SIGTERM
(signals.py) are checked before every tile.
"""

from __future__ import annotations

import bpy

from neural.frame import empty_result

from . import preview, signals
from .frames import model_path, render_frame, safe_rest_joints
from .passes import ENGINE_ID, PART_PASS, to_passes, world_colour
from .scene import SceneError, read_frame, render_size

LAST_REPORTS: list[str] = []  # the latest render's problems, shown in the render panel
LAST_FAILURES: list[str] = []  # those of them that left a character out of the frame


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

    def _report(self, message: str, kind: str = "WARNING") -> None:
        LAST_REPORTS.append(message)
        self.report({kind}, message)

    def _fail(self, message: str) -> None:
        LAST_FAILURES.append(message)
        self._report(message, "ERROR")

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


def render_still() -> None:
    """`bpy.ops.render.render()` of the current frame for callers that read LAST_REPORTS / LAST_FAILURES and word
    the failure themselves (the command lines): the RuntimeError Blender raises for the engine's error reports is
    left to them; any other is raised."""
    try:
        bpy.ops.render.render()
    except RuntimeError:
        if not LAST_FAILURES:
            raise


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


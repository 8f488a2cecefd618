"""addon/preload.py: with torch loaded off the main thread after registration, the first Add > HumanGAN Human and
the viewport preview's first view_update block Blender's main thread for a fraction of the seconds a cold one
takes (fresh processes, real bpy; headless bpy has no viewport, so view_update gets a stand-in context that looks
through the scene camera, as tests/test_addon_preview.py does)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIRST_ADD = r"""
import json, sys, time
import bpy
import addon
from addon import preload
t = time.perf_counter()
addon.register()
register = time.perf_counter() - t
if sys.argv[1] == "preload":
    preload.start().join()  # the user looks around for a few seconds before the first click
t = time.perf_counter()
assert bpy.ops.object.humangan_human_add() == {"FINISHED"}
add = time.perf_counter() - t
addon.unregister()
print("RESULT " + json.dumps({"register": register, "add": add}))
"""


FIRST_VIEW = r"""
import json, math, sys, time
from types import SimpleNamespace
import bpy
import addon
from addon import preload, preview
addon.register()
if sys.argv[1] == "make":  # a scene with a character and a camera, saved: what a user opens in a fresh Blender
    scene = bpy.context.scene
    scene.render.engine = "HUMANGAN"
    scene.humangan.device, scene.humangan.preview_scale = "CPU", 0.25
    bpy.ops.object.camera_add(location=(0.0, -3.2, 0.9), rotation=(math.radians(90), 0, 0))
    scene.camera = bpy.context.active_object
    assert bpy.ops.object.humangan_human_add() == {"FINISHED"}
    bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2])
    sys.exit(0)
bpy.ops.wm.open_mainfile(filepath=sys.argv[2])
assert "torch" not in sys.modules
if sys.argv[1] == "preload":
    preload.start().join()  # the user looks around for a few seconds before switching to Rendered shading
scene = bpy.context.scene
depsgraph = bpy.context.evaluated_depsgraph_get()

class Engine:  # what preview.py uses of a RenderEngine
    preview = None
    def tag_redraw(self):
        pass

cam = scene.camera
view = SimpleNamespace(window_matrix=cam.calc_matrix_camera(depsgraph, x=640, y=360),
                       view_matrix=cam.matrix_world.inverted())
context = SimpleNamespace(region=SimpleNamespace(width=640, height=360), region_data=view)
engine = Engine()
t = time.perf_counter()
preview.view_update(engine, context, depsgraph)
blocked = time.perf_counter() - t
job = engine.preview.job
job.wait(300)
assert job.error is None and job.finished == [4, 2, 1], (job.error, job.finished, engine.preview.message)
print("RESULT " + json.dumps({"view_update": blocked}))
"""


def first_add(mode: str, script: str = FIRST_ADD, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, mode, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0]) if mode != "make" else {}


def test_the_first_add_does_not_wait_for_torch():
    cold, warm = first_add("cold"), first_add("preload")
    assert warm["register"] < 0.5 and cold["register"] < 0.5  # registering never imports torch
    assert warm["add"] < 0.5, warm  # the main thread's share once torch was loaded in the background
    assert warm["add"] < cold["add"] / 3, (cold, warm)  # what the user waited before: the torch import


def test_the_first_viewport_preview_does_not_wait_for_torch(tmp_path):
    """view_update builds the frame on the main thread (bpy reads) and leaves torch to the preview's worker."""
    blend = str(tmp_path / "scene.blend")
    first_add("make", FIRST_VIEW, blend)
    cold, warm = first_add("cold", FIRST_VIEW, blend), first_add("preload", FIRST_VIEW, blend)
    assert warm["view_update"] < 0.25, warm
    assert warm["view_update"] < cold["view_update"] / 3, (cold, warm)

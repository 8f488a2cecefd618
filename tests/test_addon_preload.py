"""addon/preload.py: with torch loaded off the main thread after registration, the first Add > HumanGAN Human
blocks Blender's main thread for a fraction of the seconds a cold one takes (fresh processes, real bpy)."""

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


def first_add(mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", FIRST_ADD, mode], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])


def test_the_first_add_does_not_wait_for_torch():
    cold, warm = first_add("cold"), first_add("preload")
    assert warm["register"] < 0.5 and cold["register"] < 0.5  # registering never imports torch
    assert warm["add"] < 0.5, warm  # the main thread's share once torch was loaded in the background
    assert warm["add"] < cold["add"] / 3, (cold, warm)  # what the user waited before: the torch import

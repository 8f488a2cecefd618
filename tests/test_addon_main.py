"""commands/blender.py: `python -m addon render --demo` builds the README scene and renders it through the engine;
`--blend` renders a saved file to the same pixels; a frame that cannot be rendered as asked leaves no file and
exits 1 naming the flag; SIGINT / SIGTERM (real signals to a real process) stop within a frame with 130 / 143,
also in a plain bpy script; a saved .blend with "//" paths renders after moving; the demo's gait is a walk."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from addon_fixtures import blended_body_arrays, registered, write_body, write_tiny_model
from PIL import Image

__all__ = ["registered"]  # a pytest fixture, used by name

from commands.blender import _frames, _size, walk_pose
from neural.body import BodyModel

ROOT = Path(__file__).resolve().parent.parent


def run(*args, cwd=ROOT, code=0):
    env = {**os.environ}
    done = subprocess.run([sys.executable, "-m", "addon", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == code, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("addon_main")
    body = write_body(folder / "body.npz")
    model = write_tiny_model(folder / "tiny.safetensors", body)
    blend = folder / "demo.blend"
    run("render", "--demo", "--out", folder / "demo", "--frames", "1-2", "--size", "160x120", "--model", model,
        "--body", body, "--device", "cpu", "--save-blend", blend)
    return {"body": body, "model": model, "blend": blend, "demo": folder / "demo"}


@pytest.mark.slow
def test_demo_renders_and_the_saved_blend_renders_the_same(demo_files, tmp_path):
    blend = demo_files["blend"]
    frames = sorted(demo_files["demo"].glob("frame_*.png"))
    assert [f.name for f in frames] == ["frame_0001.png", "frame_0002.png"]
    images = [np.asarray(Image.open(f)) for f in frames]
    assert all(im.shape == (120, 160, 4) and (im[..., 3] > 0).sum() > 200 for im in images)
    assert not np.array_equal(images[0], images[1])  # walking and turning
    done = run("render", "--blend", blend, "--out", tmp_path / "again", "--frames", "2-2")
    assert "1 frames in" in done.stdout
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "frame_0002.png")), images[1])


def test_walk_pose_alternates_legs_and_keeps_arms_down():
    body = BodyModel(arrays=blended_body_arrays())
    joints = []
    for frame in (6, 18):  # a quarter and three quarters of the one-second cycle at 24 fps
        pose, transl = walk_pose(frame)
        with torch.no_grad():
            joints.append(body(pose=torch.tensor(pose, dtype=torch.float32)[None],
                               transl=torch.tensor(transl, dtype=torch.float32)[None]).joints[0].numpy())
    first, second = joints
    assert first[7, 2] > first[8, 2] + 0.1 and second[8, 2] > second[7, 2] + 0.1  # left, then right foot ahead
    for j in joints:
        assert j[20, 1] < j[16, 1] - 0.2 and j[21, 1] < j[17, 1] - 0.2  # wrists well below the shoulders


def test_frames_and_size_arguments():
    assert _frames("3-7") == (3, 7) and _frames("5") == (5, 5)
    assert _size("512x256") == (512, 256) and _size("64×32") == (64, 32)
    for parse, bad in ((_frames, "7-3"), (_frames, "a-b"), (_size, "512"), (_size, "0x5")):
        with pytest.raises(Exception, match="--frames|--size"):
            parse(bad)


def test_a_missing_or_corrupt_model_writes_no_frame_and_exits_1(demo_files, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(Path(demo_files["model"]).read_bytes()[:500])
    for model, reason in ((tmp_path / "missing.safetensors", "does not exist"), (corrupt, "truncated")):
        out = tmp_path / model.stem
        done = run("render", "--blend", demo_files["blend"], "--out", out, "--frames", "1-3", "--model", model,
                   code=1)
        assert list(out.iterdir()) == []  # no blank frames for a farm manager to take as done
        assert "0 frames in" in done.stdout and "3 frame(s) not written (1-3)" in done.stderr
        assert model.name in done.stderr and reason in done.stderr and "--model PATH" in done.stderr
        assert "Renderer(model_path" not in done.stderr


def _interrupted(command: list[str], out: Path, signum: int, wait_for: int = 2) -> tuple[int, list[Path], float]:
    """Start a render, send it `signum` once `wait_for` frames are on disk; (exit code, frames, seconds to stop)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # a script's own folder comes first on sys.path: this checkout
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(list(out.glob("frame_*.png"))) < wait_for:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no frames written"
        time.sleep(0.05)
    sent = time.monotonic()
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, sorted(out.glob("frame_*.png")), time.monotonic() - sent


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_command_within_a_frame_and_keeps_the_written_frames(demo_files, tmp_path, signum, code):
    out = tmp_path / "frames"
    command = [sys.executable, "-m", "addon", "render", "--blend", str(demo_files["blend"]), "--out", str(out),
               "--frames", "1-400", "--size", "320x240"]
    returncode, frames, seconds = _interrupted(command, out, signum)
    assert returncode == code and 2 <= len(frames) < 400 and seconds < 30
    assert [f.name for f in frames] == [f"frame_{k:04d}.png" for k in range(1, len(frames) + 1)]
    assert all(np.asarray(Image.open(f)).shape == (240, 320, 4) for f in frames)  # every file whole
    assert sorted(p.name for p in out.iterdir()) == [f.name for f in frames]  # no temporary file left


SCRIPT = """
import sys, bpy, addon
addon.register()
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 400
scene.render.filepath = sys.argv[2] + "/frame_"
bpy.ops.render.render(animation=True)
print("the script went on")
"""


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_plain_bpy_animation_script(demo_files, tmp_path, signum, code):
    """A blender -b style script: Blender would swallow the KeyboardInterrupt and render on; the engine stops."""
    out = tmp_path / "frames"
    script = tmp_path / "farm.py"
    script.write_text(SCRIPT)
    returncode, frames, seconds = _interrupted([sys.executable, str(script), str(demo_files["blend"]), str(out)],
                                               out, signum)
    assert returncode == code and 2 <= len(frames) < 400 and seconds < 30
    assert all(np.asarray(Image.open(f)).shape == (120, 160, 4) for f in frames)


def test_a_saved_blend_with_relative_paths_renders_after_moving_with_its_model(registered, demo_files, tmp_path):
    """Model and body chosen as "//" paths (Blender's relative paths), the folder moved: the frame renders."""
    import bpy

    first = tmp_path / "project"
    first.mkdir()
    shutil.copy(demo_files["model"], first / "model.safetensors")
    shutil.copy(demo_files["body"], first / "body.npz")
    bpy.ops.wm.open_mainfile(filepath=str(demo_files["blend"]))
    bpy.ops.wm.save_as_mainfile(filepath=str(first / "scene.blend"))
    bpy.context.scene.humangan.model_file = "//model.safetensors"
    for obj in bpy.data.objects:
        if obj.type == "ARMATURE":
            obj.humangan.body_file = "//body.npz"
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    moved = tmp_path / "elsewhere" / "project"
    moved.parent.mkdir()
    first.rename(moved)
    done = run("render", "--blend", moved / "scene.blend", "--out", tmp_path / "out", "--frames", "2-2")
    assert "1 frames in" in done.stdout
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "frame_0002.png")),
                                  np.asarray(Image.open(demo_files["demo"] / "frame_0002.png")))

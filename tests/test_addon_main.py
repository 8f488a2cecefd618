"""addon/__main__.py: `python -m addon render --demo` builds the README scene and renders it through Blender's
animation render; `--blend` renders a saved file to the same pixels; the demo's gait is a plausible walk."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from addon_fixtures import blended_body_arrays, write_body, write_tiny_model
from PIL import Image

from addon.__main__ import _frames, _size, walk_pose
from neural.body import BodyModel

ROOT = Path(__file__).resolve().parent.parent


def run(*args, cwd=ROOT):
    env = {**os.environ}
    done = subprocess.run([sys.executable, "-m", "addon", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_demo_renders_and_the_saved_blend_renders_the_same(tmp_path):
    body = write_body(tmp_path / "body.npz")
    model = write_tiny_model(tmp_path / "tiny.safetensors", body)
    blend = tmp_path / "demo.blend"
    run("render", "--demo", "--out", tmp_path / "demo", "--frames", "1-2", "--size", "160x120", "--model", model,
        "--body", body, "--device", "cpu", "--save-blend", blend)
    frames = sorted((tmp_path / "demo").glob("frame_*.png"))
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

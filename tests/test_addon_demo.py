"""commands/addon_demo.py and demo_sheet.py: `python -m addon demo` writes the walk and turntable sequences (colour and Body
Part PNGs), the contact sheet and the GIFs and prints where; in the demo's frames each appearance seed keeps its
clothing colours, part by part, across poses and camera views, while the two seeds differ.

The colour test needs a trained generator: the default model (neural/assets/default_model.safetensors). Random
weights paint a person in one colour, so they cannot show that a part keeps its colour; the command test uses a
tiny random-weight checkpoint of the free body instead."""

import os
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
import torch
from addon_fixtures import blank, registered, write_body, write_tiny_model
from bpy_extras.object_utils import world_to_camera_view
from PIL import Image

from commands import addon_demo as demo
from neural import checkpoint
from neural.body import BodyModel, free_body_path
from neural.config import preset
from neural.generator import Generator
from neural.renderer import default_model_path

__all__ = ["blank", "registered"]

ROOT = Path(__file__).resolve().parent.parent
# Body Part pass values (SMPL joint index + 1) grouped into regions large enough for a median at 200×150
REGIONS = {"torso": (1, 4, 7, 10), "thighs": (2, 3), "shins": (5, 6), "upper arms": (17, 18), "head": (16,)}
MIN_PIXELS = 15
SAME_SEED = 0.2    # max |torso median − its median over the demo| per channel, colours in [0, 1]
OTHER_SEED = 0.2   # min distance (max over channels) between the two seeds' torso colours
MODEL = default_model_path()


def tiny_free_body_model(path: Path) -> Path:
    torch.manual_seed(0)
    generator = Generator(preset("tiny")).eval()
    return checkpoint.save(path, generator, body_fingerprint=BodyModel.load(free_body_path()).fingerprint)


def run_demo_command(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "addon", "demo", *map(str, args)], cwd=ROOT, env={**os.environ},
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_demo_command_writes_sequences_sheet_and_gifs_and_prints_their_paths(tmp_path):
    model = tiny_free_body_model(tmp_path / "tiny.safetensors")
    out = tmp_path / "demo_out"
    done = run_demo_command("--out", out, "--model", model, "--frames", 3, "--size", "160x120", "--seeds", "3,4",
                            "--threads", 1)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("walk", "turntable"):
        assert f"{name}: 3 frames {out / name}/frame_####.png, body parts {out / name}/parts/part_####.png" \
            in done.stdout
        frames = sorted((out / name).glob("frame_*.png"))
        parts = sorted((out / name / "parts").glob("part_*.png"))
        assert [f.name for f in frames] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
        assert [f.name for f in parts] == ["part_0001.png", "part_0002.png", "part_0003.png"]
        assert not (out / name / ".passes").exists()
        rgba = [np.asarray(Image.open(f)) for f in frames]
        labels = [np.asarray(Image.open(f)) for f in parts]
        for colour, part in zip(rgba, labels):
            assert colour.shape == (120, 160, 4) and part.shape == (120, 160) and part.dtype == np.uint8
            body = part > 0
            assert body.sum() > 300 and part.max() <= 24
            assert (colour[body, 3] > 230).mean() > 0.85    # opaque where the pass sees it, but its anti-aliased rim
            assert (colour[..., 3] == 0).mean() > 0.3        # and away from the people, clear
        assert not np.array_equal(rgba[0], rgba[1]) and not np.array_equal(labels[1], labels[2])
    assert f"contact sheet: {out / 'contact_sheet.png'}" in done.stdout
    assert f"GIFs: {out / 'walk.gif'} {out / 'turntable.gif'}" in done.stdout
    assert Image.open(out / "contact_sheet.png").size == (3 * 160, 3 * 120)  # walk, its parts, turntable
    for name in ("walk", "turntable"):
        gif = Image.open(out / f"{name}.gif")
        assert gif.size == (160, 120) and gif.n_frames == 3 and gif.info["duration"] == 40 and gif.info["loop"] == 0


@pytest.mark.slow
def test_demo_command_without_a_usable_model_says_which_file_and_what_to_do(tmp_path):
    done = run_demo_command("--out", tmp_path / "out", "--model", tmp_path / "missing.safetensors")
    assert done.returncode == 1
    assert "missing.safetensors does not exist" in done.stderr and "--model PATH" in done.stderr
    assert not (tmp_path / "out").exists()
    # a model of another body: the engine's report stops the demo at the first frame instead of empty frames
    other = write_tiny_model(tmp_path / "box.safetensors", write_body(tmp_path / "box.npz"))
    done = run_demo_command("--out", tmp_path / "out", "--model", other, "--frames", 2, "--size", "64x48")
    assert done.returncode == 1
    assert "frame 1 of walk" in done.stderr and "fingerprint" in done.stderr and "Walker 1" in done.stderr
    assert not list((tmp_path / "out").rglob("*.png"))


def region_medians(frame: Path, parts: Path, columns: tuple[float, float]) -> dict[str, np.ndarray]:
    """Median sRGB colour (3,) in [0, 1] of each region's opaque pixels between two image columns."""
    rgba = np.asarray(Image.open(frame)).astype(np.float64) / 255
    labels = np.asarray(Image.open(parts))
    x = np.arange(labels.shape[1])[None, :]
    inside = (x >= columns[0]) & (x < columns[1]) & (rgba[..., 3] > 0.9)
    medians = {}
    for name, values in REGIONS.items():
        chosen = np.isin(labels, values) & inside
        if chosen.sum() >= MIN_PIXELS:
            medians[name] = np.median(rgba[chosen, :3], axis=0)
    return medians


def render_and_measure(scene, people, folder: Path) -> dict[int, list[dict[str, np.ndarray]]]:
    """Render every 8th frame of a demo scene; per seed, the region medians of each frame. Two people are told
    apart by Blender's own projection of their pelvises: each owns its side of the midline between them."""
    scene.frame_step = 8
    sequence = demo.render_sequence(scene, folder)
    width = scene.render.resolution_x
    found: dict[int, list] = {}
    for frame, parts in zip(sequence.frames, sequence.parts):
        scene.frame_set(int(frame.stem.split("_")[1]))
        xs = [world_to_camera_view(scene, scene.camera, arm.matrix_world @ arm.pose.bones["pelvis"].head).x * width
              for arm in people]
        middle = np.mean(xs) if len(people) == 2 else None
        for arm, x in zip(people, xs):
            columns = (-np.inf, np.inf) if middle is None else ((-np.inf, middle) if x < middle else (middle, np.inf))
            found.setdefault(arm.humangan.seed, []).append(region_medians(frame, parts, columns))
    return found


# Issue 7's colour gate, run on the shipped model (step 9,000 of cpu-small passes it; the 16×8 model before it
# failed on "the two seeds differ").
@pytest.mark.slow
def test_each_seed_keeps_its_clothing_colours_across_the_demo_and_the_two_seeds_differ(blank, tmp_path):
    torch.set_num_threads(1)
    size, seeds = (200, 150), demo.SEEDS
    scene = blank
    walkers = demo.build_walk(scene, seeds=seeds, size=size)
    scene.humangan.model_file, scene.humangan.device = str(MODEL), "CPU"
    medians = render_and_measure(scene, walkers, tmp_path / "walk")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    model = demo.build_turntable(scene, seed=seeds[0], size=size)
    scene.humangan.model_file, scene.humangan.device = str(MODEL), "CPU"
    medians[seeds[0]] += render_and_measure(scene, [model], tmp_path / "turntable")[seeds[0]]
    assert [len(medians[s]) for s in seeds] == [12, 6]  # walk and turntable, walk: every 8th of 48 frames
    typical = {}
    for seed, frames in medians.items():
        for name in REGIONS:
            seen = [m[name] for m in frames if name in m]
            assert len(seen) >= len(frames) // 2, f"seed {seed}: the {name} is seen in only {len(seen)} frames"
            typical[seed, name] = np.median(seen, axis=0)
        shirt = np.array([m["torso"] for m in frames if "torso" in m])
        worst = np.abs(shirt - typical[seed, "torso"]).max()
        assert worst <= SAME_SEED, f"seed {seed}: the torso colour strays by {worst:.3f} across the demo"
    for seed, other in (seeds, seeds[::-1]):  # every frame looks like its own seed, part by part
        for k, frame in enumerate(medians[seed]):
            own = np.mean([np.abs(frame[n] - typical[seed, n]).mean() for n in frame])
            alien = np.mean([np.abs(frame[n] - typical[other, n]).mean() for n in frame])
            assert own < alien, f"seed {seed}, frame {k}: colours {own:.3f} from its own, {alien:.3f} from seed {other}"
    distance = np.abs(typical[seeds[0], "torso"] - typical[seeds[1], "torso"]).max()
    assert distance >= OTHER_SEED, f"the two seeds' torsos differ by only {distance:.3f}"

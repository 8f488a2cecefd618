"""training/loop.py: a tiny run writes every file of a run folder, survives SIGKILL, resumes, and learns."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from neural.body import BodyModel
from neural.camera import Camera
from neural.checkpoint import load as load_generator
from neural.generator import Generator
from tiny_body import write_box_body
from training import objective, state
from training.config import preset
from training.data import PhotoDataset
from training.loop import train
from training.objective import labels, surface_distance
from training.losses import body_coverage, surface_depth_loss
from training.synth import synth

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    body = write_box_body(root / "box_body.npz")  # 216 vertices: a training step in milliseconds
    synth(out=root / "data", count=8, height=32, width=16, seed=0, body_path=Path(body), progress=False)
    return root / "data"


def _command(data, run, steps):
    return [sys.executable, "-m", "training", "train", "--preset", "tiny", "--data", str(data), "--run", str(run),
            "--steps", str(steps)]


def _stats(run):
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def _check_files(run):
    """Every file of the run folder is complete: JSON parses, safetensors are whole, PNGs decode."""
    json.loads((run / "training_options.json").read_text())
    _stats(run)
    for path in run.glob("*.safetensors"):
        assert state._readable(path), path
    for path in (run / "samples").glob("*.png"):
        Image.open(path).load()
    assert not list(run.glob(".*.tmp"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_step(collection, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(_command(collection, run, 24), cwd=ROOT, env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 40
    while time.time() < deadline and process.poll() is None:
        if (run / "stats.jsonl").exists() and any(r["step"] >= 13 for r in _stats(run)):
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state.latest(run) in (10, 15)
    killed_at = max(r["step"] for r in _stats(run))
    assert killed_at >= 13

    subprocess.run(_command(collection, run, 24), cwd=ROOT, env=env, check=True, capture_output=True)
    _check_files(run)
    steps = [r["step"] for r in _stats(run)]
    assert steps == list(range(1, 25))  # the killed tail was dropped and redone, nothing twice
    assert state.complete_steps(run) == [10, 20, 24]  # kept multiples of keep_every, and the last
    generator, meta = load_generator(state.generator_path(run, 24))
    assert meta.step == 24 and meta.config == preset("tiny").generator
    assert {p.name for p in (run / "samples").iterdir()} >= {"reals.png", "fakes-0000010.png", "fakes-0000024.png"}


@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(collection, tmp_path):
    from safetensors.torch import load_file

    config = preset("tiny").replace(checkpoint_every=3, sample_every=100)
    train(config.replace(steps=6), data=collection, run=tmp_path / "straight", progress=False)
    train(config.replace(steps=3), data=collection, run=tmp_path / "resumed", progress=False)
    train(config.replace(steps=6), data=collection, run=tmp_path / "resumed", progress=False)
    for kind in ("state", "generator"):
        a = load_file(str(tmp_path / "straight" / f"{kind}-0000006.safetensors"))
        b = load_file(str(tmp_path / "resumed" / f"{kind}-0000006.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_same_command_with_other_options_is_refused(collection, tmp_path):
    train(preset("tiny").replace(steps=2), data=collection, run=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="other options"):
        train(preset("tiny").replace(steps=4, batch=2), data=collection, run=tmp_path / "run", progress=False)
    train(preset("tiny").replace(steps=3), data=collection, run=tmp_path / "run", progress=False)  # more steps: ok
    assert [r["step"] for r in _stats(tmp_path / "run")] == [1, 2, 3]


def test_discriminator_learns_on_a_tiny_collection(collection, tmp_path):
    train(preset("tiny").replace(steps=30, checkpoint_every=30, sample_every=30), data=collection,
          run=tmp_path / "run", progress=False)
    records = _stats(tmp_path / "run")
    d = np.array([r["loss_D"] for r in records])
    g = np.array([r["loss_G"] for r in records])
    assert np.isfinite(d).all() and np.isfinite(g).all()
    assert d[-5:].mean() < d[:5].mean() - 0.1, d  # D learns to segment reals and spot fakes
    assert {r["rotate"] for r in records} == {True, False}  # the phase cycle turns cameras on half the steps


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (float16 AMP path)")
def test_cuda_amp_run_resumes(collection, tmp_path):
    config = preset("tiny").replace(steps=6, checkpoint_every=3, sample_every=6)
    assert config.amp
    train(config, data=collection, run=tmp_path / "run", device="cuda", progress=False)
    train(config.replace(steps=9), data=collection, run=tmp_path / "run", device="cuda", progress=False)
    records = _stats(tmp_path / "run")
    assert [r["step"] for r in records] == list(range(1, 10))
    assert all(np.isfinite(r["loss_D"]) and np.isfinite(r["loss_G"]) for r in records)
    meta = state.load_metadata(state.state_path(tmp_path / "run", 9))
    assert meta["scaler_G"]["scale"] > 0  # the float16 GradScaler was live and saved
    _check_files(tmp_path / "run")


@pytest.mark.slow
def test_silhouette_loss_shapes_the_pose_field(collection, tmp_path):
    """With the silhouette loss on, the pose field's opacity moves toward the body's coverage within a few steps
    (the field lr is raised so that a 30-step run shows it)."""
    config = preset("tiny").replace(steps=30, checkpoint_every=30, sample_every=30, silhouette_lambda=1.0,
                                    field_lr_scale=1.0)
    train(config, data=collection, run=tmp_path / "run", progress=False)
    s = np.array([r["silhouette"] for r in _stats(tmp_path / "run")])
    assert np.isfinite(s).all() and s[-5:].mean() < 0.8 * s[:5].mean(), s


def test_surface_distance_is_the_ray_length_to_the_first_surface():
    """A tilted plane z = 3 + 0.5·x in front of the camera: each pixel's unit ray t·d meets it at
    t = 3 / (d_z − 0.5·d_x); pixels the plane does not cover report no hit."""
    camera = Camera.from_fov(fov_y_deg=40.0, width=8, height=16)
    plane = torch.tensor([[-1.0, -2, 2.5], [1.0, -2, 3.5], [1.0, 2, 3.5], [-1.0, 2, 2.5]])  # x ∈ [−1, 1]
    behind = plane + torch.tensor([0.0, 0.0, 1.0])  # a second, farther plane must not win the depth test
    body = SimpleNamespace(vertices=torch.cat([plane, behind])[None],
                           faces=torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]]))
    distance, hit = surface_distance(body, camera)
    assert distance.shape == hit.shape == (1, 1, 16, 8)
    xy = camera.pixel_grid()
    d = torch.linalg.solve(camera.K[0], torch.cat([xy, torch.ones(len(xy), 1)], 1).T).T
    d = d / d.norm(dim=1, keepdim=True)
    t = 3.0 / (d[:, 2] - 0.5 * d[:, 0])
    inside = ((t * d[:, 0]).abs() < 0.95) & ((t * d[:, 1]).abs() < 1.95)
    assert inside.sum() > 40
    assert torch.allclose(distance.reshape(-1)[inside], t[inside], rtol=1e-4)
    assert hit.reshape(-1)[inside].all()


def test_surface_depth_loss_moves_the_field_to_the_surface(collection):
    """On a fixed batch, the surface-depth loss (with the loop's own target) pulls the pose field's expected ray
    termination onto the body's surface: from ~4 sample spacings away to about one."""
    torch.manual_seed(0)
    gc = preset("tiny").generator.replace(num_samples=8)
    body = BodyModel.load(collection.parent / "box_body.npz")
    dataset = PhotoDataset(collection, height=gc.height, width=gc.width)
    batch = {k: torch.stack([dataset[i][k] for i in range(4)]) for k in ("betas", "pose", "transl", "K",
                                                                         "world_to_camera")}
    posed = body(betas=batch["betas"], pose=batch["pose"], transl=batch["transl"])
    camera = Camera(K=batch["K"], world_to_camera=batch["world_to_camera"], width=gc.width, height=gc.height)
    distance, hit = surface_distance(posed, camera.resized(gc.render_width, gc.render_height))
    covered = hit & (body_coverage(labels(posed, camera), (gc.render_height, gc.render_width)) == 1)
    G = Generator(gc).train()
    optimizer = torch.optim.Adam(G.pose_mapping.parameters(), lr=1e-2, betas=(0.0, 0.9))
    spacing = (gc.ray_end - gc.ray_start) / gc.num_samples
    history = []
    for _ in range(30):
        pose = G.prepare(G.sample_z(0, 4), posed, camera).pose
        loss = surface_depth_loss(pose.depth, pose.opacity, distance, covered, spacing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert covered.sum() >= 3 and history[0] > 3 and np.mean(history[-5:]) < history[0] / 3, history


def test_surface_depth_loss_is_logged_when_on(collection, tmp_path):
    config = preset("tiny").replace(steps=4, checkpoint_every=4, sample_every=4, log_every=2, depth_lambda=1.0)
    train(config, data=collection, run=tmp_path / "on", progress=False)
    assert all(r["surface_depth"] > 0 for r in _stats(tmp_path / "on"))
    train(config.replace(depth_lambda=0.0), data=collection, run=tmp_path / "off", progress=False)
    assert all(r["surface_depth"] == 0 for r in _stats(tmp_path / "off"))


def test_mode_seeking_loss_is_logged_when_on(collection, tmp_path, monkeypatch):
    """The loop's mode-seeking pair is the G step's image and the D step's fake (no gradient, the other z)."""
    seen = []
    original = objective.mode_seeking_loss

    def spy(image, other, z, z_other):
        seen.append((image.detach().clone(), other.clone(), z.clone(), z_other.clone()))
        return original(image, other, z, z_other)

    monkeypatch.setattr(objective, "mode_seeking_loss", spy)
    config = preset("tiny").replace(steps=4, checkpoint_every=4, sample_every=4, log_every=2,
                                    mode_seeking_lambda=0.1)
    train(config, data=collection, run=tmp_path / "on", progress=False)
    assert len(seen) == 4 and all(r["mode_seeking"] > 0 for r in _stats(tmp_path / "on"))
    for image, other, z, z_other in seen:
        assert not other.requires_grad and not torch.equal(z, z_other)
        assert image.shape == other.shape and image.shape[0] == z.shape[0]
    train(config.replace(mode_seeking_lambda=0.0), data=collection, run=tmp_path / "off", progress=False)
    assert len(seen) == 4 and all(r["mode_seeking"] == 0 for r in _stats(tmp_path / "off"))
    train(config.replace(mode_seeking_start=2), data=collection, run=tmp_path / "late", progress=False)
    assert len(seen) == 6 and [r["mode_seeking"] > 0 for r in _stats(tmp_path / "late")] == [False, True]

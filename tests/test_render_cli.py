"""commands/render.py (`python -m neural render`): PNGs written for every frame × yaw, AMASS Z-up motion converted
exactly to the body's Y-up frame, and errors that name the file and key."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation
from tiny_body import write_tiny_model

from neural.__main__ import main
from neural.body import BodyModel
from neural.config import preset
from commands.render import Z_UP_TO_Y_UP, load_motion


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("render_cli")
    model_path, body_path = write_tiny_model(folder)
    return {"model": str(model_path), "body": body_path}


def amass_file(path, T=3, width=156, seed=0):
    rng = np.random.default_rng(seed)
    poses = rng.normal(0, 0.3, (T, width))
    poses[:, :3] = Rotation.from_euler("x", 90, degrees=True).as_rotvec()  # AMASS: standing up in a Z-up world
    np.savez(path, poses=poses, betas=rng.normal(0, 1, 16), trans=rng.normal(0, 0.5, (T, 3)), gender="neutral")
    return path


def test_render_writes_a_png_per_frame_and_yaw(files, tmp_path, capsys):
    pose = amass_file(tmp_path / "walk.npz", T=3)
    out = tmp_path / "out"
    code = main(["render", "--model", files["model"], "--body", files["body"], "--pose", str(pose), "--frames", "1:3",
                 "--yaw=-30,0,30", "--seed", "7", "--size", "40x30", "--device", "cpu", "--out", str(out)])
    assert code == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == sorted(f"frame_{t:05d}_yaw{y}.png" for t in (1, 2) for y in ("-30", "+0", "+30"))
    image = np.asarray(Image.open(out / "frame_00001_yaw+0.png"))
    assert image.shape == (30, 40, 4) and image[..., 3].max() == 255 and image[..., 3].min() == 0
    assert str(out) in capsys.readouterr().out


def test_t_pose_by_default_at_the_model_size(files, tmp_path):
    assert main(["render", "--model", files["model"], "--body", files["body"], "--device", "cpu",
                 "--out", str(tmp_path)]) == 0
    image = Image.open(tmp_path / "frame_00000_yaw+0.png")
    assert image.size == (preset("tiny").width, preset("tiny").height) and image.mode == "RGBA"


@pytest.mark.parametrize("width", [72, 156, 165])
def test_z_up_motion_moves_every_vertex_by_the_axis_change(files, tmp_path, width):
    body = BodyModel.load(files["body"])
    path = amass_file(tmp_path / "m.npz", T=4, width=width)
    raw = load_motion(path, body, z_up=False)
    converted = load_motion(path, body)
    assert converted.poses.shape == (4, 24, 3) and converted.betas.shape == (body.num_betas,)
    if width != 72:
        assert (raw.poses[:, 22:] == 0).all()  # SMPL-H/X hands are not SMPL's hand joints
    np.testing.assert_array_equal(converted.poses[:, 1:], raw.poses[:, 1:])
    with torch.no_grad():
        pose = lambda m: body(betas=torch.tensor(m.betas[None]), pose=torch.tensor(m.poses),  # noqa: E731
                              transl=torch.tensor(m.transl)).vertices.double().numpy()
    np.testing.assert_allclose(pose(converted), pose(raw) @ Z_UP_TO_Y_UP.T, atol=2e-5)
    # standing up in Z-up becomes standing up in Y-up: the head is above the pelvis along +Y
    joints = body(pose=torch.tensor(converted.poses[:1]).float()).joints[0]
    assert joints[15, 1] - joints[0, 1] > 0.4


def test_errors_name_the_file_and_key(files, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, pose=np.zeros((2, 72)))
    assert main(["render", "--model", files["model"], "--body", files["body"], "--pose", str(bad), "--device", "cpu",
                 "--out", str(tmp_path / "o")]) == 1
    assert "bad.npz lacks ['poses']" in capsys.readouterr().err
    np.savez(bad, poses=np.zeros((2, 72)), trans=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="bad.npz: 'trans' has shape \\(3, 3\\); expected \\(2, 3\\)"):
        load_motion(bad, BodyModel.load(files["body"]))
    assert main(["render", "--model", str(tmp_path / "none.safetensors"), "--body", files["body"],
                 "--out", str(tmp_path / "o")]) == 1
    assert "none.safetensors does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["render", "--size", "256by512", "--out", str(tmp_path)])


def test_a_corrupt_model_writes_nothing_and_exits_1(files, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(Path(files["model"]).read_bytes()[:300])
    out = tmp_path / "o"
    assert main(["render", "--model", str(corrupt), "--body", files["body"], "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "python -m neural render: error:" in err and "corrupt.safetensors" in err and "truncated" in err
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_stops_within_an_image_and_keeps_the_written_ones(files, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "o"
    yaws = ",".join(str(y) for y in range(-60, 60))  # 120 images: far more than the time to the signal
    process = subprocess.Popen([sys.executable, "-m", "neural", "render", "--model", files["model"], "--body",
                                str(files["body"]), "--device", "cpu", "--size", "128x256", f"--yaw={yaws}",
                                "--out", str(out)], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip().endswith(".png")  # the first image is written
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and time.monotonic() - sent < 20, stderr
    assert "interrupted (Ctrl+C); files already written are complete" in stderr
    images = sorted(out.iterdir())
    assert 1 <= len(images) < 120 and all(p.suffix == ".png" for p in images)  # no temporary file left
    assert all(Image.open(p).size == (128, 256) for p in images)

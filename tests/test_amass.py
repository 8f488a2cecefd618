"""neural/amass.py: SMPL (T, 72), SMPL-H (T, 156) and SMPL-X (T, 165) files read as SMPL's 24 joints, optional
trans / betas / frame rate, and every bad file refused with a message naming the file and the key; no pickle is
ever run and importing the reader does not import torch (the add-on registers without it)."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neural.amass import AmassMotion, read_amass

ROOT = Path(__file__).resolve().parent.parent


def write(path, **arrays):
    np.savez(path, **arrays)
    return path


def poses(T=5, width=156, seed=0):
    return np.random.default_rng(seed).normal(0, 0.4, (T, width))


@pytest.mark.parametrize("width, joints", [(72, 24), (156, 52), (165, 55)])
def test_layouts_give_smpl_joints(tmp_path, width, joints):
    raw = poses(T=4, width=width)
    trans = np.random.default_rng(1).normal(size=(4, 3))
    motion = read_amass(write(tmp_path / "m.npz", poses=raw.astype(np.float32), trans=trans, betas=np.arange(16.0),
                              mocap_framerate=np.array(120.0), gender=np.array("neutral")))
    assert isinstance(motion, AmassMotion) and motion.path == tmp_path / "m.npz" and motion.joints == joints
    assert motion.poses.shape == (4, 24, 3) and motion.poses.dtype == np.float64
    kept = 24 if width == 72 else 22  # SMPL-H/X joints 22.. are fingers: SMPL's hands stay at rest
    np.testing.assert_array_equal(motion.poses[:, :kept], raw.astype(np.float32).reshape(4, -1, 3)[:, :kept])
    assert (motion.poses[:, kept:] == 0).all()
    np.testing.assert_array_equal(motion.trans, trans)
    np.testing.assert_array_equal(motion.betas, np.arange(16.0))
    assert motion.fps == 120.0 and motion.has_trans
    with pytest.raises(dataclasses.FrozenInstanceError):
        motion.fps = 30.0


def test_trans_betas_and_rate_are_optional(tmp_path):
    motion = read_amass(str(write(tmp_path / "bare.npz", poses=poses(T=3, width=66))))
    assert motion.poses.shape == (3, 24, 3) and motion.joints == 22
    assert (motion.trans == 0).all() and motion.trans.shape == (3, 3) and not motion.has_trans
    assert motion.betas.shape == (0,) and motion.fps is None
    other = read_amass(write(tmp_path / "x.npz", poses=poses(T=2), betas=np.ones((1, 10)), mocap_frame_rate=30))
    assert other.betas.shape == (10,) and other.fps == 30.0  # SMPL-X releases spell the rate mocap_frame_rate


def message(path, **kwargs):
    with pytest.raises(ValueError) as error:
        read_amass(path, **kwargs)
    text = str(error.value)
    assert str(path) in text, text
    return text


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.npz"))):
        read_amass(tmp_path / "none.npz")
    (tmp_path / "text.npz").write_text("poses = 1")
    assert "is not a readable .npz without pickles" in message(tmp_path / "text.npz")
    whole = write(tmp_path / "whole.npz", poses=poses()).read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])  # a download cut short
    assert "is not a readable .npz without pickles" in message(tmp_path / "cut.npz")
    np.save(tmp_path / "one.npy", poses())
    assert "single .npy array of shape (5, 156)" in message(tmp_path / "one.npy")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_arrays_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    evil = np.empty(1, dtype=object)
    evil[0] = _Evil(marker)
    path = write(tmp_path / "evil.npz", poses=poses(), betas=evil)
    assert "'betas' cannot be read as a plain array without pickles" in message(path)
    assert not marker.exists()
    assert "'poses' has dtype <U3; expected numbers" in message(write(tmp_path / "s.npz", poses=np.array(["abc"])))


def test_missing_keys_are_listed_with_the_keys_present(tmp_path):
    path = write(tmp_path / "k.npz", pose=poses())
    assert "k.npz lacks ['poses'] (it has ['pose'])" in message(path)
    path = write(tmp_path / "n.npz", poses=poses())
    assert "lacks ['trans']" in message(path, require_trans=True)
    assert "lacks ['mocap_framerate']" in message(path, require_fps=True)
    assert "lacks ['trans', 'mocap_framerate']" in message(path, require_trans=True, require_fps=True)


@pytest.mark.parametrize("shape", [(), (156,), (5, 24, 3), (5, 60), (5, 67), (0, 72), (0, 156)])
def test_bad_pose_shapes_name_the_shape(tmp_path, shape):
    text = message(write(tmp_path / "p.npz", poses=np.zeros(shape)))
    assert f"'poses' has shape {shape}" in text and "(T, 72) SMPL" in text and "T ≥ 1" in text


def test_bad_trans_betas_and_rate(tmp_path):
    path = write(tmp_path / "t.npz", poses=poses(T=5), trans=np.zeros((4, 3)))
    assert "'trans' has shape (4, 3); expected (5, 3)" in message(path)
    path = write(tmp_path / "b.npz", poses=poses(T=5), betas=np.zeros((5, 10)))
    assert "'betas' has shape (5, 10); expected (n,)" in message(path)
    for rate, shown in ((0.0, "0.0"), (np.nan, "nan"), (np.array([30.0, 60.0]), "[30.0, 60.0]")):
        path = write(tmp_path / "r.npz", poses=poses(), mocap_framerate=rate)
        assert f"'mocap_framerate' is {shown}; expected one capture rate in Hz > 0" in message(path)


@pytest.mark.parametrize("key, index", [("poses", (2, 7)), ("trans", (1, 2)), ("betas", (3,))])
def test_nan_and_inf_name_the_key_and_index(tmp_path, key, index):
    arrays = {"poses": poses(T=4), "trans": np.zeros((4, 3)), "betas": np.zeros(10)}
    arrays[key][index] = np.inf if key == "trans" else np.nan
    text = message(write(tmp_path / "f.npz", **arrays))
    assert f"'{key}' holds NaN or inf (first at index {index})" in text


def test_importing_the_reader_does_not_import_torch():
    code = ("import sys; import neural.amass, neural.rotations; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]

"""training/fits.py: safe reading of regressor / AMASS fits, pose and camera normalisation."""

import json
import os
import pickle

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from training.fits import FitError, load_mapping, matrix_to_axis_angle, normalize_fit, read_fits


def test_matrix_to_axis_angle_against_scipy_including_near_pi():
    rng = np.random.default_rng(0)
    vecs = [rng.normal(size=3) for _ in range(20)]
    vecs += [v / np.linalg.norm(v) * a for v, a in zip(vecs[:6], (np.pi - 1e-5, np.pi - 1e-3, 1e-7, 0.0, 3.0, np.pi))]
    R = Rotation.from_rotvec(np.array(vecs)).as_matrix()
    got = matrix_to_axis_angle(R)
    assert np.allclose(Rotation.from_rotvec(got).as_matrix(), R, atol=1e-6)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps({"pose": _Evil(marker)}))
    with pytest.raises(FitError, match="only numpy arrays"):
        load_mapping(path)
    assert not marker.exists()
    # a pickle of plain numpy arrays (what regressors write) loads, also protocol 2
    good = tmp_path / "b.pkl"
    good.write_bytes(pickle.dumps({"pose": np.arange(72.0), "betas": np.zeros(10)}, protocol=2))
    assert np.array_equal(load_mapping(good)["pose"], np.arange(72.0))


def test_read_fits_forms(tmp_path):
    folder = tmp_path / "per_image"
    folder.mkdir()
    np.savez(folder / "a.npz", pose=np.zeros(72), orig_cam=[1, 1, 0, 0])
    (folder / "b.json").write_text(json.dumps({"pose": [0.0] * 72, "orig_cam": [1, 1, 0, 0]}))
    (folder / "c.npz").write_bytes(b"not a zip")
    fits, problems = read_fits(folder)
    assert sorted(fits) == ["a", "b"] and list(problems) == ["c"]
    # one file with a name column (regressor style, rotation matrices) ...
    np.savez(tmp_path / "batch.npz", imgname=np.array(["img/x.jpg", "img/y.jpg"]),
             pred_pose=np.tile(np.eye(3), (2, 24, 1, 1)), orig_cam=np.ones((2, 4)), betas=np.zeros((2, 10)))
    fits, _ = read_fits(tmp_path / "batch.npz")
    assert sorted(fits) == ["x", "y"] and fits["x"]["pred_pose"].shape == (24, 3, 3)
    # ... or a name → fit mapping
    (tmp_path / "map.json").write_text(json.dumps({"p.png": {"pose": [0.0] * 72, "orig_cam": [1, 1, 0, 0]}}))
    assert list(read_fits(tmp_path / "map.json")[0]) == ["p"]


def test_normalize_pose_forms():
    cam = {"orig_cam": [0.5, 1.0, 0.1, 0.2]}
    aa = np.random.default_rng(1).normal(scale=0.3, size=(24, 3))
    mats = Rotation.from_rotvec(aa).as_matrix()
    for raw in ({"pose": aa.reshape(72)}, {"pose": aa[None]}, {"pred_pose": mats[None]},
                {"global_orient": mats[:1], "body_pose": mats[1:]}):
        assert np.allclose(normalize_fit({**raw, **cam}, width=100, height=200).pose, aa, atol=1e-6)
    amass = np.concatenate([aa.reshape(72)[:66], np.ones(90)])  # SMPL-H row: 22 body joints + hands
    fit = normalize_fit({"poses": amass, "trans": [1, 2, 3], "betas": np.ones(16), **cam}, width=100, height=200)
    assert np.allclose(fit.pose[:22], aa[:22]) and np.allclose(fit.pose[22:], 0) and fit.transl.tolist() == [1, 2, 3]
    with pytest.raises(FitError, match="NaN"):
        normalize_fit({"pose": np.full(72, np.nan), **cam}, width=100, height=200)
    with pytest.raises(FitError, match="no camera"):
        normalize_fit({"pose": aa}, width=100, height=200)
    with pytest.raises(FitError, match="not rotations"):
        normalize_fit({"pose": mats * 2, **cam}, width=100, height=200)


def test_weak_perspective_camera_matches_orig_cam_projection():
    sx, sy, tx, ty = 0.6, 0.9, 0.05, -0.1
    W, H = 300, 200
    fit = normalize_fit({"pose": np.zeros(72), "orig_cam": [sx, sy, tx, ty]}, width=W, height=H, crop_height=180)
    X = np.random.default_rng(2).uniform(-0.3, 0.3, size=(50, 3)) * [1, 3, 0.3]
    cam = X @ fit.world_to_camera[:3, :3].T + fit.world_to_camera[:3, 3]
    uv = cam @ fit.K.T
    uv = uv[:, :2] / uv[:, 2:]
    weak = np.stack([(sx * (X[:, 0] + tx) + 1) * W / 2 - 0.5, (sy * (X[:, 1] + ty) + 1) * H / 2 - 0.5], 1)
    assert np.abs(uv - weak).max() < 0.05 * np.abs(weak - [W / 2, H / 2]).max()  # narrow fov ≈ weak perspective
    assert abs(2 * np.degrees(np.arctan(90 / fit.K[1, 1])) - 12) < 1e-6  # 12° over the 180-pixel crop

"""training/data.py: dataset folders round trip, resized cameras, the resumable batch sampler, camera rotation."""

import numpy as np
import pytest
import torch

from neural.camera import Camera
from training.data import BatchSampler, DatasetWriter, PhotoDataset, rotate_about_body


def _write(root, n=3, height=32, width=16):
    rng = np.random.default_rng(0)
    writer = DatasetWriter(root, height=height, width=width, body_fingerprint="V1-x", body_file="b.npz",
                           num_betas=4, source="test")
    K = np.array([[40.0, 0, 7.5], [0, 40, 15.5], [0, 0, 1]])
    for i in range(n):
        parts = rng.integers(1, 26, size=(height, width)).astype(np.uint8)
        writer.add(f"im{i}", image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mask=parts > 1,
                   parts=parts, betas=np.arange(2.0), pose=rng.normal(size=(24, 3)), transl=np.zeros(3), K=K,
                   world_to_camera=np.eye(4))
    return writer.finish(extra={"note": 1}), K


def test_round_trip_and_resize(tmp_path):
    manifest, K = _write(tmp_path / "ds")
    assert manifest["count"] == 3 and manifest["body"]["fingerprint"] == "V1-x"
    full = PhotoDataset(tmp_path / "ds")
    item = full[1]
    assert item["image"].shape == (3, 32, 16) and item["image"].min() >= -1 and item["image"].max() <= 1
    assert item["betas"].tolist() == [0, 1, 0, 0]  # padded to the body's 4 betas
    assert torch.equal(item["mask"][0] > 0.5, item["parts"] > 1)
    half = PhotoDataset(tmp_path / "ds", height=16, width=8)[1]
    assert half["image"].shape == (3, 16, 8) and half["parts"].shape == (16, 8)
    # a point at pixel (x, y) of the full image lands at ((x + ½)/2 − ½, (y + ½)/2 − ½) at half size
    p = torch.tensor([0.1, -0.2, 3.0])
    for x_full, x_half in ((item["K"] @ p, half["K"] @ p),):
        u, v = (x_full[:2] / x_full[2]).tolist()
        uh, vh = (x_half[:2] / x_half[2]).tolist()
        assert abs(uh - ((u + 0.5) / 2 - 0.5)) < 1e-5 and abs(vh - ((v + 0.5) / 2 - 0.5)) < 1e-5


def test_writer_refuses_bad_items(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", height=8, width=4, body_fingerprint="f", body_file="b", num_betas=2,
                           source="t")
    ok = dict(image=np.zeros((8, 4, 3), np.uint8), mask=np.zeros((8, 4)), parts=np.ones((8, 4), np.uint8),
              betas=None, pose=np.zeros((24, 3)), transl=np.zeros(3), K=np.eye(3), world_to_camera=np.eye(4))
    with pytest.raises(ValueError, match="characters"):
        writer.add("a/b", **ok)
    with pytest.raises(ValueError, match="NaN"):
        writer.add("a", **{**ok, "transl": np.array([0, np.nan, 0])})
    writer.add("a", **ok)
    writer.finish()
    with pytest.raises(FileExistsError):
        DatasetWriter(tmp_path / "ds", height=8, width=4, body_fingerprint="f", body_file="b", num_betas=2, source="t")


def test_batch_sampler_shards_covers_and_resumes():
    size, batch = 10, 4
    ranks = [BatchSampler(size, batch=batch, rank=r, world=2, seed=3) for r in range(2)]
    streams = [[s.batch_at(step) for step in range(5)] for s in ranks]
    flat = [i for step in range(5) for r in range(2) for i in streams[r][step]]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))  # epochs: each once
    assert all(len(b) == 2 for b in streams[0])
    resumed = iter(BatchSampler(size, batch=batch, rank=1, world=2, seed=3, start_step=3))
    assert next(resumed) == streams[1][3] and next(resumed) == streams[1][4]
    assert BatchSampler(size, batch=batch, seed=4).batch_at(0) != BatchSampler(size, batch=batch, seed=3).batch_at(0)


def _rigid(R, t):
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3], m[:3, 3] = R, t
    return m


def test_rotation_matches_orbit_and_is_covariant():
    c = torch.tensor([[0.1, 0.9, -0.2]], dtype=torch.float64)
    front = Camera.orbit(c[0], 4.0, 0.0, 0.0, fov_y_deg=30, width=16, height=32, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)[None]
    yaw, pitch = torch.tensor([0.4], dtype=torch.float64), torch.tensor([0.15], dtype=torch.float64)
    assert torch.allclose(rotate_about_body(front.world_to_camera, eye, c, 0 * yaw, 0 * pitch), front.world_to_camera)
    expected = Camera.orbit(c[0], 4.0, float(torch.rad2deg(yaw)), float(torch.rad2deg(pitch)), fov_y_deg=30,
                            width=16, height=32, dtype=torch.float64)
    got = rotate_about_body(front.world_to_camera, eye, c, yaw, pitch)
    assert torch.allclose(got, expected.world_to_camera, atol=1e-9)
    # the same scene in another frame (body turned by G): the rotated camera is the same physical camera
    from scipy.spatial.transform import Rotation

    R = torch.as_tensor(Rotation.from_rotvec([2.5, 0.3, -0.4]).as_matrix())
    G = _rigid(R, torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64))
    root = torch.as_tensor(Rotation.from_rotvec([0.2, 1.0, 0.1]).as_matrix())[None]
    c2 = (G[:3, :3] @ c[0] + G[:3, 3])[None]
    moved = rotate_about_body(front.world_to_camera @ torch.linalg.inv(G), (R @ root[0])[None], c2, yaw, pitch)
    assert torch.allclose(moved, rotate_about_body(front.world_to_camera, root, c, yaw, pitch) @ torch.linalg.inv(G),
                          atol=1e-9)

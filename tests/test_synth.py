"""training/synth.py: deterministic synthetic people whose colours are fixed to the body surface."""

import numpy as np
import torch
from PIL import Image

from neural.body import BodyModel, free_body_path
from neural.camera import Camera, crop_camera
from neural.raster import interpolate, part_map, rasterize
from training.data import PhotoDataset, read_manifest
from training.synth import FIELDS, render_people, sample_appearance, synth


def test_dataset_is_deterministic_valid_and_matches_its_fits(tmp_path):
    synth(out=tmp_path / "a", count=3, height=64, width=32, seed=7, progress=False)
    synth(out=tmp_path / "b", count=4, height=64, width=32, seed=7, progress=False)
    synth(out=tmp_path / "c", count=1, height=64, width=32, seed=8, progress=False)
    for name in ("000000", "000001", "000002"):  # an item depends on (seed, index) only
        for sub in ("images", "masks", "parts"):
            assert (tmp_path / "a" / sub / f"{name}.png").read_bytes() == (tmp_path / "b" / sub / f"{name}.png").read_bytes()
    assert (tmp_path / "a/images/000000.png").read_bytes() != (tmp_path / "c/images/000000.png").read_bytes()

    manifest = read_manifest(tmp_path / "b")
    body = BodyModel.load(free_body_path())
    assert manifest["count"] == 4 and manifest["body"]["fingerprint"] == body.fingerprint
    appearance = np.load(tmp_path / "b" / "appearance.npz")
    assert {k: appearance[k].shape for k in FIELDS} == {k: (4, n) for k, n in FIELDS.items()}
    ds = PhotoDataset(tmp_path / "b")
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ("image", "parts", "mask", "betas", "pose", "K",
                                                                     "world_to_camera")}
    assert batch["parts"].min() >= 1 and batch["parts"].max() <= 25 and (batch["parts"] > 1).float().mean() > 0.15
    outside = batch["mask"][:, 0] < 0.5
    assert (batch["image"].permute(0, 2, 3, 1)[outside] > 0.99).all(-1).float().mean() > 0.97  # white background
    # the stored fit and camera reproduce the stored part map exactly
    posed = body(betas=batch["betas"], pose=batch["pose"])
    camera = Camera(K=batch["K"], world_to_camera=batch["world_to_camera"], width=32, height=64)
    assert torch.equal(part_map(rasterize(posed.vertices, posed.faces, camera), posed.faces, posed.parts),
                       batch["parts"])


def _render(body, pose, yaw, appearance, rest_joints):
    posed = body(pose=pose[None])
    scene = Camera.orbit(posed.joints[:, 0], 4.0, yaw, 5.0, fov_y_deg=30.0, width=256, height=256)
    camera, _ = crop_camera(scene, posed.vertices, width=96, height=192, margin=0.05)
    rgb, _, _ = render_people(posed, camera, appearance, rest_joints, supersample=1)
    frags = rasterize(posed.vertices, posed.faces, camera)
    rest = interpolate(frags, posed.faces, posed.template)[frags.mask]
    return rgb[frags.mask], rest


def test_colours_follow_the_surface_across_views_and_poses():
    body = BodyModel.load(free_body_path())
    rest_joints = body().joints[0]
    look = sample_appearance(np.random.default_rng(3))
    look["top_pattern"] = np.array([2.0])  # checks: the hardest case
    appearance = {k: torch.as_tensor(v, dtype=torch.float32)[None] for k, v in look.items()}
    standing = torch.zeros(24, 3)
    walking = standing.clone()
    walking[0, 1], walking[1, 0], walking[4, 0], walking[17, 2] = 0.7, -0.5, 0.6, 1.2  # turned, one leg and arm moved
    base_rgb, base_rest = _render(body, standing, 0.0, appearance, rest_joints)
    for pose, yaw in ((standing, 30.0), (walking, -20.0)):
        rgb, rest = _render(body, pose, yaw, appearance, rest_joints)
        dist, nearest = torch.cdist(rest, base_rest).min(dim=1)
        same = dist < 0.005  # the same surface point (rest-pose coordinates within 5 mm)
        assert same.sum() > 100
        diff = (rgb[same] - base_rgb[nearest[same]]).abs().max(dim=1).values
        assert diff.median() < 0.02 and (diff < 0.1).float().mean() > 0.9, (diff.median(), (diff < 0.1).float().mean())
    # and the renders differ where they should: another appearance changes the colours
    other = {k: torch.as_tensor(v, dtype=torch.float32)[None] for k, v in
             sample_appearance(np.random.default_rng(4)).items()}
    rgb, _ = _render(body, standing, 0.0, other, rest_joints)
    assert (rgb - base_rgb).abs().mean() > 0.05


def test_contact_sheet_has_varied_people(tmp_path):
    synth(out=tmp_path / "s", count=6, height=64, width=32, seed=0, progress=False)
    images = np.stack([np.asarray(Image.open(tmp_path / "s" / "images" / f"{i:06d}.png")) for i in range(6)])
    person = images.reshape(6, -1, 3)[(np.asarray([np.asarray(Image.open(tmp_path / "s" / "masks" / f"{i:06d}.png"))
                                                   for i in range(6)]).reshape(6, -1) > 0)]
    assert person.std(axis=0).mean() > 20  # clothing and skin colours vary

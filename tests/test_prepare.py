"""training/prepare.py: a photo collection with planted bad files → a dataset folder and a report naming them."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from neural.body import BodyModel
from neural.camera import Camera
from neural.raster import rasterize
from tiny_body import write_box_body
from training.data import PhotoDataset
from training.fits import normalize_fit
from training.prepare import crop_box, prepare

W0, H0 = 120, 160
UPRIGHT = np.zeros((24, 3))
UPRIGHT[0] = (np.pi, 0, 0)  # regressor frame: y down, so the upright body is turned by π about x


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _photo(body, fit_raw, colour=(220, 20, 20)):
    """A photo of the box body seen by the fit's camera: `colour` on grey."""
    fit = normalize_fit(fit_raw, width=W0, height=H0)
    posed = body(pose=torch.as_tensor(fit.pose[None], dtype=torch.float32))
    cam = Camera(K=torch.as_tensor(fit.K, dtype=torch.float32)[None],
                 world_to_camera=torch.as_tensor(fit.world_to_camera, dtype=torch.float32)[None], width=W0, height=H0)
    mask = rasterize(posed.vertices, posed.faces, cam).mask[0].numpy()
    image = np.full((H0, W0, 3), 128, np.uint8)
    image[mask] = colour
    return image, mask


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    body_path = write_box_body(root / "body.npz")
    body = BodyModel.load(body_path)
    images, fits = root / "images", root / "fits"
    images.mkdir()
    fits.mkdir()
    weak = {"pose": UPRIGHT.reshape(72), "betas": np.zeros(2), "orig_cam": [1.2, 0.9, 0.05, -0.1]}
    image, mask = _photo(body, weak)
    Image.fromarray(image).save(images / "good_weak.png")
    np.savez(fits / "good_weak.npz", **weak)
    K = np.array([[300.0, 0, 60], [0, 300, 80], [0, 0, 1]])
    w2c = np.eye(4)
    w2c[:3, 3] = (0, 0.1, 5)
    persp = {"pose": UPRIGHT.tolist(), "K": K.tolist(), "world_to_camera": w2c.tolist()}
    image2, _ = _photo(body, persp, colour=(20, 20, 220))
    Image.fromarray(image2).save(images / "good_persp.jpg", quality=95)
    (fits / "good_persp.json").write_text(json.dumps(persp))
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    np.savez(fits / "broken.npz", **weak)
    Image.fromarray(image).save(images / "no_fit.png")
    Image.fromarray(image).save(images / "nan_fit.png")
    np.savez(fits / "nan_fit.npz", **{**weak, "orig_cam": [np.nan, 1, 0, 0]})
    Image.fromarray(image).save(images / "evil.png")
    (fits / "evil.pkl").write_bytes(pickle.dumps({"pose": _Evil()}))
    np.savez(fits / "orphan.npz", **weak)
    return root, body_path, mask


def test_prepare_skips_and_names_bad_inputs(collection, tmp_path):
    root, body_path, _ = collection
    report = prepare(images=root / "images", fits=root / "fits", out=tmp_path / "ds", body_path=body_path,
                     height=64, width=32, log=lambda *_: None)
    assert report["written"] == 2
    assert sorted(report["skipped"]) == ["broken", "evil", "nan_fit", "no_fit"]
    assert "NaN" in report["skipped"]["nan_fit"] and "only numpy arrays" in report["skipped"]["evil"]
    assert report["fits_without_image"] == ["orphan"]
    assert json.loads((tmp_path / "ds" / "report.json").read_text()) == report

    ds = PhotoDataset(tmp_path / "ds")
    assert ds.names == ["good_persp", "good_weak"]
    for i, colour in ((0, (20, 20, 220)), (1, (220, 20, 20))):
        item = ds[i]
        rgb = (item["image"].permute(1, 2, 0).numpy() + 1) * 127.5
        person = item["mask"][0].numpy() > 0.5
        assert torch.equal(item["mask"][0] > 0.5, item["parts"] > 1)  # the mask comes from the part map
        # composited on white; the fit's rasterised body lands on the photo's person (not on its grey background)
        assert np.abs(rgb[~person] - 255).max() < 1
        on_person = np.abs(rgb[person] - colour).max(-1) < 60
        assert on_person.mean() > 0.85, on_person.mean()
        # the crop frames the person: margin on the limiting side, nothing cut off
        rows = np.nonzero(person.any(1))[0]
        assert rows.min() >= 1 and rows.max() <= 62


def test_strict_refuses_and_writes_nothing(collection, tmp_path):
    root, body_path, _ = collection
    with pytest.raises(ValueError, match="broken") as error:
        prepare(images=root / "images", fits=root / "fits", out=tmp_path / "ds", body_path=body_path,
                height=64, width=32, strict=True, log=lambda *_: None)
    assert "no_fit" in str(error.value) and "nan_fit" in str(error.value)
    assert not (tmp_path / "ds" / "manifest.json").exists()


def test_given_part_maps_are_cropped_not_rasterised(collection, tmp_path):
    root, body_path, mask = collection
    images, fits, parts = tmp_path / "images", tmp_path / "fits", tmp_path / "parts"
    for d in (images, fits, parts):
        d.mkdir()
    Image.open(root / "images" / "good_weak.png").save(images / "a.png")
    (fits / "a.npz").write_bytes((root / "fits" / "good_weak.npz").read_bytes())
    labels = np.where(mask, 7, 0).astype(np.uint8)  # a parser map: one part, 0 = background
    Image.fromarray(labels).save(parts / "a.png")
    prepare(images=images, fits=fits, out=tmp_path / "ds", body_path=body_path, parts=parts, height=64, width=32,
            log=lambda *_: None)
    item = PhotoDataset(tmp_path / "ds")[0]
    assert set(np.unique(item["parts"].numpy())) == {1, 7}
    assert torch.equal(item["parts"] > 1, item["mask"][0] > 0.5)


def test_crop_box_is_two_to_one_and_centred():
    mask = np.zeros((100, 100), bool)
    mask[20:60, 40:50] = True
    crop = crop_box(mask, margin=0.1)
    assert crop.height == 2 * crop.width and crop.height == 50
    assert abs((crop.top + crop.height / 2) - 40) <= 1 and abs((crop.left + crop.width / 2) - 45) <= 1


def _png_header(path, width, height):
    """A PNG whose header claims width×height (a decompression bomb needs no more to be dangerous)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_huge_photos_are_listed_and_skipped_not_fatal(collection, tmp_path):
    root, body_path, _ = collection
    images = tmp_path / "images"
    images.mkdir()
    for name in ("good_weak.png", "good_persp.jpg"):
        (images / name).write_bytes((root / "images" / name).read_bytes())
    _png_header(images / "bomb.png", 14000, 14000)  # 196 MP: PIL's own decompression-bomb error
    _png_header(images / "huge.png", 12000, 7700)  # 92 MP: only a warning from PIL
    fits = tmp_path / "fits"
    fits.mkdir()
    weak = (root / "fits" / "good_weak.npz").read_bytes()
    for name in ("good_weak", "bomb", "huge"):
        (fits / f"{name}.npz").write_bytes(weak)
    (fits / "good_persp.json").write_bytes((root / "fits" / "good_persp.json").read_bytes())
    report = prepare(images=images, fits=fits, out=tmp_path / "ds", body_path=body_path, height=64, width=32,
                     log=lambda *_: None)
    assert report["written"] == 2 and sorted(report["skipped"]) == ["bomb", "huge"]
    assert "decompression bomb" in report["skipped"]["bomb"]
    assert "12000×7700 (92 MP), over the 64 MP limit" in report["skipped"]["huge"]


def test_the_fit_mask_is_rasterised_small_and_gives_the_same_crop(collection, tmp_path, monkeypatch):
    from training import prepare as module

    root, body_path, _ = collection
    seen = []
    original = module._rasterize_parts

    def spy(body, fit, K, w2c, width, height):
        seen.append(width * height)
        return original(body, fit, K, w2c, width, height)

    monkeypatch.setattr(module, "_rasterize_parts", spy)
    body = BodyModel.load(body_path)
    raw = dict(np.load(root / "fits" / "good_weak.npz"))
    kwargs = dict(body=body, width=32, height=64, margin=0.05, mask_path=None, parts_path=None)
    full = module.process_image(root / "images" / "good_weak.png", raw, **kwargs)
    monkeypatch.setattr(module, "MASK_PIXELS", W0 * H0 // 4)  # half the resolution each way
    small = module.process_image(root / "images" / "good_weak.png", raw, **kwargs)
    assert seen == [W0 * H0, 64 * 32, W0 * H0 // 4, 64 * 32]  # the crop's mask, then the part map at dataset size
    assert np.abs(small["K"] - full["K"]).max() < 0.05 * full["K"][0, 0]  # the same crop within a pixel or two
    assert (small["parts"] != full["parts"]).mean() < 0.05


def test_an_out_that_is_a_file_is_refused_before_any_photo_is_read(collection, tmp_path, monkeypatch):
    from training import prepare as module

    root, body_path, _ = collection
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    monkeypatch.setattr(module, "process_image", lambda *a, **k: pytest.fail("a photo was processed"))
    with pytest.raises(NotADirectoryError, match=f"--out {taken} is a file"):
        prepare(images=root / "images", fits=root / "fits", out=taken, body_path=body_path, height=64, width=32)
    assert taken.read_text() == "keep me"

"""`python -m training prepare` without --fits: photos → detection → fitting → a dataset folder, every bad photo
listed by name and reason; a short cpu-small run on real video frames starts, resumes and writes samples."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photos_fixture import needs_mediapipe, real_frames, synthetic_people
from training.data import PhotoDataset
from training.fits import normalize_fit, read_fits
from training.photos.pipeline import intrinsics

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _prepare(images: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", "prepare", "--images", str(images), "--out", str(out),
                           "--size", "64x128", *extra], capture_output=True, text=True, cwd=ROOT, timeout=600)


def _bad_photos(folder: Path, frame: np.ndarray | None) -> dict[str, str]:
    """Plant the bad inputs; returns name → the words its reason must hold."""
    Image.fromarray(np.full((300, 200, 3), 190, np.uint8)).save(folder / "empty.png")
    (folder / "broken.jpg").write_bytes(b"not a JPEG at all")
    expected = {"empty": "no person found", "broken": "unreadable image"}
    if frame is not None:
        Image.fromarray(frame[300:700, 1000:]).save(folder / "cut.png")  # the woman from the hips up
        expected["cut"] = "cut by the frame edge"
    return expected


def test_prepare_without_fits_detects_fits_and_lists_bad_photos(tmp_path):
    needs_mediapipe()
    _, images, _, _, camera, _, _ = synthetic_people([2], height=384, width=192)
    photos = tmp_path / "photos"
    photos.mkdir()
    canvas = np.full((480, 320, 3), 255, np.uint8)  # the person inside a larger frame, off centre
    canvas[60:444, 40:232] = images[0]
    Image.fromarray(canvas).save(photos / "person.png")
    expected = _bad_photos(photos, None)
    result = _prepare(photos, tmp_path / "data")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "data" / "report.json").read_text())
    assert report["written"] == 1 and set(report["skipped"]) == set(expected), report
    for name, words in expected.items():
        assert words in report["skipped"][name] and name in result.stdout
    item = PhotoDataset(tmp_path / "data")[0]
    parts, mask = item["parts"].numpy(), item["mask"][0].numpy() > 0.5
    iou = ((parts > 1) & mask).sum() / ((parts > 1) | mask).sum()
    assert iou > 0.75, f"the fitted body's part map covers the detected person with IoU {iou:.2f}"
    assert len(np.unique(parts)) > 15, "most body parts are visible in the fitted part map"
    # the fits written on the way are the form `--fits` reads: re-preparing from them gives the same body
    fits, problems = read_fits(tmp_path / "data" / "photo_fits" / "fits")
    assert not problems and set(fits) == {"person"}
    fit = normalize_fit(fits["person"], width=320, height=480)
    np.testing.assert_allclose(fit.K, intrinsics(Image.open(photos / "person.png"))[0])
    again = _prepare(photos, tmp_path / "again", "--fits", str(tmp_path / "data" / "photo_fits" / "fits"),
                     "--masks", str(tmp_path / "data" / "photo_fits" / "masks"))
    assert again.returncode == 0, again.stderr
    np.testing.assert_array_equal(PhotoDataset(tmp_path / "again")[0]["parts"].numpy(), parts)


def test_masks_without_fits_are_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photos" / "a.png")
    result = _prepare(tmp_path / "photos", tmp_path / "data", "--masks", str(tmp_path))
    assert result.returncode == 1 and "--masks and --parts go with --fits" in result.stderr


def test_exif_focal_length_is_used(tmp_path):
    image = Image.fromarray(np.zeros((300, 400, 3), np.uint8))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # a phone's 26 mm-equivalent lens
    image.save(tmp_path / "phone.jpg", exif=exif)
    image.save(tmp_path / "plain.jpg")
    K, source = intrinsics(Image.open(tmp_path / "phone.jpg"))
    assert "EXIF" in source and K[0, 0] == pytest.approx(26 * 500 / np.hypot(36, 24))
    K, source = intrinsics(Image.open(tmp_path / "plain.jpg"))
    assert "default" in source and K[0, 0] == pytest.approx(50 * 500 / np.hypot(36, 24))
    assert tuple(K[:2, 2]) == (199.5, 149.5)


@pytest.mark.slow
def test_real_frames_prepare_and_train_cpu_small(tmp_path):
    needs_mediapipe()
    frames = real_frames([40, 80])
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, frame in frames.items():
        Image.fromarray(frame).save(photos / f"frame{i:03d}.jpg", quality=92)
    expected = _bad_photos(photos, frames[80])
    result = _prepare(photos, tmp_path / "data")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "data" / "report.json").read_text())
    assert set(report["skipped"]) == set(expected), report
    for name, words in expected.items():
        assert words in report["skipped"][name]
    names = PhotoDataset(tmp_path / "data").names
    assert sorted(names) == ["frame040_p1", "frame040_p2", "frame080_p1", "frame080_p2"], names
    run = tmp_path / "run"
    train = [sys.executable, "-m", "training", "train", "--preset", "cpu-small", "--data", str(tmp_path / "data"),
             "--run", str(run), "--batch", "2", "--threads", "1"]
    first = subprocess.run(train + ["--steps", "2"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert first.returncode == 0, first.stderr
    reals = (run / "samples" / "reals.png").stat().st_mtime_ns  # written only by a run that starts at step 0
    second = subprocess.run(train + ["--steps", "4"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert second.returncode == 0, second.stderr
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps[-1] == 4 and len(steps) == len(set(steps)), steps
    assert (run / "samples" / "reals.png").stat().st_mtime_ns == reals, "the second run started over, not resumed"
    samples = {p.name for p in (run / "samples").iterdir()}
    assert {"reals.png", "fakes-0000002.png", "fakes-0000004.png"} <= samples, samples
    Image.open(run / "samples" / "fakes-0000004.png").load()


def test_a_detection_the_body_cannot_explain_is_refused_by_name(tmp_path, monkeypatch):
    """A 'person' whose landmarks no body pose reproduces (a post, a half-seen person with its legs put on its
    shirt) is listed with the reason, and the real person beside it is fitted."""
    from training.photos import pipeline
    from training.photos.detect import Person
    from training.photos.fit import Fitter

    body, images, masks, posed, camera, _, _ = synthetic_people([2])
    fitter = Fitter(body)
    truth, _ = camera.project(fitter.landmarks.points(posed))
    keypoints, visibility = np.zeros((33, 2)), np.zeros(33)
    keypoints[fitter.landmarks.indices], visibility[fitter.landmarks.indices] = truth[0].detach().numpy(), 1.0
    scrambled = keypoints.copy()
    scrambled[fitter.landmarks.indices] = keypoints[np.random.default_rng(1).permutation(fitter.landmarks.indices)]
    people = [Person(keypoints=k, visibility=visibility, mask=masks[0], world=np.zeros((33, 3)), problem=None)
              for k in (keypoints, scrambled)]

    class StandInDetector:  # BlazePose's answer for the photo, without BlazePose
        def __init__(self, config):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def detect(self, rgb):
            return people

    monkeypatch.setattr(pipeline, "Detector", StandInDetector)
    Image.fromarray(images[0]).save(tmp_path / "two.png")
    found = pipeline.detect_and_fit({"two": tmp_path / "two.png"}, body=body, work=tmp_path / "work", log=print)
    assert set(found.fits) == {"two_p1"} and set(found.problems) == {"two_p2"}, found.info
    assert "does not explain the landmarks" in found.problems["two_p2"]
    report = json.loads((tmp_path / "work" / "detections.json").read_text())
    assert report["problems"] == found.problems and report["items"]["two_p1"]["keypoint_error_px"] < 5

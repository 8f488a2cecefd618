"""training/photos/detect.py: BlazePose on real video frames, a real street photo and synthetic people, and each
refusal by reason."""

import numpy as np
import pytest
import torch

from photos_fixture import bus_photo, needs_mediapipe, real_frames, synthetic_people
from training.photos.detect import DetectConfig, Detector
from training.photos.fit import Fitter
from training.photos.landmarks import LANDMARK_NAMES

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def detector():
    needs_mediapipe()
    with Detector() as d:
        yield d


def _index(*names):
    return [LANDMARK_NAMES.index(n) for n in names]


def test_two_real_people_in_a_video_frame(detector):
    frame = real_frames([80])[80]
    people = detector.detect(frame)
    assert len(people) == 2, [p.problem for p in people]
    for person in people:
        assert person.problem is None
        assert person.height_px > 300  # both are ~400 px tall in this 1768×994 frame
        nose, shoulders, hips, ankles = (person.keypoints[_index(*n)][:, 1].mean() for n in (
            ("nose",), ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_ankle", "right_ankle")))
        assert nose < shoulders < hips < ankles  # upright people, image y down
        hip = person.keypoints[_index("left_hip", "right_hip")].mean(0).round().astype(int)
        assert person.mask[hip[1], hip[0]], "the person's mask covers its own hips"
    assert not (people[0].mask & people[1].mask).any(), "one mask per person"
    centres = sorted(p.keypoints[:, 0].mean() for p in people)
    assert centres[1] - centres[0] > 300, "two different people, not one found twice"


def test_two_real_people_in_a_street_photo(detector):
    photo = bus_photo()
    people = detector.detect(photo)
    clear = [p for p in people if p.problem is None]
    assert len(clear) == 2, [p.problem for p in people]
    for person in clear:
        assert person.height_px > 400  # ~510 and ~450 px tall in this 810×1080 photo
        nose, shoulders, hips, ankles = (person.keypoints[_index(*n)][:, 1].mean() for n in (
            ("nose",), ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_ankle", "right_ankle")))
        assert nose < shoulders < hips < ankles
    centres = sorted(p.keypoints[:, 0].mean() for p in clear)
    assert centres[1] < 400 and centres[1] - centres[0] > 100, f"the two walkers left of the bus: centres {centres}"
    assert not (clear[0].mask & clear[1].mask).any(), "one mask per person"
    for person in people:
        if person.problem is not None:  # the man at the right edge: found, and refused for it
            assert "cut by the frame edge" in person.problem and person.keypoints[:, 0].mean() > 600, person.problem


def test_landmarks_on_synthetic_people_match_the_true_body(detector):
    body, images, masks, posed, camera, *_ = synthetic_people([1, 2, 4])
    fitter = Fitter(body)
    with torch.no_grad():
        truth, _ = camera.project(fitter.landmarks.points(posed))
    errors, mirrored = [], []
    for b in range(len(images)):
        (person,) = detector.detect(images[b])
        errors.append(np.linalg.norm(person.keypoints[fitter.landmarks.indices] - truth[b].numpy(), axis=1))
        iou = (person.mask & masks[b]).sum() / (person.mask | masks[b]).sum()
        assert iou > 0.85, f"person {b}: BlazePose's mask has IoU {iou:.2f} with the true silhouette"
        assert person.mirrored is not None, f"person {b}: no reading on the mirrored image"
        (again, _), (mean, _) = person.alternatives
        np.testing.assert_allclose(mean, (person.keypoints + again) / 2)
        mirrored.append(np.linalg.norm(again[fitter.landmarks.indices] - truth[b].numpy(), axis=1))
    assert np.median(np.concatenate(errors)) < 6.0, f"median landmark error {np.median(np.concatenate(errors)):.1f} px"
    # the mirrored reading is relabelled and moved back: as close to the truth, left on left
    assert np.median(np.concatenate(mirrored)) < 6.0, f"mirrored: {np.median(np.concatenate(mirrored)):.1f} px"


def test_refusals_name_the_reason(detector):
    frame = real_frames([80])[80]
    empty = np.full((300, 200, 3), 190, np.uint8)
    assert detector.detect(empty) == []
    cut = np.ascontiguousarray(frame[300:700, 1000:])  # the walking woman from the hips up
    problems = [p.problem for p in detector.detect(cut)]
    assert problems and all("cut by the frame edge" in p and "ankle" in p for p in problems), problems
    small = np.ascontiguousarray(frame[::5, ::5])  # both people ~80 px tall
    problems = [p.problem for p in Detector(DetectConfig(window_levels=0, min_height=100)).detect(small)]
    assert problems and all(p.startswith("too small") for p in problems), problems


def test_bad_configs_and_images_are_refused():
    with pytest.raises(ValueError, match="window_levels"):
        DetectConfig(window_levels=-1)
    with pytest.raises(ValueError, match="min_confidence"):
        DetectConfig(min_confidence=1.5)
    needs_mediapipe()
    with Detector() as d, pytest.raises(ValueError, match="uint8 RGB"):
        d.detect(np.zeros((10, 10), np.float32))


def test_search_windows_cover_the_image():
    needs_mediapipe()
    with Detector() as d:
        windows = d.windows(1768, 994)
        assert d.windows(128, 256) == []  # windows under 1.5 × min_height are not searched
    covered = np.zeros((994, 1768), bool)
    for left, top, side in windows:
        assert left + side <= 1768 and top + side <= 994
        covered[top:top + side, left:left + side] = True
    assert covered.all() and {side for *_, side in windows} == {994, 497}


def test_a_person_with_hidden_legs_is_not_fitted():
    from training.photos.detect import Person, _problem

    keypoints = np.stack([np.full(33, 50.0), np.linspace(10, 190, 33)], 1)
    visibility = np.ones(33)
    visibility[LANDMARK_NAMES.index("left_knee")] = 0.2  # the far knee of a side view: kept
    person = Person(keypoints=keypoints, visibility=visibility, mask=np.ones((200, 100), bool),
                    world=np.zeros((33, 3)), problem=None)
    assert _problem(person, 100, 200, DetectConfig()) is None
    visibility[LANDMARK_NAMES.index("right_knee")] = 0.3  # both knees: refused
    assert _problem(person, 100, 200, DetectConfig()) == (
        "not clearly seen (left_knee, right_knee: visibility under 0.5; occluded, or not a person)")
    assert _problem(person, 100, 200, DetectConfig(min_visibility=0.25)) is None

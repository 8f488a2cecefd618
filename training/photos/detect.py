"""Person detection: MediaPipe BlazePose (mediapipe 0.10.21, Apache-2.0) → 33 landmarks and a person mask each.

The legacy `mp.solutions.pose` API ships its models inside the wheel and runs offline on CPU, but it finds one person
per call, and sees the image at 224 px. For several people we detect, paint the found person out (mask and landmark
box, grown, filled with grey), and detect again, up to `max_people`; then the same in square windows of the image,
so people small in a big photo are found too (a person cut by a window's edge is left to the window that holds it).
Each person's landmarks are read a second time on the mirrored image (left and right swapped back): BlazePose
errs differently on the two, and where one reading swaps or misplaces a limb the other often does not, so the
fitter tries both and their mean and keeps the reading that fits a body best (fit.py, Target.alternatives).
Every person found is then checked: too small (BlazePose misses or misplaces people under about 100 px), cut by the
frame edge (a landmark of the head, torso or legs outside the image), or not clearly seen (one of those landmarks
with low visibility: occluded, or a false detection).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import distance_transform_edt

from .landmarks import LANDMARK_NAMES

# a full-body person has these inside the frame
_REQUIRED = ("nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_knee", "right_knee",
             "left_ankle", "right_ankle")
_PAIRS = ("shoulder", "hip", "knee", "ankle")
_HIPS = [LANDMARK_NAMES.index("left_hip"), LANDMARK_NAMES.index("right_hip")]
# BlazePose order with left and right swapped: the landmarks of a mirrored image, relabelled
_MIRROR = [LANDMARK_NAMES.index(n.replace("left", "@").replace("right", "left").replace("@", "right"))
           for n in LANDMARK_NAMES]


@dataclass(frozen=True, kw_only=True)
class DetectConfig:
    """min_height: people shorter than this many pixels are refused; max_people per image; min_confidence of
    BlazePose's person detector; mask_threshold on its segmentation; window_levels: sizes of square windows searched
    after the whole image (BlazePose sees an image at 224 px, so a person small in a big photo needs a window);
    min_visibility: a person is refused when the nose, or both sides of a shoulder, hip, knee or ankle pair, are
    below this BlazePose visibility (legs hidden, or a false detection: on the real test frames, poles and chairs);
    one side alone is the far limb of a side view and is kept; mirror: also read every person's landmarks on the
    mirrored image (one more BlazePose call per person)."""

    min_height: int = 100
    max_people: int = 4
    min_confidence: float = 0.5
    mask_threshold: float = 0.5
    min_visibility: float = 0.5
    window_levels: int = 2
    mirror: bool = True

    def __post_init__(self) -> None:
        if self.window_levels < 0:
            raise ValueError(f"DetectConfig.window_levels = {self.window_levels} must be ≥ 0")
        if self.min_height < 1 or self.max_people < 1:
            raise ValueError(f"DetectConfig: min_height {self.min_height} and max_people {self.max_people} must be ≥ 1")
        for name in ("min_confidence", "mask_threshold", "min_visibility"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"DetectConfig.{name} = {getattr(self, name)} must lie in (0, 1)")


@dataclass(frozen=True)
class Person:
    """One detected person. keypoints (33, 2) image pixels (pixel centres at integers), BlazePose order;
    visibility (33,) in [0, 1]; mask (H, W) bool; world (33, 3) BlazePose's metric 3D landmarks (hip-centred, camera
    axes: x right, y down, z away); problem: why it cannot be fitted, or None; mirrored: (keypoints, visibility)
    read on the mirrored image, in this image's pixels and order, or None (not read, or another person found)."""

    keypoints: np.ndarray
    visibility: np.ndarray
    mask: np.ndarray
    world: np.ndarray
    problem: str | None
    mirrored: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def alternatives(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """The other readings for the fitter (fit.Target.alternatives): the mirrored one and the mean of both."""
        if self.mirrored is None:
            return ()
        keypoints, visibility = self.mirrored
        return (keypoints, visibility), ((self.keypoints + keypoints) / 2, (self.visibility + visibility) / 2)

    @property
    def height_px(self) -> float:
        seen = self.keypoints[self.visibility > 0.5]
        ys = np.nonzero(self.mask)[0]
        top = min(ys.min(), seen[:, 1].min()) if len(ys) and len(seen) else (ys.min() if len(ys) else 0)
        bottom = max(ys.max(), seen[:, 1].max()) if len(ys) and len(seen) else (ys.max() if len(ys) else 0)
        return float(bottom - top + 1)


def _blazepose(config: DetectConfig):
    try:
        import mediapipe as mp
    except ImportError as error:
        raise ModuleNotFoundError("photo detection needs mediapipe==0.10.21 (its wheel ships the BlazePose models): "
                           "`make venv` installs it, or `pip install --no-deps mediapipe==0.10.21 absl-py attrs "
                           "flatbuffers 'protobuf<5' opencv-python-headless matplotlib`") from error
    if not hasattr(mp, "solutions"):
        raise ModuleNotFoundError(f"mediapipe {mp.__version__} has no `solutions` API and ships no pose models; "
                           "install mediapipe==0.10.21")
    return mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True,
                                  min_detection_confidence=config.min_confidence)


def _outside(keypoints: np.ndarray, width: int, height: int) -> list[str]:
    """Names of the required landmarks outside a width × height frame."""
    return [n for n in _REQUIRED if not (-0.5 <= keypoints[LANDMARK_NAMES.index(n), 0] <= width - 0.5
                                         and -0.5 <= keypoints[LANDMARK_NAMES.index(n), 1] <= height - 0.5)]


def _problem(person: Person, width: int, height: int, config: DetectConfig) -> str | None:
    if person.height_px < config.min_height:
        return (f"too small ({person.height_px:.0f} px tall; people under {config.min_height} px are not detected "
                "reliably)")
    outside = _outside(person.keypoints, width, height)
    if outside:
        return f"cut by the frame edge ({', '.join(outside)} outside the image)"
    unsure = [n for n in _REQUIRED if person.visibility[LANDMARK_NAMES.index(n)] < config.min_visibility]
    # one hidden side of a pair is the far leg of a side view; both sides, or the nose, is no full-body view
    if "nose" in unsure or any(f"left_{n}" in unsure and f"right_{n}" in unsure for n in _PAIRS):
        return (f"not clearly seen ({', '.join(unsure)}: visibility under {config.min_visibility}; occluded, or not "
                "a person)")
    return None


class Detector:
    """BlazePose on RGB images. `detect(rgb)` → the people found (possibly none), each with its problem or None."""

    def __init__(self, config: DetectConfig = DetectConfig()) -> None:
        self.config = config
        self.pose = _blazepose(config)

    def close(self) -> None:
        self.pose.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _once(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        result = self.pose.process(rgb)
        if result.pose_landmarks is None:
            return None
        H, W = rgb.shape[:2]
        marks = result.pose_landmarks.landmark
        keypoints = np.array([(m.x * W - 0.5, m.y * H - 0.5) for m in marks])
        visibility = np.array([m.visibility for m in marks])
        world = np.array([(m.x, m.y, m.z) for m in result.pose_world_landmarks.landmark])
        if result.segmentation_mask is None:
            mask = np.zeros((H, W), bool)
        else:
            mask = np.asarray(result.segmentation_mask) > self.config.mask_threshold
        return keypoints, visibility, mask, world

    def _mirrored(self, view: np.ndarray, keypoints: np.ndarray, height_px: float):
        """(keypoints, visibility) of BlazePose on the mirrored view, in the view's pixels and BlazePose order, or
        None when it finds no one there or someone else (landmarks a tenth of the person's height off, median)."""
        found = self._once(np.ascontiguousarray(view[:, ::-1]))
        if found is None:
            return None
        mirrored, visibility = found[0][_MIRROR], found[1][_MIRROR]
        mirrored[:, 0] = view.shape[1] - 1 - mirrored[:, 0]
        if np.median(np.linalg.norm(mirrored - keypoints, axis=1)) > 0.1 * height_px:
            return None
        return mirrored, visibility

    def windows(self, width: int, height: int) -> list[tuple[int, int, int]]:
        """(left, top, side) of the square search windows after the whole image: `window_levels` sizes, from the
        image's short side halving, overlapping by half, none smaller than 1.5 × min_height."""
        out, side = [], min(width, height)
        for _ in range(self.config.window_levels):
            if side < 1.5 * self.config.min_height or (side == width == height and not out):
                side //= 2
                continue
            for top in np.linspace(0, height - side, max(1, int(np.ceil(2 * (height - side) / side)) + 1)):
                for left in np.linspace(0, width - side, max(1, int(np.ceil(2 * (width - side) / side)) + 1)):
                    out.append((int(left), int(top), side))
            side //= 2
        return out

    def detect(self, rgb: np.ndarray) -> list[Person]:
        """rgb (H, W, 3) uint8 → people, in the order found (the whole image first, then the windows)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"detect wants an (H, W, 3) uint8 RGB image; got {rgb.shape} {rgb.dtype}")
        H, W = rgb.shape[:2]
        work = np.array(rgb)
        people: list[Person] = []
        taken = np.zeros((H, W), bool)
        for left, top, w, h in [(0, 0, W, H)] + [(x, y, s, s) for x, y, s in self.windows(W, H)]:
            whole = (w, h) == (W, H)
            for _ in range(self.config.max_people - len(people)):
                if taken[top:top + h, left:left + w].mean() > 0.8:
                    break
                found = self._once(np.ascontiguousarray(work[top:top + h, left:left + w]))
                if found is None:
                    break
                keypoints, visibility, window_mask, world = found
                keypoints = keypoints + (left, top)
                mask = np.zeros((H, W), bool)
                mask[top:top + h, left:left + w] = window_mask
                mask &= ~taken
                centre = np.round(keypoints[_HIPS].mean(0)).astype(int)
                inside = 0 <= centre[0] < W and 0 <= centre[1] < H
                if not mask.any() or (inside and taken[centre[1], centre[0]]):
                    break  # a person already found, seen through the paint
                if not whole and _outside(keypoints - (left, top), w, h):
                    break  # cut by this window's edge: the whole image or an overlapping window holds it whole
                person = Person(keypoints=keypoints, visibility=visibility, mask=mask, world=world, problem=None)
                person = replace(person, problem=_problem(person, W, H, self.config))
                if self.config.mirror and person.problem is None:
                    view = work[top:top + h, left:left + w]
                    mirrored = self._mirrored(view, keypoints - (left, top), person.height_px)
                    if mirrored is not None:
                        person = replace(person, mirrored=(mirrored[0] + (left, top), mirrored[1]))
                people.append(person)
                # paint the person out: its mask and landmark box, grown by a tenth of its height
                box = np.zeros((H, W), bool)
                seen = keypoints[visibility > 0.3]
                if len(seen):
                    x0, y0 = np.clip(np.floor(seen.min(0)).astype(int), 0, [W - 1, H - 1])
                    x1, y1 = np.clip(np.ceil(seen.max(0)).astype(int), 0, [W - 1, H - 1])
                    box[y0:y1 + 1, x0:x1 + 1] = True
                region = distance_transform_edt(~(mask | box)) <= max(2, int(0.1 * person.height_px))
                taken |= region
                work[region] = 127
        return people

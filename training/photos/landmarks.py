"""BlazePose's 33 landmarks mapped onto an SMPL-format body: a joint where the landmark is a joint, else a surface
point (nose, eyes, ears, mouth, heels, toes) found on the body's own rest-pose template, each then moved by a
calibrated offset that rides on a bone.

The surface points are picked geometrically from the template (body frame: Y up, facing +Z, left = +X) and its part
labels, so the same rule serves the free body and SMPL: e.g. the nose is the most forward head vertex on the
mid-plane, a heel the rearmost vertex near the sole. Each point is the mean of a few vertices, which keeps it stable
across meshes of different density. The finger landmarks (pinky, index, thumb) ride on the hand joint: the body's
hands do not articulate fingers, but the three points turn the hand (on synthetic people they raised the hands'
and wrists' part IoU).

BlazePose's landmarks are not our joints: its shoulder and hip landmarks are surface points, its ears sit forward of
the head's widest point, and so on, a few pixels off in a consistent way. So each landmark point is the joint (or
surface point) plus an offset fixed in the rest frame of a bone (the joint's parent bone, the hand for the fingers,
the head for face points, the ankle for heel and toe) and moved with it. The offsets, `OFFSETS_MM`, are estimated by calibrate.py on synthetic
people whose bodies are known (seed 0, never the measurement's held-out images), mirrored left to right.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from neural.body import BodyModel, PosedBody
from neural.skeleton import JOINT_NAMES, PARENTS

# MediaPipe Pose landmark order (33)
LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
JOINT_LANDMARKS = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                   "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
# the fingers' landmarks ride on the hand joint (our hands are mittens: no finger joints to place them on)
HAND_LANDMARKS = ("left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb")
SURFACE_LANDMARKS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "mouth_left", "mouth_right",
                     "left_heel", "right_heel", "left_foot_index", "right_foot_index")
USED = JOINT_LANDMARKS + HAND_LANDMARKS + SURFACE_LANDMARKS
# relative trust: face and finger points are many and close together
WEIGHTS = {**{n: 1.0 for n in USED}, **{n: 0.3 for n in ("left_eye", "right_eye", "mouth_left", "mouth_right",
                                                          *HAND_LANDMARKS)}}
_NEAREST = 4  # vertices averaged per surface point
# `python -m training.photos.calibrate --data SYNTH` (64 images of `python -m training synth --seed 0`): where
# BlazePose puts each landmark, in mm from our point in its bone's rest frame (X = the body's left, Y up, Z
# forwards), given for the left side or the mid-line (no X); the right side mirrors X
OFFSETS_MM: dict[str, tuple[float, float, float]] = {
    "left_shoulder": (-7.5, 18.6, 3.5), "left_elbow": (-8.4, 3.8, 1.8), "left_wrist": (15.8, -1.2, 5.4),
    "left_hip": (-16.9, -1.3, 28.0), "left_knee": (-7.7, -12.4, 4.4), "left_ankle": (-3.2, 27.4, 2.4),
    "left_pinky": (-8.3, -6.0, -3.6), "left_index": (-6.2, -16.2, 16.3), "left_thumb": (-31.2, -19.3, 20.8),
    "nose": (0.0, 7.9, -9.8), "left_eye": (-9.2, -7.4, -11.8), "left_ear": (-38.7, 5.2, 44.2),
    "mouth_left": (-0.9, 1.2, -11.8), "left_heel": (-5.0, 16.2, 13.4), "left_foot_index": (1.1, 12.5, -16.0),
}


@dataclass(frozen=True)
class LandmarkMap:
    """Where each used landmark lives on a body. indices: (L,) into LANDMARK_NAMES; joints: (L,) joint index or -1;
    vertices: (L, k) vertex ids averaged for surface points (ignored for joints); weights: (L,); frames: (L,) the
    joint whose rotation carries the offset; offsets: (L, 3) metres in that joint's rest frame."""

    indices: np.ndarray
    joints: np.ndarray
    vertices: np.ndarray
    weights: np.ndarray
    frames: np.ndarray
    offsets: np.ndarray

    def on_subset(self, ids: np.ndarray) -> LandmarkMap:
        """The same map on a body reduced to vertices `ids` (fit.py's reduced_body): vertex ids renumbered."""
        position = {int(v): i for i, v in enumerate(ids)}
        return replace(self, vertices=np.vectorize(lambda v: position.get(int(v), 0))(self.vertices))

    def points(self, posed: PosedBody) -> Tensor:
        """(B, L, 3) the landmarks on posed bodies, body frame."""
        surface = posed.vertices[:, torch.as_tensor(self.vertices.reshape(-1))]
        surface = surface.unflatten(1, self.vertices.shape).mean(2)                   # (B, L, 3)
        joints = posed.joints[:, torch.as_tensor(np.maximum(self.joints, 0))]
        is_joint = torch.as_tensor(self.joints >= 0, device=surface.device)[None, :, None]
        rotation = posed.transforms[:, torch.as_tensor(self.frames), :3, :3]          # (B, L, 3, 3)
        offsets = torch.as_tensor(self.offsets, dtype=rotation.dtype, device=rotation.device)
        return torch.where(is_joint, joints, surface) + torch.einsum("blij,lj->bli", rotation, offsets)


def _pick(template: np.ndarray, candidates: np.ndarray, score: np.ndarray, what: str) -> np.ndarray:
    """The _NEAREST candidate vertices with the highest score."""
    if candidates.sum() < _NEAREST:
        raise ValueError(f"body template: found no vertices for the {what} landmark (is it an SMPL-format body with "
                         "a head and feet, Y up, facing +Z?)")
    ids = np.nonzero(candidates)[0]
    return ids[np.argsort(-score[ids])[:_NEAREST]]


def surface_vertices(body: BodyModel) -> dict[str, np.ndarray]:
    """Landmark name → (k,) vertex ids on the body's rest-pose template."""
    with torch.no_grad():
        t = body.template.double().cpu().numpy()
        rest_joints = body().joints[0].double().cpu().numpy()
    parts = body.parts.cpu().numpy() - 2
    x, y, z = t.T
    head = parts == JOINT_NAMES.index("head")
    head_x = np.abs(x - rest_joints[15, 0])
    nose = _pick(t, head & (head_x < 0.012), z, "nose")
    nose_y = t[nose, 1].mean()
    out = {"nose": nose}
    for side, sign in (("left", 1), ("right", -1)):
        eye_band = head & (np.abs(y - nose_y - 0.035) < 0.012) & (np.abs(sign * (x - rest_joints[15, 0]) - 0.032) < 0.01)
        out[f"{side}_eye"] = _pick(t, eye_band, z, f"{side} eye")
        ear_band = head & (np.abs(y - nose_y - 0.01) < 0.02) & (np.abs(z - rest_joints[15, 2]) < 0.03)
        out[f"{side}_ear"] = _pick(t, ear_band, sign * x, f"{side} ear")
        mouth_band = head & (np.abs(y - nose_y + 0.035) < 0.012) & (np.abs(sign * (x - rest_joints[15, 0]) - 0.024) < 0.008)
        out[f"mouth_{side}"] = _pick(t, mouth_band, z, f"mouth {side}")
        foot = np.isin(parts, [JOINT_NAMES.index(f"{side}_ankle"), JOINT_NAMES.index(f"{side}_foot")])
        sole = foot & (y < t[foot, 1].min() + 0.03)
        out[f"{side}_heel"] = _pick(t, sole, -z, f"{side} heel")
        out[f"{side}_foot_index"] = _pick(t, foot & (y < t[foot, 1].min() + 0.04), z, f"{side} toe")
    return out


def offset_key(name: str) -> tuple[str, float]:
    """The OFFSETS_MM key of a landmark and the sign of its X: right-side landmarks mirror the left's, and the
    mid-line's (the nose) have none."""
    if "left" not in name and "right" not in name:
        return name, 0.0
    return name.replace("right", "left"), -1.0 if "right" in name else 1.0


def _hand(name: str) -> int:
    return JOINT_NAMES.index(name.split("_")[0] + "_hand")


def frame_joint(name: str) -> int:
    """The joint whose rotation carries a landmark's offset: the parent bone of a joint landmark (the shoulder
    landmark rides on the collar, the elbow on the upper arm), the hand joint for the fingers, the head for face
    points, the ankle for the foot's."""
    if name in JOINT_LANDMARKS:
        return PARENTS[JOINT_NAMES.index(name)]
    if name in HAND_LANDMARKS:
        return _hand(name)
    if name.endswith(("heel", "foot_index")):
        return JOINT_NAMES.index(name.split("_")[0] + "_ankle")
    return JOINT_NAMES.index("head")


def landmark_map(body: BodyModel, offsets_mm: dict[str, tuple[float, float, float]] | None = None) -> LandmarkMap:
    """The LandmarkMap of the used landmarks (USED: joints, fingers, surface points) on `body`, moved by
    `offsets_mm` (default OFFSETS_MM; {} for the uncalibrated joints and surface points)."""
    offsets_mm = OFFSETS_MM if offsets_mm is None else offsets_mm
    surface = surface_vertices(body)
    joints = [JOINT_NAMES.index(n) for n in JOINT_LANDMARKS] + [_hand(n) for n in HAND_LANDMARKS] \
        + [-1] * len(SURFACE_LANDMARKS)
    verts = [np.full(_NEAREST, surface["nose"][0])] * (len(JOINT_LANDMARKS) + len(HAND_LANDMARKS)) \
        + [surface[n] for n in SURFACE_LANDMARKS]
    offsets = []
    for n in USED:
        key, sign = offset_key(n)
        offsets.append(np.multiply(offsets_mm.get(key, (0.0, 0.0, 0.0)), (sign, 1.0, 1.0)) / 1000)
    return LandmarkMap(indices=np.array([LANDMARK_NAMES.index(n) for n in USED]), joints=np.array(joints),
                       vertices=np.stack(verts).astype(np.int64), weights=np.array([WEIGHTS[n] for n in USED]),
                       frames=np.array([frame_joint(n) for n in USED]), offsets=np.stack(offsets))

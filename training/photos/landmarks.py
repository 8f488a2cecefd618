"""BlazePose's 33 landmarks mapped onto an SMPL-format body: a joint where the landmark is a joint, else a surface
point (nose, eyes, ears, mouth, heels, toes) found on the body's own rest-pose template.

The surface points are picked geometrically from the template (body frame: Y up, facing +Z, left = +X) and its part
labels, so the same rule serves the free body and SMPL: e.g. the nose is the most forward head vertex on the
mid-plane, a heel the rearmost vertex near the sole. Each point is the mean of a few vertices, which keeps it stable
across meshes of different density. Finger landmarks (pinky, index, thumb) are left out: the body's hands do not
articulate fingers, and the wrist landmark already places the hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neural.body import BodyModel, PosedBody
from neural.skeleton import JOINT_NAMES

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
SURFACE_LANDMARKS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "mouth_left", "mouth_right",
                     "left_heel", "right_heel", "left_foot_index", "right_foot_index")
USED = JOINT_LANDMARKS + SURFACE_LANDMARKS
# relative trust: BlazePose's hip landmarks sit outside the SMPL hip joints, and face points are many and close
WEIGHTS = {**{n: 1.0 for n in USED}, "left_hip": 0.5, "right_hip": 0.5,
           **{n: 0.3 for n in ("left_eye", "right_eye", "mouth_left", "mouth_right")}}
_NEAREST = 4  # vertices averaged per surface point


@dataclass(frozen=True)
class LandmarkMap:
    """Where each used landmark lives on a body. indices: (L,) into LANDMARK_NAMES; joints: (L,) joint index or -1;
    vertices: (L, k) vertex ids averaged for surface points (ignored for joints); weights: (L,)."""

    indices: np.ndarray
    joints: np.ndarray
    vertices: np.ndarray
    weights: np.ndarray

    def on_subset(self, ids: np.ndarray) -> LandmarkMap:
        """The same map on a body reduced to vertices `ids` (fit.py's reduced_body): vertex ids renumbered."""
        position = {int(v): i for i, v in enumerate(ids)}
        return LandmarkMap(indices=self.indices, joints=self.joints, weights=self.weights,
                           vertices=np.vectorize(lambda v: position.get(int(v), 0))(self.vertices))

    def points(self, posed: PosedBody) -> Tensor:
        """(B, L, 3) the landmarks on posed bodies, body frame."""
        surface = posed.vertices[:, torch.as_tensor(self.vertices.reshape(-1))]
        surface = surface.unflatten(1, self.vertices.shape).mean(2)                   # (B, L, 3)
        joints = posed.joints[:, torch.as_tensor(np.maximum(self.joints, 0))]
        is_joint = torch.as_tensor(self.joints >= 0, device=surface.device)[None, :, None]
        return torch.where(is_joint, joints, surface)


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


def landmark_map(body: BodyModel) -> LandmarkMap:
    """The LandmarkMap of the used landmarks (JOINT_LANDMARKS, then SURFACE_LANDMARKS) on `body`."""
    surface = surface_vertices(body)
    joints = [JOINT_NAMES.index(n) for n in JOINT_LANDMARKS] + [-1] * len(SURFACE_LANDMARKS)
    verts = [np.full(_NEAREST, surface["nose"][0])] * len(JOINT_LANDMARKS) + [surface[n] for n in SURFACE_LANDMARKS]
    return LandmarkMap(indices=np.array([LANDMARK_NAMES.index(n) for n in USED]), joints=np.array(joints),
                       vertices=np.stack(verts).astype(np.int64), weights=np.array([WEIGHTS[n] for n in USED]))

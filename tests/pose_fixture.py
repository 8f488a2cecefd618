"""The official golden fixture (official_fixture.py) as inputs of the pose mapping network: its weights under our
names, its body as a PoseCondition, and its render camera as our Camera
(docs/official_conventions.md §Golden fixture, §Generator frame, §Forward pass)."""

import numpy as np
import torch

from neural.camera import Camera
from neural.pose_mapping import OFFICIAL_PREFIXES, PoseCondition


def tensor(fixture: dict[str, np.ndarray], key: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(fixture[key]))


def pose_state(fixture: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """`neural_field.*` → `field.*`, `neural_field_mapping_network.*` → `mlp.*`, plus the injected truncation means."""
    out = {}
    for key, value in fixture.items():
        for official, ours in OFFICIAL_PREFIXES.items():
            if key.startswith("sd/" + official):
                out[ours + key[3 + len(official):]] = torch.from_numpy(value)
    out["freq_avg"] = tensor(fixture, "in/avg_freq")[0]
    out["phase_avg"] = tensor(fixture, "in/avg_phase")[0]
    return out


def body(fixture: dict[str, np.ndarray]) -> PoseCondition:
    """The fixture's bodies; its `tpose_vertices` hold v_template with y + 0.35, which our template does not."""
    return PoseCondition(vertices=tensor(fixture, "in/vertices"), joints=tensor(fixture, "in/skeletons_xyz"),
                         transforms=tensor(fixture, "in/fk_matrices"), weights=tensor(fixture, "in/lbs_weights")[0],
                         template=tensor(fixture, "in/tpose_vertices")[0] - torch.tensor([0.0, 0.35, 0.0]))


def camera(fixture: dict[str, np.ndarray], width: int = 8, height: int = 16) -> Camera:
    """The official render grid x = linspace(−w/h, w/h, w), y = linspace(−1, 1, h) on the plane z = f, in pixels:
    fx = f·h·(w − 1)/(2w) (= f·(w − 1) for 2:1 maps), fy = f·(h − 1)/2, principal point at the centre."""
    f = float(fixture["in/intrinsics"][0, 0, 0])
    K = torch.tensor([[f * height * (width - 1) / (2 * width), 0.0, (width - 1) / 2],
                      [0.0, f * (height - 1) / 2, (height - 1) / 2], [0.0, 0.0, 1.0]])
    cam2world = tensor(fixture, "in/cam2world_matrices")
    return Camera(K=K.expand(len(cam2world), 3, 3).clone(), world_to_camera=torch.linalg.inv(cam2world),
                  width=width, height=height)


def jitter(fixture: dict[str, np.ndarray]) -> torch.Tensor:
    return tensor(fixture, "in/ray_jitter_u")[..., 0]  # (B, rays, S)

"""The official generator's golden fixture (`data/official_fixture_small.npz`, described in
docs/official_conventions.md §Golden fixture): a reduced MAP3DBN512L (width 32, style map 16×8, image 64×32,
isolated pose styles, SPADE hidden 128) with random but non-trivial weights, run unmodified on CPU. These helpers
map its keys onto ours with the importer's own renames (`neural.official.our_key`) and rebuild its inputs as our
body-frame PosedBody and OpenCV Camera. `data/state_dict_*.tsv` are the official key/shape manifests."""

from pathlib import Path

import numpy as np
import torch

from neural.config import GeneratorConfig
from neural.official import our_key

PATH = Path(__file__).parent / "data" / "official_fixture_small.npz"

CONFIG = GeneratorConfig(
    height=64, width=32, render_height=16, render_width=8, latent_dim=32, hidden_dim=32, feature_dim=32,
    num_samples=4, spade_hidden=128, pose_mode="isolated", feature_order="legacy",
)


def load() -> dict[str, np.ndarray]:
    with np.load(PATH) as data:
        return {k: data[k] for k in data.files}


def _state(fixture: dict[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in fixture.items():
        ours = our_key(key[3:]) if key.startswith("sd/") else None
        if ours is not None and ours.startswith(prefix):
            out[ours[len(prefix):]] = torch.from_numpy(np.asarray(value))
    return out


def backbone_state(fixture: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The fixture's backbone weights under `Backbone` keys."""
    return _state(fixture, "backbone.")


def appearance_state(fixture: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The fixture's appearance mapping under `AppearanceMapping` keys, with its truncation mean."""
    out = _state(fixture, "appearance.")
    out["w_avg"] = torch.from_numpy(fixture["in/avg_w"]).reshape(-1)
    return out


def manifest(name: str) -> dict[str, tuple[int, ...]]:
    """`data/state_dict_<name>.tsv` (official key → shape) for MAP3DBN or MAP3DBN512L."""
    rows = (Path(__file__).parent / "data" / f"state_dict_{name}.tsv").read_text().splitlines()[1:]
    out = {}
    for row in rows:
        key, shape = row.split("\t")[:2]
        out[key] = () if shape == "scalar" else tuple(int(n) for n in shape.split("x"))
    return out


def generator_state(fixture: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """All official keys the Generator uses → its keys, truncation means from `in/avg_*`."""
    out = _state(fixture, "")
    out["appearance.w_avg"] = torch.from_numpy(fixture["in/avg_w"]).reshape(-1)
    out["pose_mapping.freq_avg"] = torch.from_numpy(fixture["in/avg_freq"]).reshape(-1)
    out["pose_mapping.phase_avg"] = torch.from_numpy(fixture["in/avg_phase"]).reshape(-1)
    return out


def posed_body_and_camera(fixture: dict[str, np.ndarray], transl: torch.Tensor):
    """The fixture's two bodies and cameras moved out of the official generator frame into our body frame (the
    inverse of `pose_mapping.condition`, with the given root translation (B, 3)), and its camera as an OpenCV
    camera at the output resolution, so that the Generator's own canonicalisation must undo both exactly."""
    from neural.body import PosedBody
    from neural.camera import Camera

    t = {k: torch.from_numpy(fixture[k]).double() for k in
         ("in/cano_matrices", "in/fk_matrices", "in/vertices", "in/skeletons_xyz", "in/lbs_weights",
          "in/tpose_vertices", "in/full_pose", "in/cam2world_matrices", "in/intrinsics")}
    transl = transl.double()
    B = transl.shape[0]
    rotation = t["in/cano_matrices"][:, :3, :3]
    to_gen = torch.eye(4, dtype=torch.float64).repeat(B, 1, 1)  # body → generator frame: R·(p − transl)
    to_gen[:, :3, :3] = rotation
    to_gen[:, :3, 3] = -(rotation @ transl[..., None])[..., 0]
    to_body = torch.linalg.inv(to_gen)

    def apply(m, p):
        return p @ m[:, :3, :3].transpose(1, 2) + m[:, None, :3, 3]

    weights = t["in/lbs_weights"][0]
    blended = torch.einsum("vk,bkij->bvij", weights, t["in/fk_matrices"])
    shaped = torch.linalg.solve(blended[..., :3, :3], (t["in/vertices"] - blended[..., :3, 3])[..., None])[..., 0]
    template = t["in/tpose_vertices"][0] - torch.tensor([0.0, 0.35, 0.0], dtype=torch.float64)
    body = PosedBody(
        vertices=apply(to_body, t["in/vertices"]).float(), joints=apply(to_body, t["in/skeletons_xyz"]).float(),
        transforms=(to_body[:, None] @ t["in/fk_matrices"]).float(), shaped=shaped.float(),
        root_rotation=t["in/full_pose"][:, 0].float(), transl=transl.float(), weights=weights.float(),
        faces=torch.zeros(0, 3, dtype=torch.int64), parts=torch.full((len(weights),), 2, dtype=torch.int64),
        template=template.float())
    # Official rays: direction ∝ (linspace(−½, ½, w)[col], linspace(−1, 1, h)[row], f) at the render size.
    h, w, f = CONFIG.render_height, CONFIG.render_width, t["in/intrinsics"][:, 0, 0]
    K = torch.zeros(B, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1] = f * (w - 1), f * (h - 1) / 2
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = (w - 1) / 2, (h - 1) / 2, 1
    world_to_camera = torch.linalg.inv(t["in/cam2world_matrices"]) @ to_gen
    render = Camera(K=K, world_to_camera=world_to_camera, width=w, height=h)
    return body, render.resized(CONFIG.width, CONFIG.height).to(dtype=torch.float32)

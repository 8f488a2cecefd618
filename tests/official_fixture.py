"""The official generator's golden fixture (`data/official_fixture_small.npz`, a copy of
shared/official/fixture_small.npz; README §7 there): a reduced MAP3DBN512L (width 32, style map 16×8, image 64×32,
isolated pose styles, SPADE hidden 128) with random but non-trivial weights, run unmodified on CPU. These helpers
map its appearance-mapping and backbone keys onto ours (the same renames the importer makes)."""

import re
from pathlib import Path

import numpy as np
import torch

from neural.config import GeneratorConfig

PATH = Path(__file__).parent / "data" / "official_fixture_small.npz"

CONFIG = GeneratorConfig(
    height=64, width=32, render_height=16, render_width=8, latent_dim=32, hidden_dim=32, feature_dim=32,
    num_samples=4, spade_hidden=128, pose_mode="isolated", feature_order="legacy",
)


def load() -> dict[str, np.ndarray]:
    with np.load(PATH) as data:
        return {k: data[k] for k in data.files}


def backbone_state(fixture: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Official `synthesis_input.*` and `synthesis_network.*` → `Backbone` keys (unused ToRGB 0–2 dropped)."""
    out = {}
    for key, value in fixture.items():
        if not key.startswith(("sd/synthesis_input.", "sd/synthesis_network.")):
            continue
        k = key[3:].replace("synthesis_input.network.0", "coord_input")
        k = re.sub(r"synthesis_network\.network\.m3d_(\d+)", r"blocks.\1", k)
        k = re.sub(r"synthesis_network\.to_rgbs\.m3d_(\d+)\.linear", r"to_rgb.\1", k)
        k = k.replace("first_norm", "norm").replace("mlp_shared.0", "shared")
        k = k.replace("mlp_gamma", "gamma").replace("mlp_beta", "beta")
        if re.match(r"to_rgb\.[012]\.", k):
            continue
        out[k] = torch.from_numpy(np.asarray(value))
    return out


def appearance_state(fixture: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Official `synthesis_mapping_network.trunk0..6, superres0` → `AppearanceMapping.layers.0..7` + `w_avg`."""
    names = [f"trunk{i}" for i in range(7)] + ["superres0"]
    out = {f"layers.{i}.{p}": torch.from_numpy(fixture[f"sd/synthesis_mapping_network.{n}.{p}"])
           for i, n in enumerate(names) for p in ("weight", "bias")}
    out["w_avg"] = torch.from_numpy(fixture["in/avg_w"]).reshape(-1)
    return out

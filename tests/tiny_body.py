"""A tiny SMPL-format body for renderer tests: one box per joint (8 vertices, 12 triangles) at SMPL-like rest
joint positions (body frame: metres, Y up, faces +Z), rigidly skinned to its joint, plus one unused marker vertex
per joint that the joint regressor picks exactly. 216 vertices: rasterises and renders in milliseconds."""

import numpy as np

from neural.skeleton import PARENTS

JOINTS = np.array([
    (0, 0, 0), (0.06, -0.09, 0), (-0.06, -0.09, 0), (0, 0.11, -0.02), (0.1, -0.47, 0), (-0.1, -0.47, 0),
    (0, 0.25, 0), (0.09, -0.87, -0.04), (-0.09, -0.87, -0.04), (0, 0.31, 0.02), (0.11, -0.93, 0.08),
    (-0.11, -0.93, 0.08), (0, 0.52, -0.02), (0.07, 0.44, -0.01), (-0.07, 0.44, -0.01), (0, 0.6, 0.03),
    (0.18, 0.47, -0.02), (-0.18, 0.47, -0.02), (0.43, 0.47, -0.04), (-0.43, 0.47, -0.04), (0.68, 0.47, -0.04),
    (-0.68, 0.47, -0.04), (0.77, 0.47, -0.05), (-0.77, 0.47, -0.05)], dtype=np.float64)
_CORNERS = np.array([(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
_BOX_FACES = np.array([(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
                       (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)])


def box_body_arrays(num_betas: int = 2) -> dict[str, np.ndarray]:
    children = {k: [c for c in range(24) if PARENTS[c] == k] for k in range(24)}
    centres, halves = [], []
    for k in range(24):
        end = JOINTS[children[k][0]] if children[k] else JOINTS[k] + (0, 0.12 if k == 15 else 0.04, 0)
        centres.append(0.5 * (JOINTS[k] + end))
        halves.append(np.maximum(np.abs(end - JOINTS[k]) / 2, 0.08))
    box_vertices = np.concatenate([c + _CORNERS * h for c, h in zip(centres, halves)])            # (192, 3)
    v_template = np.concatenate([JOINTS, box_vertices])                                          # (216, 3)
    V = len(v_template)
    owner = np.concatenate([np.arange(24), np.repeat(np.arange(24), 8)])
    weights = np.eye(24)[owner]
    J_regressor = np.zeros((24, V))
    J_regressor[np.arange(24), np.arange(24)] = 1.0
    faces = np.concatenate([24 + 8 * k + _BOX_FACES for k in range(24)])
    shapedirs = np.zeros((V, 3, num_betas))
    shapedirs[:, 1, 0] = 0.05 * v_template[:, 1]                                                 # taller
    if num_betas > 1:
        shapedirs[:, 0, 1] = 0.05 * v_template[:, 0]                                             # wider
    kintree = np.array([[-1, *PARENTS[1:]], range(24)], dtype=np.int64)
    return {"v_template": v_template, "f": faces.astype(np.int64), "weights": weights, "J_regressor": J_regressor,
            "kintree_table": kintree, "shapedirs": shapedirs, "posedirs": np.zeros((V, 3, 207))}


def write_box_body(path, scale: float = 1.0) -> str:
    """Save the box body as an SMPL-format .npz; `scale` changes the template (and so the fingerprint)."""
    arrays = box_body_arrays()
    arrays["v_template"] = arrays["v_template"] * scale
    np.savez(path, **arrays)
    return str(path)


def write_tiny_model(folder):
    """The box body and a tiny-preset generator with realistic random weights made for it: (model path, body path)."""
    import torch

    from neural import checkpoint
    from commands.bench import realistic_weights_
    from neural.body import BodyModel
    from neural.config import preset
    from neural.generator import Generator

    body_path = write_box_body(folder / "box_body.npz")
    torch.manual_seed(0)
    generator = Generator(preset("tiny")).eval()
    realistic_weights_(generator)
    model_path = folder / "tiny.safetensors"
    checkpoint.save(model_path, generator, body_fingerprint=BodyModel.load(body_path).fingerprint, step=0)
    return model_path, body_path

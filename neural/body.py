"""SMPL-format body model: load a body file and pose it with linear blend skinning (LBS).

3DHumanGAN (paper §3.1, Fig. 2) conditions the generator on an SMPL body: posed vertices give the
geometry features of the pose mapping network, and the skinning transforms let it carry sample points back
to the template ("inverse LBS"). This file is our own LBS, written from the SMPL paper's equations
(Loper et al. 2015, eq. 1-4), so any body file in the SMPL format works: the official SMPL (converted from
its .pkl with `python -m neural body convert`) or the project's free body `neural/assets/free_body.npz`.

Body file (.npz, loaded with allow_pickle=False):
    v_template (V, 3)  shapedirs (V, 3, nb)  weights (V, 24)  J_regressor (24, V)  f (F, 3)  kintree_table (2, 24)
    posedirs   (V, 3, 207)  - the layout of the official SMPL files, or
               (207, V*3)   - the flattened layout smplx keeps in memory; both give the same offsets.
    parts      (V,) optional part labels 2..25; by default the dominant skinning joint + 2.

Frames: docs/conventions.md §Body frame (metres, Y up, the subject faces +Z, subject's left = +X).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .skeleton import NUM_JOINTS, PARENTS

NUM_POSE_BASIS = 9 * (NUM_JOINTS - 1)  # one (R - I) per non-root joint
REQUIRED_KEYS = ("v_template", "f", "weights", "J_regressor", "kintree_table", "shapedirs", "posedirs")


def free_body_path() -> Path:
    """The body shipped with the project (free licence), `neural/assets/free_body.npz`."""
    return Path(__file__).resolve().parent / "assets" / "free_body.npz"


@dataclass(frozen=True)
class PosedBody:
    """A batch of posed bodies in the body frame (metres). B batch, V vertices, J = 24 joints.

    Skinning: vertices[b, v] = Σ_k weights[v, k] · transforms[b, k] @ [rest_posed[b, v]; 1], where
    rest_posed = shaped + pose blend shapes. Inverting the blended 4×4 maps a posed point back to rest.
    """

    vertices: Tensor  # (B, V, 3) posed, transl included
    joints: Tensor  # (B, J, 3) posed joints, transl included
    transforms: Tensor  # (B, J, 4, 4) skinning transforms, transl included
    shaped: Tensor  # (B, V, 3) T-pose with betas applied, no pose blend shapes
    root_rotation: Tensor  # (B, 3, 3) global orientation
    transl: Tensor  # (B, 3)
    weights: Tensor  # (V, J)
    faces: Tensor  # (F, 3) int64
    parts: Tensor  # (V,) int64 labels 2..25
    template: Tensor  # (V, 3) v_template


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues' formula: (..., 3) axis-angle → (..., 3, 3). Exact and differentiable at zero rotation."""
    r = axis_angle
    theta2 = (r * r).sum(-1, keepdim=True)
    small = theta2 < 1e-8  # below θ = 1e-4 the series is exact to float64; sqrt'(0) would give NaN gradients
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = safe2.sqrt()
    # R = I + a K + b K², K = skew(r) unnormalised; b = (1 - cos θ)/θ² as 2 sin²(θ/2)/θ², free of cancellation
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, 2 * torch.sin(theta / 2) ** 2 / safe2)
    x, y, z = r.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).unflatten(-1, (3, 3))
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    return eye + a[..., None] * K + b[..., None] * (K @ K)


def _fingerprint(v_template: np.ndarray) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(v_template, dtype="<f4").tobytes()).hexdigest()
    return f"V{len(v_template)}-{digest[:12]}"


def _check_arrays(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Shapes and values of a body file's arrays; returns them normalised (posedirs as (207, V*3))."""

    def fail(key: str, message: str) -> None:
        raise ValueError(f"body file {source}: key '{key}' {message}")

    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"body file {source} lacks keys {missing} (has {sorted(arrays)}); an SMPL-format "
                         f"body needs {list(REQUIRED_KEYS)}. Convert an official SMPL .pkl with "
                         "`python -m neural body convert SRC.pkl DST.npz`.")
    out = {k: np.asarray(arrays[k]) for k in REQUIRED_KEYS}
    v_template = out["v_template"]
    if v_template.ndim != 2 or v_template.shape[1] != 3 or len(v_template) < 1:
        fail("v_template", f"has shape {v_template.shape}; expected (V, 3)")
    V = len(v_template)
    expected = {"weights": (V, NUM_JOINTS), "J_regressor": (NUM_JOINTS, V), "kintree_table": (2, NUM_JOINTS)}
    for key, shape in expected.items():
        if out[key].shape != shape:
            hint = f" (the body has {NUM_JOINTS} SMPL joints)" if key != "kintree_table" else ""
            fail(key, f"has shape {out[key].shape}; expected {shape} for V={V}{hint}")
    faces = out["f"]
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        fail("f", f"has shape {faces.shape} and dtype {faces.dtype}; expected integer triangles (F, 3)")
    if faces.size and (faces.min() < 0 or faces.max() >= V):
        fail("f", f"indexes vertices {faces.min()}..{faces.max()}; the body has V={V}")
    shapedirs = out["shapedirs"]
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (V, 3):
        fail("shapedirs", f"has shape {shapedirs.shape}; expected (V, 3, num_betas) with V={V}")
    posedirs = out["posedirs"]
    if posedirs.shape == (V, 3, NUM_POSE_BASIS):
        out["posedirs"] = posedirs.reshape(V * 3, NUM_POSE_BASIS).T
    elif posedirs.shape != (NUM_POSE_BASIS, V * 3):
        fail("posedirs", f"has shape {posedirs.shape}; expected ({V}, 3, {NUM_POSE_BASIS}) (SMPL files) "
             f"or ({NUM_POSE_BASIS}, {V * 3}) (flattened)")
    for key in ("v_template", "weights", "J_regressor", "shapedirs", "posedirs"):
        if not np.issubdtype(out[key].dtype, np.floating) and not np.issubdtype(out[key].dtype, np.integer):
            fail(key, f"has dtype {out[key].dtype}; expected numbers")
        if not np.isfinite(out[key]).all():
            fail(key, "holds NaN or inf values")
    sums = out["weights"].sum(1)
    if np.abs(sums - 1).max() > 1e-3:
        worst = int(np.abs(sums - 1).argmax())
        fail("weights", f"row {worst} sums to {sums[worst]:.4f}; skinning weights of each vertex must sum to 1")
    parents = [int(p) for p in out["kintree_table"][0, 1:]]
    if parents != list(PARENTS[1:]):
        fail("kintree_table", f"row 0 gives parents {parents}; the SMPL kinematic tree is {list(PARENTS[1:])}")
    if "parts" in arrays:
        parts = np.asarray(arrays["parts"])
        if parts.shape != (V,) or not np.issubdtype(parts.dtype, np.integer):
            fail("parts", f"has shape {parts.shape} and dtype {parts.dtype}; expected integer labels (V,)")
        if parts.min() < 2 or parts.max() > NUM_JOINTS + 1:
            fail("parts", f"holds labels {parts.min()}..{parts.max()}; expected 2..{NUM_JOINTS + 1}")
        out["parts"] = parts
    else:
        out["parts"] = out["weights"].argmax(1) + 2
    return out


class BodyModel(torch.nn.Module):
    """An SMPL-format body: shape blend shapes, pose blend shapes, 24-joint skeleton, LBS.

    Buffers follow `.to(device)` and `.to(dtype)`: the output's dtype and device are those of the buffers
    (`dtype`, float32 by default; float64 keeps a float64 file exact, for gradient checks). Inputs are moved
    to them.
    """

    def __init__(self, *, arrays: dict[str, np.ndarray], source: str = "<arrays>",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        a = _check_arrays(arrays, source)
        self.source = source
        self.fingerprint = _fingerprint(a["v_template"])
        self.num_vertices = len(a["v_template"])
        self.num_betas = a["shapedirs"].shape[2]
        self.register_buffer("template", torch.as_tensor(a["v_template"], dtype=dtype))
        self.register_buffer("shapedirs", torch.as_tensor(a["shapedirs"], dtype=dtype))  # (V, 3, nb)
        self.register_buffer("posedirs", torch.as_tensor(a["posedirs"], dtype=dtype))  # (207, V*3)
        self.register_buffer("J_regressor", torch.as_tensor(a["J_regressor"], dtype=dtype))  # (J, V)
        self.register_buffer("weights", torch.as_tensor(a["weights"], dtype=dtype))  # (V, J)
        self.register_buffer("faces", torch.as_tensor(a["f"].astype(np.int64)))  # (F, 3)
        self.register_buffer("parts", torch.as_tensor(a["parts"].astype(np.int64)))  # (V,)

    @classmethod
    def load(cls, path: str | Path, *, dtype: torch.dtype = torch.float32) -> BodyModel:
        """Read an SMPL-format .npz (never unpickles). ValueError naming the file and key on bad input."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"body file {path} does not exist")
        if path.suffix == ".pkl":
            raise ValueError(f"body file {path} is a pickle; convert it first (no chumpy needed): "
                             f"python -m neural body convert {path} {path.with_suffix('.npz')}")
        try:
            npz = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise ValueError(f"body file {path} is not a readable .npz: {error}") from error
        arrays = {}
        with npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as error:  # object arrays: a pickled sparse matrix or chumpy object
                    raise ValueError(f"body file {path}: key '{key}' holds pickled Python objects ({error}); "
                                     "store plain numeric arrays (the `convert` command does)") from error
        return cls(arrays=arrays, source=str(path), dtype=dtype)

    def extra_repr(self) -> str:
        return f"V={self.num_vertices}, num_betas={self.num_betas}, fingerprint={self.fingerprint}"

    def forward(self, betas: Tensor | None = None, pose: Tensor | None = None,
                transl: Tensor | None = None) -> PosedBody:
        """Pose the body.

        betas: (B, n) with n ≤ num_betas (missing columns are zero); pose: (B, 24, 3) axis-angle, root first,
        each joint relative to its parent (also (B, 72)); transl: (B, 3) body-frame metres. Any may be None
        (zeros); a batch of 1 broadcasts against the others.
        """
        ref = self.template
        betas = self._input("betas", betas, lambda B: (B, self.num_betas))
        pose = self._input("pose", pose, lambda B: (B, NUM_JOINTS, 3))
        transl = self._input("transl", transl, lambda B: (B, 3))
        B = max(betas.shape[0], pose.shape[0], transl.shape[0])
        for name, x in (("betas", betas), ("pose", pose), ("transl", transl)):
            if x.shape[0] not in (1, B):
                raise ValueError(f"{name} has batch {x.shape[0]}; the other inputs have batch {B} (or give 1)")
        betas, pose, transl = (x.expand(B, *x.shape[1:]) for x in (betas, pose, transl))
        V, nb = self.num_vertices, betas.shape[1]

        # Shape (SMPL eq. 2) and the rest joints regressed from the shaped mesh.
        shaped = ref + torch.einsum("bl,vcl->bvc", betas, self.shapedirs[:, :, :nb])
        rest_joints = torch.einsum("jv,bvc->bjc", self.J_regressor, shaped)

        # Pose blend shapes (eq. 4): linear in the entries of (R_k - I) of the 23 non-root joints.
        R = axis_angle_to_matrix(pose)  # (B, J, 3, 3)
        eye = torch.eye(3, dtype=R.dtype, device=R.device)
        pose_feature = (R[:, 1:] - eye).reshape(B, NUM_POSE_BASIS)
        rest_posed = shaped + (pose_feature @ self.posedirs).view(B, V, 3)

        # Forward kinematics: G_k = G_parent · [R_k | J_k - J_parent].
        parent_joints = torch.cat([torch.zeros_like(rest_joints[:, :1]), rest_joints[:, list(PARENTS[1:])]], 1)
        offsets = rest_joints - parent_joints
        local = _rigid(R, offsets)  # (B, J, 4, 4)
        chain = [local[:, 0]]
        for k in range(1, NUM_JOINTS):
            chain.append(chain[PARENTS[k]] @ local[:, k])
        G = torch.stack(chain, 1)
        joints = G[:, :, :3, 3] + transl[:, None]
        # Skinning transforms move rest-frame points: A_k = G_k · [I | -J_k], then the global translation.
        moved = G[:, :, :3, 3] - (G[:, :, :3, :3] @ rest_joints[..., None])[..., 0] + transl[:, None]
        transforms = _rigid(G[:, :, :3, :3], moved)

        blended = torch.einsum("vk,bkij->bvij", self.weights, transforms[:, :, :3])  # (B, V, 3, 4)
        vertices = torch.einsum("bvij,bvj->bvi", blended[..., :3], rest_posed) + blended[..., 3]
        return PosedBody(vertices=vertices, joints=joints, transforms=transforms, shaped=shaped,
                         root_rotation=R[:, 0], transl=transl, weights=self.weights, faces=self.faces,
                         parts=self.parts, template=self.template)

    def _input(self, name: str, x: Tensor | np.ndarray | None, shape) -> Tensor:
        """One forward input on the buffers' dtype and device, with its shape and values checked."""
        ref = self.template
        if x is None:
            return torch.zeros(shape(1), dtype=ref.dtype, device=ref.device)
        x = torch.as_tensor(x).to(device=ref.device, dtype=ref.dtype)
        if name == "pose" and x.ndim == 2 and x.shape[1] != 3 and x.shape[1] % 3 == 0:  # (B, 72) flat
            x = x.unflatten(1, (-1, 3))
        if name == "pose" and x.ndim == 3 and x.shape[2] == 3 and x.shape[1] != NUM_JOINTS:
            raise ValueError(
                f"pose has {x.shape[1]} joints; the body ({self.source}) has {NUM_JOINTS} SMPL joints. "
                "SMPL-H/SMPL-X body poses start with the same 22 joints: take pose[:, :22] and append two "
                "zero hand joints")
        if name == "betas" and x.ndim == 2 and x.shape[1] > self.num_betas:
            raise ValueError(f"betas has {x.shape[1]} columns; the body file {self.source} has "
                             f"{self.num_betas} shape components. Pass at most {self.num_betas} betas")
        expected = shape(x.shape[0] if x.ndim else 1)
        ok = x.ndim == len(expected) and (name == "betas" or x.shape[1:] == expected[1:])
        if not ok:
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected {_shape_text(name)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} holds NaN or inf values (first bad index "
                             f"{tuple(torch.nonzero(~torch.isfinite(x))[0].tolist())})")
        return x


def _shape_text(name: str) -> str:
    return {"betas": "(B, n) with n ≤ num_betas", "pose": f"(B, {NUM_JOINTS}, 3) axis-angle or (B, 72)",
            "transl": "(B, 3)"}[name]


def _rigid(rotation: Tensor, translation: Tensor) -> Tensor:
    """(..., 3, 3), (..., 3) → (..., 4, 4) homogeneous transforms."""
    top = torch.cat([rotation, translation[..., None]], -1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], -2)

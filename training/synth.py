"""`python -m training synth`: a synthetic photo collection with known ground truth
(docs/evaluation.md §Ground truth and bottleneck rows).

People made from the free body (any SMPL-format body works): random shapes, poses from the built-in motions
(training/motions.py) with perturbation, cameras orbiting the body and framed 2:1 by the renderer's own crop camera.
Clothing is procedural — top, bottom, shoes, hair, skin tone; plain, striped and checked fabrics — and its colour is
a pure function of the body surface: the part label and the rest-pose (template) coordinates of the surface point,
interpolated with barycentrics, times a shading term also fixed to the surface (the rest-pose normal against a
fixed light). So the same person seen from any camera, in any pose, has exactly consistent colours: the ground truth
of the view- and pose-consistency metrics. Each image is a pure function of (seed, index); `appearance.npz` keeps
every person's parameters so evaluation can re-render anyone from any camera (`render_people`).
"""

from __future__ import annotations

import colorsys
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from neural.body import BodyModel, PosedBody, free_body_path
from neural.camera import Camera, crop_camera
from neural.raster import interpolate, part_map, parts_seen, rasterize

from .data import DatasetWriter
from .memory import synth_batch
from .motions import sample_pose

SKIN = np.array([(0.98, 0.85, 0.74), (0.93, 0.76, 0.63), (0.85, 0.64, 0.50), (0.71, 0.50, 0.36),
                 (0.55, 0.37, 0.26), (0.38, 0.25, 0.18)])
HAIR = np.array([(0.08, 0.06, 0.05), (0.25, 0.16, 0.09), (0.45, 0.30, 0.16), (0.85, 0.70, 0.45),
                 (0.60, 0.25, 0.10), (0.70, 0.70, 0.70)])
PATTERNS = ("plain", "stripes", "checks")
# (field, width): every person's appearance is these arrays; colours are linear in [0, 1] (written as sRGB bytes)
FIELDS = {"skin": 3, "hair": 3, "hair_length": 1, "top": 6, "top_pattern": 1, "top_frequency": 1, "sleeve": 1,
          "bottom": 6, "bottom_pattern": 1, "bottom_frequency": 1, "trouser": 1, "shoes": 3, "shoe_height": 1}
LIGHT = (0.3, 0.8, 0.5)  # fixed in the rest pose: shading belongs to the surface, never to the view
MARGIN = 0.05


def _cloth(rng: np.random.Generator) -> np.ndarray:
    """Two colours of a fabric: a random base and a contrasting second colour."""
    h, s, v = rng.uniform(), rng.uniform(0.25, 0.9), rng.uniform(0.2, 0.95)
    second = rng.choice(3)
    if second == 0:
        h2, s2, v2 = (h + 0.5) % 1.0, s, 1.15 - v
    elif second == 1:
        h2, s2, v2 = h, 0.05, 0.97
    else:
        h2, s2, v2 = rng.uniform(), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.9)
    return np.array([*colorsys.hsv_to_rgb(h, s, v), *colorsys.hsv_to_rgb(h2, s2, min(v2, 1.0))])


def sample_appearance(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One person's clothing, hair and skin (FIELDS)."""
    blend = rng.uniform()
    k = rng.integers(len(SKIN) - 1)
    return {
        "skin": (1 - blend) * SKIN[k] + blend * SKIN[k + 1],
        "hair": HAIR[rng.integers(len(HAIR))] * rng.uniform(0.85, 1.1),
        "hair_length": np.array([rng.uniform()]),
        "top": _cloth(rng), "top_pattern": np.array([rng.integers(3)], float),
        "top_frequency": np.array([rng.uniform(5, 11)]),
        "sleeve": np.array([rng.choice([0.12, 0.45, 1.05]) + rng.uniform(-0.05, 0.05)]),
        "bottom": _cloth(rng), "bottom_pattern": np.array([rng.integers(3)], float),
        "bottom_frequency": np.array([rng.uniform(4, 9)]),
        "trouser": np.array([rng.choice([0.35, 0.6, 1.0]) + rng.uniform(-0.05, 0.05)]),
        "shoes": _cloth(rng)[:3] * 0.6, "shoe_height": np.array([rng.uniform(0.03, 0.12)]),
    }


def _pattern(rest: Tensor, colours: Tensor, kind: Tensor, frequency: Tensor) -> Tensor:
    """rest (B, N, 3); colours (B, 6); kind, frequency (B, 1) → (B, N, 3): plain, horizontal stripes or 3D checks."""
    f = frequency[:, None, :]
    stripes = torch.remainder(rest[..., 1:2] * f, 1.0) < 0.5
    checks = torch.remainder(torch.floor(rest * f).sum(-1, keepdim=True), 2.0) > 0.5
    second = torch.where(kind[:, None, :] == 1, stripes, torch.where(kind[:, None, :] == 2, checks, False))
    return torch.where(second, colours[:, None, 3:], colours[:, None, :3])


def surface_colour(parts: Tensor, rest: Tensor, appearance: dict[str, Tensor], rest_joints: Tensor) -> Tensor:
    """Colour of surface points (B, N, 3) in [0, 1] from their part labels (B, N) 2..25 and rest-pose coordinates
    (B, N, 3) (template, metres). rest_joints (24, 3): the template's joints. Pure function: no view, no pose."""
    j = parts - 2
    y = rest[..., 1]
    J = rest_joints
    a = {k: v[:, None, :] for k, v in appearance.items()}  # (B, 1, k)

    def among(*ids: int) -> Tensor:
        return torch.isin(j, torch.tensor(ids, device=j.device))

    ankle_y, hip_y, waist_y = J[[7, 8], 1].mean(), J[[1, 2], 1].mean(), 0.6 * J[0, 1] + 0.4 * J[3, 1]
    legs, arms = among(0, 1, 2, 4, 5, 7, 8, 10, 11), among(16, 17, 18, 19, 20, 21, 22, 23)
    shoe = legs & (y < ankle_y + a["shoe_height"][..., 0])
    hem = hip_y - a["trouser"][..., 0] * (hip_y - ankle_y)
    bottom = legs & ~shoe & (y > hem) & (y < waist_y)
    # position along the arm: 0 at the shoulder joint, 1 at the wrist, from the rest-pose arm axis
    left = among(16, 18, 20, 22)
    shoulder = torch.where(left[..., None], J[16], J[17])
    wrist = torch.where(left[..., None], J[20], J[21])
    axis = wrist - shoulder
    t = ((rest - shoulder) * axis).sum(-1) / axis.square().sum(-1)
    top = among(3, 6, 9, 13, 14) | (among(0) & (y >= waist_y)) | (arms & (t < a["sleeve"][..., 0]))
    head = J[15]
    back = ((head[2] - rest[..., 2]) / 0.06 + 0.5).clamp(0, 1)  # 0 at the face, 1 at the back of the head
    hair = among(15) & (y - head[1] > 0.07 - 0.14 * a["hair_length"][..., 0] * back)
    colour = a["skin"].expand(*j.shape, 3)
    colour = torch.where(hair[..., None], a["hair"], colour)
    colour = torch.where(shoe[..., None], a["shoes"], colour)
    top_c = _pattern(rest, appearance["top"], appearance["top_pattern"], appearance["top_frequency"])
    bottom_c = _pattern(rest, appearance["bottom"], appearance["bottom_pattern"], appearance["bottom_frequency"])
    colour = torch.where(top[..., None], top_c, colour)
    return torch.where(bottom[..., None], bottom_c, colour)


def vertex_shading(template: Tensor, faces: Tensor) -> Tensor:
    """(V,) shading factor from the rest-pose vertex normals against the fixed LIGHT, in [0.55, 1]."""
    tri = template[faces]
    face_n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = torch.zeros_like(template).index_add_(0, faces.reshape(-1), face_n.repeat_interleave(3, 0))
    lambert = F.normalize(normals, dim=-1) @ F.normalize(torch.tensor(LIGHT, dtype=template.dtype), dim=0)
    return 0.55 + 0.45 * (0.5 + 0.5 * lambert)


def render_people(posed: PosedBody, camera: Camera, appearance: dict[str, Tensor], rest_joints: Tensor, *,
                  supersample: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """Images of posed people: rgb (B, H, W, 3) in [0, 1] on white, coverage (B, H, W) in [0, 1], parts (B, H, W).

    camera at the output size, in the body frame; colours are rendered `supersample`² times per pixel and averaged
    (antialiasing); parts come from the pixel centres."""
    fine = camera.resized(camera.width * supersample, camera.height * supersample)
    frags = rasterize(posed.vertices, posed.faces, fine)
    B, H, W = frags.face_ids.shape
    hit = frags.mask.reshape(-1).nonzero()[:, 0]  # colour only the covered pixels (B·H·W flat indices)
    labels = part_map(frags, posed.faces, posed.parts).reshape(-1)[hit]
    rest = interpolate(frags, posed.faces, posed.template).reshape(-1, 3)[hit]
    shade = interpolate(frags, posed.faces, vertex_shading(posed.template, posed.faces)[:, None]).reshape(-1)[hit]
    person = torch.div(hit, H * W, rounding_mode="floor")
    looks = {k: v[person] for k, v in appearance.items()}  # per covered pixel: its person's appearance
    colour = surface_colour(labels[:, None], rest[:, None], looks, rest_joints)[:, 0] * shade[:, None]
    rgb = torch.ones(B * H * W, 3, dtype=colour.dtype, device=colour.device)
    rgb[hit] = colour
    rgb = rgb.reshape(B, H, W, 3)
    coverage = frags.mask.to(rgb.dtype)
    if supersample > 1:
        rgb = F.avg_pool2d(rgb.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)
        coverage = F.avg_pool2d(coverage[:, None], supersample)[:, 0]
    coarse = parts_seen(posed, camera)
    return rgb, coverage, coarse


def _srgb_bytes(linear: Tensor) -> np.ndarray:
    """Colours are designed directly as display values: clamp and quantise."""
    return (linear.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def sample_people(body: BodyModel, indices: list[int], *, seed: int, height: int, width: int):
    """The people, bodies and cameras of items `indices`: each a pure function of (seed, index)."""
    poses, betas, looks, eyes = [], [], [], []
    for i in indices:
        rng = np.random.default_rng([seed, i])
        pose, _, _ = sample_pose(rng)
        poses.append(pose)
        betas.append(np.clip(rng.normal(scale=0.8, size=body.num_betas), -2, 2))
        looks.append(sample_appearance(rng))
        back = rng.uniform() < 0.15
        eyes.append((rng.uniform(-80, 80) + (180 if back else 0), rng.uniform(-10, 20), rng.uniform(3, 6),
                     rng.uniform(25, 45)))
    pose_t = torch.as_tensor(np.stack(poses), dtype=torch.float32)
    betas_t = torch.as_tensor(np.stack(betas), dtype=torch.float32)
    with torch.no_grad():
        posed = body(betas=betas_t, pose=pose_t)
        yaw, pitch, distance, fov = (torch.tensor(c, dtype=torch.float32) for c in zip(*eyes))
        scene = Camera.orbit(posed.joints[:, 0], distance, yaw, pitch, fov_y_deg=fov, width=512, height=512)
        camera, _ = crop_camera(scene, posed.vertices, width=width, height=height, margin=MARGIN)
    appearance = {k: np.stack([look[k] for look in looks]).astype(np.float32) for k in FIELDS}
    return posed, camera, appearance, pose_t, betas_t


def synth(*, out: Path, count: int, height: int, width: int, seed: int = 0, body_path: Path | None = None,
          batch: int = 16, progress: bool = True) -> dict:
    """Write `count` synthetic people as a dataset folder (training/data.py) with appearance.npz."""
    if count < 1:
        raise ValueError(f"synth count {count}: at least one image is needed")
    batch = synth_batch(width, height, batch=batch)  # fewer at once for large sizes; refused if one cannot fit
    body_path = Path(body_path or free_body_path())
    body = BodyModel.load(body_path)
    with torch.no_grad():
        rest_joints = body().joints[0]
    writer = DatasetWriter(out, height=height, width=width, body_fingerprint=body.fingerprint,
                           body_file=str(body_path.resolve()), num_betas=body.num_betas, source="synth")
    looks: dict[str, list[np.ndarray]] = {k: [] for k in FIELDS}
    start = time.perf_counter()
    for first in range(0, count, batch):
        indices = list(range(first, min(first + batch, count)))
        posed, camera, appearance, pose, betas = sample_people(body, indices, seed=seed, height=height, width=width)
        with torch.no_grad():
            rgb, coverage, parts = render_people(posed, camera, {k: torch.as_tensor(v) for k, v in appearance.items()},
                                                 rest_joints)
        for b, i in enumerate(indices):
            writer.add(f"{i:06d}", image=_srgb_bytes(rgb[b]), mask=(coverage[b] >= 0.5).numpy(),
                       parts=parts[b].numpy().astype(np.uint8), betas=betas[b].numpy(), pose=pose[b].numpy(),
                       transl=np.zeros(3), K=camera.K[b].numpy(), world_to_camera=camera.world_to_camera[b].numpy())
            for k in FIELDS:
                looks[k].append(appearance[k][b])
        done = indices[-1] + 1
        rate = done / (time.perf_counter() - start)
        if progress:
            print(f"\rsynth: {done}/{count} images, {rate:.1f} images/s", end="" if done < count else "\n",
                  file=sys.stderr, flush=True)
    manifest = writer.finish(extra={"seed": seed, "fields": FIELDS, "patterns": PATTERNS, "margin": MARGIN},
                             extra_arrays={"appearance": {k: np.stack(v) for k, v in looks.items()}})
    return manifest


def main(args) -> None:
    """The `synth` command (errors propagate to the command line's one error block, neural/cli.py)."""
    synth(out=args.out, count=args.count, height=args.height, width=args.width, seed=args.seed, body_path=args.body)

"""SMPLify-style fitting of an SMPL-format body and its camera to 2D landmarks and a person mask, on CPU.

Bogo et al. 2016 (SMPLify) fit SMPL to 2D joints by minimising a robust reprojection error plus pose and shape
priors, in stages, from several global orientations. Ours follows that recipe on our own parts:

    E = E_keypoints + λ_pose E_pose + λ_limits E_limits + λ_shape E_shape (+ λ_sil E_silhouette in the last stage)

- E_keypoints: Geman-McClure ρ(r) = r² / (r² + σ²) of the landmark residuals (landmarks.py: joints and surface
  points moved by offsets calibrated to BlazePose), r in units of the crop height, weighted by landmark trust ×
  detector visibility.
- E_silhouette, through our rasteriser (neural/raster.py): every projected vertex must fall inside the mask (the
  mask's distance transform sampled at the vertices), and every mask pixel the rasterised body leaves uncovered pulls
  its nearest projected vertex (a one-sided chamfer). The rasteriser is not differentiable; it only says which mask
  pixels are still uncovered, and the gradients flow through the projected vertices.
- Priors: prior.py (a Gaussian fitted to the built-in motions, joint limits, betas).

Camera: the intrinsics K are given (EXIF or a default, pipeline.py); the extrinsics are fixed to the upright
`world_to_camera = diag(1, -1, -1)` (camera at the origin looking along −Z, Y up), so the body's global orientation
and translation carry the whole rigid placement. Stages: (1) orientation + translation on the torso landmarks from
each initial yaw and for each reading of the landmarks (Target.alternatives: BlazePose on the image, on its mirror,
and their mean), (2) everything on all landmarks with the priors, then keep the row of lowest energy per person (a
yaw and a reading: where one reading swaps or misplaces a limb, it fits worse), (3) add the silhouette, with the
keypoint term scaled by `final_keypoints`. Each person is fitted in a 2:1 crop around it (`crop_height` pixels
tall), so one batch holds people from images of any size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import distance_transform_edt
from torch import Tensor
from torch.nn import functional as F

from neural.body import BodyModel
from neural.camera import Camera
from neural.raster import rasterize
from neural.skeleton import NUM_JOINTS, PARENTS

from ..crop import Crop, crop_box
from ..data import resize_intrinsics
from .landmarks import LANDMARK_NAMES, landmark_map
from .prior import joint_limit_cost, motion_prior, shape_cost

UPRIGHT_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])  # world → OpenCV camera: Y up in the world, looking along −Z
_TORSO = [LANDMARK_NAMES.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Fitting schedule and weights. steps: Adam steps of the three stages; orientations_deg: initial yaws (0 =
    facing the camera); sigma: Geman-McClure scale, a fraction of the crop height."""

    steps: tuple[int, int, int] = (30, 120, 80)
    learning_rate: float = 0.03
    orientations_deg: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
    sigma: float = 0.1
    pose_prior: float = 0.02
    joint_limits: float = 1.0
    shape_prior: float = 0.005
    silhouette: float = 10.0
    final_keypoints: float = 1.0  # keypoint weight in the silhouette stage
    crop_height: int = 128
    margin: float = 0.08
    silhouette_vertices: int = 3000  # vertices (evenly strided) the silhouette term projects
    silhouette_pixels: int = 400  # uncovered mask pixels sampled per person and step

    def __post_init__(self) -> None:
        if len(self.steps) != 3 or min(self.steps) < 0:
            raise ValueError(f"FitConfig.steps {self.steps}: three non-negative step counts (torso, all, silhouette)")
        if not self.orientations_deg:
            raise ValueError("FitConfig.orientations_deg is empty; give at least one initial yaw, e.g. (0.0,)")
        for name in ("learning_rate", "sigma", "margin"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FitConfig.{name} = {getattr(self, name)} must be positive")
        for name in ("pose_prior", "joint_limits", "shape_prior", "silhouette", "final_keypoints"):
            if getattr(self, name) < 0:
                raise ValueError(f"FitConfig.{name} = {getattr(self, name)} must be ≥ 0")
        if self.crop_height < 16 or self.crop_height % 2:
            raise ValueError(f"FitConfig.crop_height = {self.crop_height}: an even number ≥ 16")


@dataclass(frozen=True)
class Target:
    """What one person's fit must match. keypoints (33, 2) pixels of the image (BlazePose order, pixel centres at
    integers); visibility (33,) in [0, 1]; mask (H, W) bool or None; K (3, 3) intrinsics of the image;
    alternatives: other readings of the same person's landmarks, (keypoints, visibility) pairs (e.g. BlazePose on
    the mirrored image): the fitter tries every reading from every initial yaw and keeps the lowest energy."""

    keypoints: np.ndarray
    visibility: np.ndarray
    mask: np.ndarray | None
    K: np.ndarray
    width: int
    height: int
    alternatives: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def readings(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.keypoints, self.visibility), *self.alternatives]


@dataclass(frozen=True)
class BodyFit:
    """A fitted person: pose (24, 3) axis-angle, betas (n,), transl (3,) world; K (3, 3) image pixels;
    world_to_camera (4, 4); yaw_deg: the initial yaw kept; reading: the landmark reading kept (0: the target's
    keypoints, k: its k-th alternative); keypoint_error_px: mean weighted distance to that reading, image pixels."""

    pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    K: np.ndarray
    world_to_camera: np.ndarray
    yaw_deg: float
    keypoint_error_px: float
    seconds: float = field(default=0.0)
    reading: int = 0

    def as_raw_fit(self) -> dict:
        """The fit in the `K + world_to_camera` form training/fits.py reads (JSON-safe lists)."""
        return {"pose": self.pose.tolist(), "betas": self.betas.tolist(), "transl": self.transl.tolist(),
                "K": self.K.tolist(), "world_to_camera": self.world_to_camera.tolist()}


def _person_box(target: Target, margin: float) -> Crop:
    if target.mask is not None and target.mask.any():
        return crop_box(target.mask, margin=margin)
    seen = target.keypoints[target.visibility > 0.5]
    if len(seen) < 2:
        raise ValueError("fewer than two landmarks are visible; the person cannot be placed")
    box = np.zeros((target.height, target.width), bool)
    x0, y0 = np.clip(np.floor(seen.min(0)).astype(int), 0, None)
    x1, y1 = np.ceil(seen.max(0)).astype(int)
    box[y0:y1 + 1, x0:x1 + 1] = True
    return crop_box(box, margin=margin)


def _crop_mask(mask: np.ndarray, crop: Crop, width: int, height: int) -> np.ndarray:
    """The mask inside the crop box (zero outside the image), resized to width × height, bool."""
    cut = Image.fromarray(mask.astype(np.uint8) * 255).crop((crop.left, crop.top, crop.left + crop.width,
                                                             crop.top + crop.height))
    return np.asarray(cut.resize((width, height), Image.BILINEAR)) > 127


class _Batch:
    """Targets moved into their crops and stacked. Per person: K (P, 3, 3), masks, crops; per landmark reading (N
    ≥ P, a person's readings in a row): person (N,), keypoints (N, L, 2), weights (N, L)."""

    def __init__(self, targets: list[Target], landmarks, config: FitConfig) -> None:
        Hc, Wc = config.crop_height, config.crop_height // 2
        self.crops = [_person_box(t, config.margin) for t in targets]
        self.scales = np.array([Hc / c.height for c in self.crops])
        K, masks, person, points, vis = [], [], [], [], []
        for i, (t, c, s) in enumerate(zip(targets, self.crops, self.scales)):
            k = t.K.astype(np.float64).copy()
            k[0, 2] -= c.left
            k[1, 2] -= c.top
            K.append(resize_intrinsics(k, s, s))
            masks.append(_crop_mask(t.mask, c, Wc, Hc) if t.mask is not None else np.zeros((Hc, Wc), bool))
            for keypoints, visibility in t.readings():
                person.append(i)
                points.append((keypoints[landmarks.indices] - [c.left, c.top] + 0.5) * s - 0.5)
                vis.append(visibility[landmarks.indices])
        self.K = torch.as_tensor(np.stack(K), dtype=torch.float32)
        self.person = torch.as_tensor(person)
        self.keypoints = torch.as_tensor(np.stack(points), dtype=torch.float32)
        vis = np.stack(vis)
        self.weights = torch.as_tensor(vis * landmarks.weights, dtype=torch.float32)
        self.has_mask = torch.tensor([t.mask is not None and t.mask.any() for t in targets])
        self.masks = torch.as_tensor(np.stack(masks))
        outside = np.stack([distance_transform_edt(~m) if m.any() else np.zeros_like(m, float) for m in masks])
        self.outside = torch.as_tensor(outside, dtype=torch.float32)[:, None]  # (P, 1, Hc, Wc) px to the mask
        self.width, self.height = Wc, Hc


def reduced_body(body: BodyModel, ids: np.ndarray) -> BodyModel:
    """The body's vertices `ids` plus its 24 joints as extra vertices, as an SMPL-format body of its own.

    Linear blend skinning of a vertex needs only that vertex's rows, and the rest joints are linear in the betas
    (J_regressor @ (template + shapedirs β)), so each joint becomes a vertex skinned rigidly to itself with no pose
    blend shapes: the reduced body's joints and its vertices equal the full body's, at a fraction of the cost.
    """
    with torch.no_grad():
        t, sd = body.template.double().numpy(), body.shapedirs.double().numpy()
        pd, reg, w = body.posedirs.double().numpy(), body.J_regressor.double().numpy(), body.weights.double().numpy()
    n = len(ids)
    posedirs = pd.reshape(pd.shape[0], -1, 3)[:, ids]
    arrays = {"v_template": np.concatenate([t[ids], reg @ t]),
              "shapedirs": np.concatenate([sd[ids], np.einsum("jv,vcl->jcl", reg, sd)]),
              "posedirs": np.concatenate([posedirs, np.zeros((pd.shape[0], NUM_JOINTS, 3))], 1).reshape(pd.shape[0], -1),
              "weights": np.concatenate([w[ids], np.eye(NUM_JOINTS)]),
              "J_regressor": np.concatenate([np.zeros((NUM_JOINTS, n)), np.eye(NUM_JOINTS)], 1),
              "f": np.array([[0, 1, 2]]), "kintree_table": np.array([PARENTS, range(NUM_JOINTS)])}
    return BodyModel(arrays=arrays, source=f"{body.source} (reduced to {n} vertices)")


def _yaw(degrees: float) -> np.ndarray:
    return np.array([0.0, math.radians(degrees), 0.0])


class Fitter:
    """Fits people to Targets on one body. `fit(targets)` → one BodyFit per target, batched."""

    def __init__(self, body: BodyModel, config: FitConfig = FitConfig()) -> None:
        self.body, self.config = body, config
        self.landmarks = landmark_map(body)
        self.prior = motion_prior()
        # the optimisation poses only the vertices it looks at: landmark points and the silhouette's vertices
        outline = np.arange(0, body.num_vertices, max(1, body.num_vertices // config.silhouette_vertices))
        marks = np.unique(self.landmarks.vertices)
        ids = np.unique(np.concatenate([marks, outline]))
        self.bodies = (reduced_body(body, marks), reduced_body(body, ids))  # stages 0-1, stage 2
        self.maps = (self.landmarks.on_subset(marks), self.landmarks.on_subset(ids))
        self.outline = torch.as_tensor(np.searchsorted(ids, outline))
        with torch.no_grad():
            rest = body(pose=torch.as_tensor(self.prior_pose()[None], dtype=torch.float32))
        self.height_m = float(rest.vertices[0, :, 1].max() - rest.vertices[0, :, 1].min())
        self.centre_m = rest.vertices[0].amax(0).add(rest.vertices[0].amin(0)).div(2).numpy()

    def prior_pose(self) -> np.ndarray:
        pose = np.zeros((24, 3))
        pose[1:] = self.prior.mean.reshape(23, 3)
        return pose

    def _init(self, batch: _Batch, yaws: list[float]) -> dict[str, Tensor]:
        """Initial parameters (N·O rows, reading-major): prior-mean pose, zero betas, depth from the mask height."""
        rows = []
        for n, i in enumerate(batch.person.tolist()):
            m = batch.masks[i].numpy()
            ys, xs = np.nonzero(m) if m.any() else (batch.keypoints[n, :, 1].numpy(), batch.keypoints[n, :, 0].numpy())
            h2d = max(float(ys.max() - ys.min() + 1), 4.0)
            K = batch.K[i].numpy()
            depth = K[1, 1] * self.height_m / h2d
            centre = np.array([((xs.max() + xs.min()) / 2 - K[0, 2]) * depth / K[0, 0],
                               ((ys.max() + ys.min()) / 2 - K[1, 2]) * depth / K[1, 1], depth])
            transl = UPRIGHT_CAMERA[:3, :3].T @ centre - self.centre_m  # the body's centre onto that point
            rows += [(transl, yaw) for yaw in yaws]
        pose = np.stack([self.prior_pose() for _ in rows])
        pose[:, 0] = [_yaw(yaw) for _, yaw in rows]
        return {"root": torch.tensor(pose[:, 0], dtype=torch.float32),
                "body": torch.tensor(pose[:, 1:], dtype=torch.float32),
                "betas": torch.zeros(len(rows), self.body.num_betas),
                "transl": torch.tensor(np.stack([t for t, _ in rows]), dtype=torch.float32)}

    def _camera(self, K: Tensor, batch: _Batch) -> Camera:
        w2c = torch.as_tensor(UPRIGHT_CAMERA, dtype=torch.float32).expand(len(K), 4, 4)
        return Camera(K=K, world_to_camera=w2c, width=batch.width, height=batch.height)

    def _energy(self, p: dict[str, Tensor], rows: Tensor, batch: _Batch, stage: int) -> tuple[Tensor, Tensor]:
        """Per-row energy (R,) and keypoint residuals (R, L) in crop pixels. rows: (R,) reading index per row."""
        c = self.config
        pose = torch.cat([p["root"][:, None], p["body"]], 1)
        posed = self.bodies[stage == 2](betas=p["betas"], pose=pose, transl=p["transl"])
        camera = self._camera(batch.K[batch.person[rows]], batch)
        xy, _ = camera.project(self.maps[stage == 2].points(posed))
        residual = (xy - batch.keypoints[rows]).norm(dim=-1)                          # (R, L) crop px
        weights = batch.weights[rows]
        if stage == 0:
            torso = torch.as_tensor(np.isin(self.landmarks.indices, _TORSO))
            weights = weights * torso
        r2 = (residual / batch.height).square()
        rho = r2 / (r2 + c.sigma ** 2)
        energy = (weights * rho).sum(1) / weights.sum(1).clamp_min(1e-6)
        if stage == 2:
            energy = c.final_keypoints * energy
        if stage > 0:
            energy = energy + c.pose_prior * self.prior.cost(p["body"]) + c.joint_limits * joint_limit_cost(pose) \
                + c.shape_prior * shape_cost(p["betas"])
        if stage == 2 and c.silhouette > 0:
            energy = energy + c.silhouette * self._silhouette(posed, p, camera, batch.person[rows], batch) / c.sigma ** 2
        return energy, residual

    def _silhouette(self, posed, p: dict[str, Tensor], camera: Camera, rows: Tensor, batch: _Batch) -> Tensor:
        """(R,) mean squared distance (crop heights²): vertices outside the mask + uncovered mask pixels. rows: (R,)
        person index per row."""
        xy, _ = camera.project(posed.vertices[:, self.outline])
        size = torch.tensor([batch.width, batch.height], dtype=xy.dtype)
        grid = ((xy + 0.5) / size * 2 - 1)[:, None]                                  # (R, 1, Vs, 2)
        outside = F.grid_sample(batch.outside[rows], grid, align_corners=False, padding_mode="border")[:, 0, 0]
        inside_term = outside.square().mean(1)
        with torch.no_grad():
            full = self.body(betas=p["betas"], pose=torch.cat([p["root"][:, None], p["body"]], 1), transl=p["transl"])
            covered = rasterize(full.vertices, full.faces, camera).mask
        cover_term = torch.zeros_like(inside_term)
        generator = torch.Generator().manual_seed(0)
        for r, person in enumerate(rows.tolist()):
            missing = (batch.masks[person] & ~covered[r]).nonzero().flip(1).to(xy.dtype)  # (N, 2) x, y
            if len(missing) > self.config.silhouette_pixels:
                missing = missing[torch.randperm(len(missing), generator=generator)[: self.config.silhouette_pixels]]
            if len(missing):
                d2 = torch.cdist(missing, xy[r]).amin(1).square()
                cover_term[r] = d2.sum() / batch.masks[person].sum().clamp_min(1)
        keep = batch.has_mask[rows].to(xy.dtype)
        return keep * (inside_term + cover_term) / batch.height ** 2

    def _run(self, p: dict[str, Tensor], names: tuple[str, ...], rows: Tensor, batch: _Batch, stage: int) -> Tensor:
        for k in names:
            p[k].requires_grad_(True)
        optimiser = torch.optim.Adam([p[k] for k in names], lr=self.config.learning_rate)
        for _ in range(self.config.steps[stage]):
            optimiser.zero_grad()
            energy, _ = self._energy(p, rows, batch, stage)
            energy.sum().backward()
            optimiser.step()
        for k in names:
            p[k] = p[k].detach()
        with torch.no_grad():
            return self._energy(p, rows, batch, stage)[0]

    def fit(self, targets: list[Target]) -> list[BodyFit]:
        """One BodyFit per target (same order). Raises ValueError naming the target index on unusable input."""
        start = time.perf_counter()
        for i, t in enumerate(targets):
            for k, (keypoints, visibility) in enumerate(t.readings()):
                what = f"target {i}" + (f", alternative {k}" if k else "")
                if keypoints.shape != (len(LANDMARK_NAMES), 2) or visibility.shape != (len(LANDMARK_NAMES),):
                    raise ValueError(f"{what}: keypoints {keypoints.shape} / visibility {visibility.shape}; expected "
                                     f"({len(LANDMARK_NAMES)}, 2) / ({len(LANDMARK_NAMES)},), BlazePose order")
                if not np.isfinite(keypoints).all():
                    raise ValueError(f"{what}: keypoints hold NaN or inf")
        batch = _Batch(targets, self.landmarks, self.config)
        yaws = list(self.config.orientations_deg)
        P, O = len(targets), len(yaws)
        rows = torch.arange(len(batch.person)).repeat_interleave(O)                     # every reading × yaw
        p = self._init(batch, yaws)
        self._run(p, ("root", "transl"), rows, batch, 0)
        energy = self._run(p, ("root", "body", "betas", "transl"), rows, batch, 1)
        owner = batch.person[rows]
        best = torch.stack([torch.where(owner == i, energy, torch.inf).argmin() for i in range(P)])  # one per person
        p = {k: v[best].clone() for k, v in p.items()}
        rows = rows[best]
        first = [batch.person.tolist().index(i) for i in range(P)]                     # each person's first reading
        if self.config.steps[2] and bool(batch.has_mask.any()):
            self._run(p, ("root", "body", "betas", "transl"), rows, batch, 2)
        with torch.no_grad():
            _, residual = self._energy(p, rows, batch, 1)
        seconds = (time.perf_counter() - start) / P
        fits = []
        for i, t in enumerate(targets):
            w = batch.weights[rows[i]]
            error = float((residual[i] * w).sum() / w.sum().clamp_min(1e-6)) / batch.scales[i]
            fits.append(BodyFit(pose=torch.cat([p["root"][i:i + 1], p["body"][i]]).double().numpy(),
                                betas=p["betas"][i].double().numpy(), transl=p["transl"][i].double().numpy(),
                                K=t.K.astype(np.float64), world_to_camera=UPRIGHT_CAMERA.copy(),
                                yaw_deg=yaws[int(best[i]) % O], keypoint_error_px=error, seconds=seconds,
                                reading=int(rows[i]) - first[i]))
        return fits


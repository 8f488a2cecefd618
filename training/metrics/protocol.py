"""The evaluation protocol of docs/evaluation.md (`python -m training evaluate`), for generators and ground truth.

The paper reports FID, pose accuracy and (qualitatively) 3D consistency (paper §4); its evaluation code was never
released, so the protocol is ours and is written into every result. Everything is a pure function of the dataset,
the model and the protocol's seed:
- FID / KID (`metrics/fid.py`): `count` generated images against `count` real images of the dataset, both at the
  model's resolution. Generated sample i takes seed `seed + i` and the body and camera of dataset item `order[i]`
  (`order`: a seeded permutation of the items, cycled).
- Pose accuracy (`metrics/pose_accuracy.py`): the judge parser's labels on those same samples against the
  rasterised part map of their conditioning body; the parser's held-out mIoU on real images is the ceiling.
- Consistency (`metrics/consistency.py`), for `people` identities (person k: seed `seed + k`, dataset item
  `order[k]`): view — the item's body from cameras turned by `yaws` about the body's up axis, each view against
  yaw 0; pose — the item's pose against the pose of item `order[−1 − k]` (root orientation, shape and camera kept);
  temporal flicker — consecutive frames of a built-in motion (`training/motions.py`, motion k mod 8) at phase
  steps of `frame_step`. The same numbers for the synthetic collection's ground-truth renders (same bodies,
  cameras and person k = the item's own appearance) are reported beside them.
- Appearance diversity: persons 0 … `diversity_seeds` − 1 drawn on the body and camera of each of the `people`
  items; the mean |Δ colour| between every two of them at the same body pixel. A generator that ignores its latent
  scores 0 however realistic it is; the ground truth's persons wear the collection's appearances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from neural.body import BodyModel, PosedBody
from neural.camera import Camera
from neural.raster import Fragments, parts_seen, rasterize

from ..data import PhotoDataset, rotate_about_body
from ..motions import MOTIONS, pose_array
from .consistency import ConsistencySum, colour_difference, surface_correspondence
from .fid import InceptionFeatures, fid_from_features, kernel_inception_distance
from .pose_accuracy import Confusion

__all__ = ["Protocol", "Render", "generator_render", "ground_truth_render", "bottleneck_render", "measure_fid_and_pose",
           "measure_consistency", "measure_diversity", "item_order"]

# person ids, posed bodies (B), cameras (B) in the body frame → images (B, 3, H, W) in [-1, 1]
Render = Callable[[list[int], PosedBody, Camera], Tensor]


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """What is measured and how; written into every result (results.json "protocol")."""

    count: int = 2000                     # generated and real images for FID / KID and pose accuracy
    psi: float = 1.0                      # truncation of every generated image
    people: int = 64                      # identities for the consistency metrics
    yaws: tuple[float, ...] = (-30.0, -15.0, 0.0, 15.0, 30.0)  # degrees about the body's up axis; 0 = the item's
    frames: int = 8                       # consecutive frames of a motion (temporal flicker)
    frame_step: float = 1 / 30            # motion phase between frames (a 1 s cycle at 30 fps)
    seed: int = 0
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    depth_tolerance: float = 0.01         # metres (+ 2 pixel footprints) for co-visibility
    diversity_seeds: int = 8              # persons drawn on each body for the appearance diversity

    def __post_init__(self) -> None:
        if self.count < 2 or self.people < 1 or self.frames < 2 or 0.0 not in self.yaws or self.diversity_seeds < 2:
            raise ValueError(f"protocol needs count ≥ 2, people ≥ 1, frames ≥ 2, diversity_seeds ≥ 2 and yaw 0 "
                             f"among the yaws; got count={self.count}, people={self.people}, frames={self.frames}, "
                             f"diversity_seeds={self.diversity_seeds}, yaws={self.yaws}")

    def to_dict(self) -> dict:
        return asdict(self)


def item_order(size: int, seed: int) -> np.ndarray:
    """The seeded permutation of dataset items that assigns conditioning bodies and cameras."""
    return np.random.default_rng([seed, 12345]).permutation(size)


def _items(dataset: PhotoDataset, indices) -> dict[str, Tensor]:
    items = [dataset[int(i)] for i in indices]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _camera(items: dict[str, Tensor], width: int, height: int, device) -> Camera:
    return Camera(K=items["K"].to(device), world_to_camera=items["world_to_camera"].to(device), width=width,
                  height=height)


def _pose(body: BodyModel, betas: Tensor, pose: Tensor, transl: Tensor) -> PosedBody:
    device = next(body.buffers()).device
    return body(betas=betas.to(device), pose=pose.to(device), transl=transl.to(device))


def _pose_repeated(body: BodyModel, item: dict[str, Tensor], n: int) -> PosedBody:
    """A batch of n copies of one dataset item's posed body (its betas, pose and translation)."""
    return _pose(body, item["betas"].expand(n, -1), item["pose"].expand(n, -1, -1), item["transl"].expand(n, -1))


# --- the things being measured ---------------------------------------------------------------------------------
def generator_render(generator: torch.nn.Module, *, psi: float, seed: int) -> Render:
    """A generator as a Render: person k is seed `seed + k` (z drawn on the CPU, as neural.Renderer does)."""

    @torch.no_grad()
    def render(people: list[int], posed: PosedBody, camera: Camera) -> Tensor:
        z = torch.cat([generator.sample_z(seed + k) for k in people]).to(camera.K.device)
        return generator(z, posed, camera, psi=psi).image.float().clamp(-1, 1)

    return render


def ground_truth_render(dataset: PhotoDataset, order: np.ndarray, body: BodyModel) -> Render:
    """The synthetic collection's own renderer as a Render: person k wears item order[k]'s appearance."""
    from ..synth import render_people

    path = dataset.root / "appearance.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: ground-truth renders need a synthetic collection "
                                "(`python -m training synth`)")
    with np.load(path, allow_pickle=False) as f:
        appearance = {k: torch.as_tensor(f[k]) for k in f.files}
    with torch.no_grad():
        rest_joints = body().joints[0]

    @torch.no_grad()
    def render(people: list[int], posed: PosedBody, camera: Camera) -> Tensor:
        rows = torch.as_tensor(order[np.asarray(people) % len(order)])
        looks = {k: v[rows].to(camera.K.device) for k, v in appearance.items()}
        rgb, _, _ = render_people(posed, camera, looks, rest_joints.to(camera.K.device))
        # quantised to 8 bits, as the collection's images are stored
        return ((rgb.clamp(0, 1) * 255).round() / 127.5 - 1).permute(0, 3, 1, 2)

    return render


def bottleneck_render(render: Render, factor: int) -> Render:
    """`render` through a map at 1/factor of its resolution: area-averaged, then bilinearly upsampled
    (align_corners=False, as the backbone upsamples its style map). A guide to the detail a pose style map of that
    resolution carries: the backbone is 1×1, so the upsampled map is its only input finer than the whole image, but
    it is non-linear and can sharpen edges the linear round trip blurs, so this is not a bound."""
    if factor < 1:
        raise ValueError(f"bottleneck factor must be ≥ 1, got {factor}")

    def blurred(people: list[int], posed: PosedBody, camera: Camera) -> Tensor:
        images = render(people, posed, camera)
        if factor == 1:
            return images
        small = F.avg_pool2d(images, factor)
        return F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)

    return blurred


# --- FID / KID and pose accuracy -----------------------------------------------------------------------------
def measure_fid_and_pose(render: Render, dataset: PhotoDataset, body: BodyModel, protocol: Protocol, *,
                         inception: InceptionFeatures, parser: torch.nn.Module | None = None,
                         real_features: np.ndarray | None = None, batch: int = 16,
                         log=print) -> tuple[dict, np.ndarray]:
    """FID, KID and pose accuracy of `render` on `protocol.count` samples, `batch` images per render call.
    Returns the metrics and the real images' features (pass them back as real_features for the next model)."""
    device = next(body.buffers()).device
    order = item_order(len(dataset), protocol.seed)
    items = order[np.arange(protocol.count) % len(order)]
    fake, real, confusion = [], [], Confusion.empty()
    for start in range(0, protocol.count, batch):
        idx = items[start:start + batch]
        data = _items(dataset, idx)
        posed = _pose(body, data["betas"], data["pose"], data["transl"])
        camera = _camera(data, dataset.width, dataset.height, device)
        images = render(list(range(start, start + len(idx))), posed, camera)
        fake.append(inception(images))
        if real_features is None:
            real.append(inception(data["image"]))
        if parser is not None:
            target = parts_seen(posed, camera)
            confusion = confusion + Confusion.of(parser.predict(images.to(next(parser.parameters()).device)), target)
        if log is not None:
            log(f"  FID/pose samples {start + len(idx)}/{protocol.count}")
    fake_f = np.concatenate(fake)
    real_f = real_features if real_features is not None else np.concatenate(real)
    metrics = {"fid": fid_from_features(real_f, fake_f),
               "kid": kernel_inception_distance(real_f, fake_f, subsets=protocol.kid_subsets,
                                                subset_size=protocol.kid_subset_size, seed=protocol.seed)}
    if parser is not None:
        metrics.update(pose_miou=confusion.miou(), pose_pixel_accuracy=confusion.accuracy())
    return metrics, real_f


# --- consistency -----------------------------------------------------------------------------------------------
def _pair_error(image_a: Tensor, image_b: Tensor, posed_a: PosedBody, posed_b: PosedBody, camera_a: Camera,
                camera_b: Camera, frag_a: Fragments, frag_b: Fragments, tolerance: float) -> ConsistencySum:
    """Both directions (a → b and b → a) of the surface-correspondence colour difference."""
    ab = surface_correspondence(frag_a, frag_b, posed_a.faces, posed_b.vertices, camera_b, depth_tolerance=tolerance)
    ba = surface_correspondence(frag_b, frag_a, posed_a.faces, posed_a.vertices, camera_a, depth_tolerance=tolerance)
    return colour_difference(image_a, image_b, ab) + colour_difference(image_b, image_a, ba)


def _take(posed: PosedBody, i: int) -> PosedBody:
    """Item i of a batch of posed bodies, as a batch of one."""
    batched = ("vertices", "joints", "transforms", "shaped", "root_rotation", "transl")
    return replace(posed, **{k: getattr(posed, k)[i:i + 1] for k in batched})


def _take_camera(camera: Camera, i: int) -> Camera:
    return Camera(K=camera.K[i:i + 1], world_to_camera=camera.world_to_camera[i:i + 1], width=camera.width,
                  height=camera.height)


def _repeat_camera(camera: Camera, n: int, world_to_camera: Tensor | None = None) -> Camera:
    w2c = camera.world_to_camera.expand(n, 4, 4) if world_to_camera is None else world_to_camera
    return Camera(K=camera.K.expand(n, 3, 3), world_to_camera=w2c, width=camera.width, height=camera.height)


def _take_fragments(fragments: Fragments, i: int) -> Fragments:
    return Fragments(face_ids=fragments.face_ids[i:i + 1], bary=fragments.bary[i:i + 1],
                     depth=fragments.depth[i:i + 1])


class _Batch:
    """Images rendered for posed bodies (B) seen by cameras (B), with the bodies rasterised once."""

    def __init__(self, images: Tensor, posed: PosedBody, cameras: Camera) -> None:
        self.images, self.posed, self.cameras = images, posed, cameras
        self.fragments = rasterize(posed.vertices, posed.faces, cameras)

    def pair(self, i: int, j: int, tolerance: float) -> ConsistencySum:
        """Colour difference between images i and j at co-visible surface points."""
        return _pair_error(self.images[i:i + 1], self.images[j:j + 1], _take(self.posed, i), _take(self.posed, j),
                           _take_camera(self.cameras, i), _take_camera(self.cameras, j),
                           _take_fragments(self.fragments, i), _take_fragments(self.fragments, j), tolerance)


def measure_consistency(render: Render, dataset: PhotoDataset, body: BodyModel, protocol: Protocol, *,
                        log=print) -> dict:
    """View consistency (overall and per yaw), pose consistency and temporal flicker, in 8-bit levels."""
    device = next(body.buffers()).device
    order = item_order(len(dataset), protocol.seed)
    yaws = torch.tensor(protocol.yaws, dtype=torch.float32, device=device)
    centre = protocol.yaws.index(0.0)
    view, pose, flicker = ConsistencySum(), ConsistencySum(), ConsistencySum()
    by_yaw = {y: ConsistencySum() for y in protocol.yaws if y != 0.0}
    names = sorted(MOTIONS)
    rng = np.random.default_rng([protocol.seed, 777])
    tol = protocol.depth_tolerance
    for k in range(protocol.people):
        a = _items(dataset, [order[k % len(order)]])
        b = _items(dataset, [order[-1 - k % len(order)]])
        camera = _camera(a, dataset.width, dataset.height, device)
        # views: the same body from cameras turned about the body's up axis through the pelvis
        n = len(protocol.yaws)
        posed = _pose_repeated(body, a, n)
        w2c = rotate_about_body(camera.world_to_camera.expand(n, 4, 4), posed.root_rotation, posed.joints[:, 0],
                                torch.deg2rad(yaws), torch.zeros_like(yaws))
        views = _repeat_camera(camera, n, w2c)
        batch = _Batch(render([k] * n, posed, views), posed, views)
        for i, yaw in enumerate(protocol.yaws):
            if i != centre:
                s = batch.pair(centre, i, tol)
                by_yaw[yaw] = by_yaw[yaw] + s
                view = view + s
        # poses: item b's articulation with item a's root orientation, shape, translation and camera
        poses = torch.cat([a["pose"], torch.cat([a["pose"][:, :1], b["pose"][:, 1:]], 1)])
        posed = _pose(body, a["betas"].expand(2, -1), poses, a["transl"].expand(2, -1))
        cameras = _repeat_camera(camera, 2)
        pose = pose + _Batch(render([k, k], posed, cameras), posed, cameras).pair(0, 1, tol)
        # temporal flicker: consecutive frames of a built-in motion, root orientation and camera kept
        f = protocol.frames
        motion, phase0 = MOTIONS[names[k % len(names)]], rng.uniform()
        frames = np.stack([pose_array(motion(phase0 + j * protocol.frame_step)) for j in range(f)])
        frames[:, 0] = a["pose"][0, 0].numpy()
        posed = _pose(body, a["betas"].expand(f, -1), torch.as_tensor(frames, dtype=torch.float32),
                      a["transl"].expand(f, -1))
        cameras = _repeat_camera(camera, f)
        clip = _Batch(render([k] * f, posed, cameras), posed, cameras)
        for j in range(f - 1):
            flicker = flicker + clip.pair(j, j + 1, tol)
        if log is not None and ((k + 1) % 8 == 0 or k + 1 == protocol.people):
            log(f"  consistency people {k + 1}/{protocol.people}")
    return {"view_consistency": view.mean, "pose_consistency": pose.mean, "temporal_flicker": flicker.mean,
            "view_consistency_by_yaw": {f"{y:g}": s.mean for y, s in by_yaw.items()},
            "covisible_pixels": {"view": view.count, "pose": pose.count, "temporal": flicker.count}}


# --- appearance diversity ----------------------------------------------------------------------------------------
def measure_diversity(render: Render, dataset: PhotoDataset, body: BodyModel, protocol: Protocol) -> dict:
    """Mean |Δ colour| in 8-bit levels between every two of persons 0 … diversity_seeds − 1 at the same body pixel,
    each of the `people` items' bodies and cameras drawn once per person."""
    device = next(body.buffers()).device
    order = item_order(len(dataset), protocol.seed)
    n = protocol.diversity_seeds
    pairs = torch.triu_indices(n, n, offset=1)
    total, count = 0.0, 0
    for k in range(protocol.people):
        a = _items(dataset, [order[k % len(order)]])
        posed = _pose_repeated(body, a, n)
        cameras = _repeat_camera(_camera(a, dataset.width, dataset.height, device), n)
        images = render(list(range(n)), posed, cameras)
        mask = rasterize(posed.vertices[:1], posed.faces, _take_camera(cameras, 0)).mask[0]
        pixels = images.float()[:, :, mask]                                              # (n, 3, P)
        diff = (pixels[pairs[0]] - pixels[pairs[1]]).abs().mean(1) * 127.5               # (pairs, P) levels
        total, count = total + float(diff.double().sum()), count + diff.numel()
    return {"appearance_diversity": total / max(count, 1)}

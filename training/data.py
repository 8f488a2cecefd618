"""Dataset folders: format, writer, reader, batches, and the camera-rotation augmentation
(docs/architecture.md §Optimisation, §Data).

A dataset is a folder (written by `training prepare` or `training synth`):

    manifest.json            format, version, height, width, names, body {fingerprint, file, num_betas}, source,
                             extra; written last, so a folder without it is incomplete
    images/<name>.png        RGB uint8, the person composited on white, H×W (2:1)
    masks/<name>.png         L uint8, 255 = person
    parts/<name>.png         L uint8 part labels: 1 = background, 2..25 = dominant SMPL joint + 2
    fits.npz                 per image, in manifest order (never pickled): name (N,) str, betas (N, nb),
                             pose (N, 24, 3) axis-angle root first, transl (N, 3) — the body frame of
                             docs/conventions.md —, K (N, 3, 3) pixels at H×W, world_to_camera (N, 4, 4) body
                             frame → OpenCV camera
    <other>.npz              optional per-image extras (e.g. synth's appearance.npz), same order

The reader resizes to the training resolution (images bilinear with antialiasing, labels nearest, K so pixel
centres stay put), and the batch sampler deals each process its share of one global, seeded order that resumes
exactly at any step.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from neural.files import write_atomic, write_text_atomic

from .validate import bad_items, check_fits

FORMAT = "humangan-dataset"
VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON atomically (neural/files.py), so readers never see half a file."""
    write_text_atomic(path, json.dumps(data, indent=1))


class DatasetWriter:
    """Writes one dataset folder item by item; `finish()` writes fits.npz, extras and, last, manifest.json."""

    def __init__(self, root: str | Path, *, height: int, width: int, body_fingerprint: str, body_file: str,
                 num_betas: int, source: str) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"--out {self.root} is a file; pass a new or empty folder")
        if (self.root / "manifest.json").exists():
            raise FileExistsError(f"{self.root} already holds a dataset (manifest.json); choose another --out")
        if height != 2 * width:
            raise ValueError(f"dataset images are 2:1 (H = 2W); got {height}×{width}")
        self.height, self.width, self.num_betas = height, width, num_betas
        self.meta = {"format": FORMAT, "version": VERSION, "height": height, "width": width, "source": source,
                     "body": {"fingerprint": body_fingerprint, "file": str(body_file), "num_betas": num_betas}}
        self.fits: dict[str, list[np.ndarray]] = {k: [] for k in ("betas", "pose", "transl", "K", "world_to_camera")}
        self.names: list[str] = []

    def add(self, name: str, *, image: np.ndarray, mask: np.ndarray, parts: np.ndarray, betas: np.ndarray,
            pose: np.ndarray, transl: np.ndarray, K: np.ndarray, world_to_camera: np.ndarray) -> None:
        """image (H, W, 3) uint8 on white; mask (H, W) bool/uint8; parts (H, W) labels 1..25; fit arrays as in the
        module docstring (K at this dataset's H×W)."""
        if not _NAME.match(name) or name in self.names:
            raise ValueError(f"item name {name!r} is empty, repeated or has characters outside [A-Za-z0-9_.-]")
        hw = (self.height, self.width)
        if image.shape != (*hw, 3) or image.dtype != np.uint8 or mask.shape != hw or parts.shape != hw:
            raise ValueError(f"item {name}: image {image.shape} {image.dtype}, mask {mask.shape}, parts "
                             f"{parts.shape}; expected uint8 ({hw[0]}, {hw[1]}, 3) and ({hw[0]}, {hw[1]})")
        if parts.min() < 1 or parts.max() > 25:
            raise ValueError(f"item {name}: part labels {parts.min()}..{parts.max()}; expected 1..25")
        for sub in ("images", "masks", "parts"):  # created with the first item: a refused run leaves no folders
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(self.root / "images" / f"{name}.png")
        Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(self.root / "masks" / f"{name}.png")
        Image.fromarray(parts.astype(np.uint8)).save(self.root / "parts" / f"{name}.png")
        betas = np.zeros(self.num_betas, np.float32) if betas is None else np.asarray(betas, np.float32)
        padded = np.zeros(self.num_betas, np.float32)
        padded[: min(len(betas), self.num_betas)] = betas[: self.num_betas]
        values = {"betas": padded, "pose": np.asarray(pose, np.float32).reshape(24, 3),
                  "transl": np.asarray(transl, np.float32).reshape(3), "K": np.asarray(K, np.float32).reshape(3, 3),
                  "world_to_camera": np.asarray(world_to_camera, np.float32).reshape(4, 4)}
        for key, value in values.items():
            if not np.isfinite(value).all():
                raise ValueError(f"item {name}: {key} holds NaN or inf")
            self.fits[key].append(value)
        self.names.append(name)

    def finish(self, *, extra: dict[str, Any] | None = None,
               extra_arrays: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
        """Write fits.npz, `<file>.npz` for each extra_arrays entry (arrays in item order), then manifest.json."""
        if not self.names:
            raise ValueError(f"dataset {self.root} has no valid items; nothing to write")
        arrays = {k: np.stack(v) for k, v in self.fits.items()}
        _savez(self.root / "fits.npz", name=np.array(self.names), **arrays)
        for file, group in (extra_arrays or {}).items():
            _savez(self.root / f"{file}.npz", **group)
        manifest = {**self.meta, "count": len(self.names), "names": self.names, "extra": extra or {}}
        write_json_atomic(self.root / "manifest.json", manifest)
        return manifest


def _savez(path: Path, **arrays: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the temporary name
            np.savez(f, **arrays)
    write_atomic(path, write)


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a dataset folder (no manifest.json); build one with "
                                "`python -m training prepare` or `python -m training synth`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; this "
                         f"reader reads {FORMAT!r} version {VERSION}")
    return manifest


def resize_intrinsics(K: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """K (..., 3, 3) for an image resized by (scale_x, scale_y), pixel centres preserved (align_corners=False)."""
    S = np.array([[scale_x, 0, 0.5 * scale_x - 0.5], [0, scale_y, 0.5 * scale_y - 0.5], [0, 0, 1]], K.dtype)
    return S @ K


class PhotoDataset(torch.utils.data.Dataset):
    """Items of a dataset folder at height×width (default: the folder's own size), without the items named in
    `exclude` (bad ones, `training/validate.py`).

    Item: image (3, H, W) float in [-1, 1]; parts (H, W) int64; mask (1, H, W) float in [0, 1]; betas (nb,);
    pose (24, 3); transl (3,); K (3, 3) pixels at H×W; world_to_camera (4, 4); index () int64."""

    def __init__(self, root: str | Path, *, height: int | None = None, width: int | None = None,
                 exclude: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(root)
        self.height = height or self.manifest["height"]
        self.width = width or self.manifest["width"]
        try:
            with np.load(self.root / "fits.npz", allow_pickle=False) as fits:
                self.fits = {k: fits[k] for k in fits.files}
        except (OSError, ValueError) as error:  # missing, truncated, or holding pickled objects
            raise ValueError(f"{self.root / 'fits.npz'} is unreadable ({error}); rebuild the dataset") from error
        names = list(self.manifest["names"])
        if list(self.fits.get("name", [])) != names:
            raise ValueError(f"{self.root}/fits.npz lists other items than manifest.json; rebuild the dataset")
        check_fits(self.root, self.fits, len(names), self.manifest["body"]["num_betas"])
        excluded = set(exclude)
        keep = [i for i, name in enumerate(names) if name not in excluded]
        self.names = [names[i] for i in keep]
        self.fits = {k: v[keep] for k, v in self.fits.items()}
        sx, sy = self.width / self.manifest["width"], self.height / self.manifest["height"]
        self.K = resize_intrinsics(self.fits["K"].astype(np.float64), sx, sy).astype(np.float32)

    def bad_items(self) -> dict[str, str]:
        """{name: reason} of the items whose files or fit are unusable (training/validate.py)."""
        return bad_items(self.root, self.names, self.fits, width=self.manifest["width"],
                         height=self.manifest["height"])

    def __len__(self) -> int:
        return len(self.names)

    def _read(self, folder: str, name: str, resample: int) -> np.ndarray:
        with Image.open(self.root / folder / f"{name}.png") as img:
            if img.size != (self.width, self.height):
                img = img.resize((self.width, self.height), resample)
            return np.asarray(img)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        name = self.names[i]
        try:
            image = self._read("images", name, Image.BILINEAR)[..., :3]
            parts = self._read("parts", name, Image.NEAREST)
            mask = self._read("masks", name, Image.BILINEAR)
        except Exception as error:  # PIL raises many types for a damaged file
            raise ValueError(f"dataset item {name} of {self.root} is unreadable ({type(error).__name__}: {error}); "
                             "repair or remove it, or train with --skip-bad") from error
        if image.shape != (self.height, self.width, 3) or parts.ndim != 2 or mask.ndim != 2:
            raise ValueError(f"dataset item {name} of {self.root}: image {image.shape}, part map {parts.shape}, mask "
                             f"{mask.shape}; expected RGB and single-channel PNGs")
        return {
            "image": torch.from_numpy(image.astype(np.float32) / 127.5 - 1).permute(2, 0, 1),
            "parts": torch.from_numpy(parts.astype(np.int64)),
            "mask": torch.from_numpy(mask.astype(np.float32) / 255)[None],
            "betas": torch.from_numpy(self.fits["betas"][i]),
            "pose": torch.from_numpy(self.fits["pose"][i]),
            "transl": torch.from_numpy(self.fits["transl"][i]),
            "K": torch.from_numpy(self.K[i]),
            "world_to_camera": torch.from_numpy(self.fits["world_to_camera"][i]),
            "index": torch.tensor(i),
        }


class BatchSampler(torch.utils.data.Sampler):
    """Endless per-process index batches from one global order: epochs are seeded permutations laid end to end;
    global batch s is positions [s·B, (s+1)·B) of that stream and process `rank` takes its `batch // world` slice.
    Starting at `start_step` continues a run exactly where it stopped."""

    def __init__(self, size: int, *, batch: int, rank: int = 0, world: int = 1, seed: int = 0,
                 start_step: int = 0) -> None:
        if batch % world:
            raise ValueError(f"global batch {batch} is not divisible by {world} processes")
        self.size, self.batch, self.rank, self.world = size, batch, rank, world
        self.seed, self.start_step = seed, start_step
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.size))
        return self._perm[1]

    def batch_at(self, step: int) -> list[int]:
        local = self.batch // self.world
        first = step * self.batch + self.rank * local
        return [int(self._permutation(p // self.size)[p % self.size]) for p in range(first, first + local)]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.batch_at(step)
            step += 1


def _rotation(axis: int, angle: Tensor) -> Tensor:
    """(B,) radians → (B, 3, 3) right-handed rotation about x (0) or y (1)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = [one, zero, zero, zero, c, -s, zero, s, c]
    else:
        rows = [c, zero, s, zero, one, zero, -s, zero, c]
    return torch.stack(rows, -1).reshape(-1, 3, 3)


def rotate_about_body(world_to_camera: Tensor, root_rotation: Tensor, center: Tensor, yaw: Tensor,
                      pitch: Tensor) -> Tensor:
    """Cameras moved around the body: the camera orbits `center` by `yaw` about the body's own up axis (its root
    frame's +Y; positive towards the subject's left, as Camera.orbit) and by `pitch` about the root frame's +X
    (positive raises a frontal camera). The paper's novel views (docs/architecture.md §Inputs and cameras) in the body
    frame.

    world_to_camera (B, 4, 4) body frame → camera; root_rotation (B, 3, 3); center (B, 3) body frame (the pelvis);
    yaw, pitch (B,) radians. Returns (B, 4, 4). yaw = pitch = 0 returns the input.
    """
    # eye motion M = T(c) · R_root · Ry(yaw) · Rx(−pitch) · R_rootᵀ · T(−c); the new world_to_camera is w2c · M⁻¹
    local = _rotation(1, yaw) @ _rotation(0, -pitch)
    R = root_rotation @ local @ root_rotation.transpose(1, 2)
    inverse = torch.zeros_like(world_to_camera)
    inverse[:, :3, :3] = R.transpose(1, 2)
    inverse[:, :3, 3] = center - (R.transpose(1, 2) @ center[..., None])[..., 0]
    inverse[:, 3, 3] = 1
    return world_to_camera @ inverse

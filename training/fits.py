"""Reading SMPL fits of a photo collection, safely, in the forms regressors and AMASS write
(docs/architecture.md §Data).

Accepted files: `.npz` (never with pickled objects), `.json`, and `.pkl` read by a restricted unpickler that builds
numpy arrays and plain containers only and refuses anything else by name (a pickle can run code when loaded).
A fits source is either a folder of per-image files (`<image stem>.npz|.json|.pkl`) or one file holding many fits:
a mapping image name → fit, or batched arrays with an `imgname` / `image_names` / `names` column.

A fit is a mapping with (first matching key wins, a leading batch dim of 1 is dropped, several people → the first):
- pose: `pose` / `poses` / `full_pose` / `thetas` / `pred_pose` — (72,), (24, 3) axis-angle or (24, 3, 3)
  rotation matrices; AMASS SMPL-H/SMPL-X rows (156 / 165 values) keep their 22 body joints + zero hands;
  or `global_orient` + `body_pose` (also AMASS `root_orient` + `pose_body`).
- betas: `betas` / `shape` / `pred_shape` / `pred_betas` (optional, zeros); transl: `transl` / `trans`.
- camera, one of: `orig_cam` (sx, sy, tx, ty), the weak-perspective camera of VIBE/PARE-style regressors, in the
  original image's normalised coordinates (x right over the width, y down over the height, both in [-1, 1]);
  `pred_cam_t` / `cam_t` + `focal_length` (pixels; principal point at the image centre); or `K` +
  `world_to_camera` (this project's own form, pixels of the original image).
"""

from __future__ import annotations

import io
import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neural.rotations import matrix_to_axis_angle

FIT_SUFFIXES = (".npz", ".json", ".pkl")
_NAME_KEYS = ("imgname", "image_names", "image_name", "names", "name")
_POSE_KEYS = ("pose", "poses", "full_pose", "thetas", "pred_pose")
_BETA_KEYS = ("betas", "shape", "pred_shape", "pred_betas")
# weak perspective is emulated by a narrow pinhole: a 12° vertical field of view over the person's crop
# (docs/architecture.md §Inputs and cameras)
WEAK_PERSPECTIVE_FOV_DEG = 12.0


class FitError(ValueError):
    """A fit that cannot be used; the message says why (it goes into the prepare report)."""


@dataclass(frozen=True)
class Fit:
    """One image's body and camera. pose (24, 3) axis-angle, betas (n,), transl (3,) body frame; K (3, 3) pixels of
    the original image (pixel centres at integers); world_to_camera (4, 4) body frame → OpenCV camera."""

    pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    K: np.ndarray
    world_to_camera: np.ndarray


class _NumpyUnpickler(pickle.Unpickler):
    """Builds numpy arrays, dtypes and plain containers only; refuses every other global before it is called."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict"),
    }

    def __init__(self, data: bytes, source: str) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise FitError(f"{self.source}: the pickle asks for {module}.{name}; only numpy arrays and plain containers "
                       "are loaded from pickles (they can run code). Re-save the fits in a trusted environment as "
                       ".npz (np.savez) or .json" + (" — joblib pickles included" if "joblib" in module else ""))


def load_mapping(path: Path) -> dict[str, Any]:
    """A fits file as a dict of arrays / nested dicts (npz: allow_pickle=False; pkl: numpy-only unpickler)."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        if path.suffix == ".json":
            return json.loads(path.read_text())
        if path.suffix == ".pkl":
            data = _NumpyUnpickler(path.read_bytes(), str(path)).load()
            if not isinstance(data, dict):
                raise FitError(f"{path}: holds a {type(data).__name__}; expected a dict of arrays")
            return data
    except FitError:
        raise
    except (OSError, ValueError, pickle.UnpicklingError, EOFError, json.JSONDecodeError) as error:
        raise FitError(f"{path}: unreadable ({type(error).__name__}: {error})") from error
    raise FitError(f"{path}: unknown fits format {path.suffix!r}; use one of {FIT_SUFFIXES}")


def read_fits(source: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """All raw fits of a folder or file, keyed by image stem; and the problems (file or name → reason)."""
    source = Path(source)
    fits: dict[str, dict[str, Any]] = {}
    problems: dict[str, str] = {}
    if source.is_dir():
        for path in sorted(p for p in source.iterdir() if p.suffix in FIT_SUFFIXES):
            try:
                fits[path.stem] = load_mapping(path)
            except FitError as error:
                problems[path.stem] = str(error)
        return fits, problems
    if not source.is_file():
        raise FileNotFoundError(f"fits {source} is neither a file nor a folder")
    data = load_mapping(source)  # a file that cannot be read at all fails the whole run
    name_key = next((k for k in _NAME_KEYS if k in data), None)
    if name_key is not None:
        names = [Path(str(n)).stem for n in np.asarray(data[name_key]).reshape(-1)]
        for i, name in enumerate(names):
            fits[name] = {k: np.asarray(v)[i] for k, v in data.items()
                          if k != name_key and np.ndim(v) > 0 and len(v) == len(names)}
    elif all(isinstance(v, dict) for v in data.values()):
        fits = {Path(str(k)).stem: v for k, v in data.items()}
    else:
        raise FitError(f"{source}: neither a name → fit mapping nor batched arrays with one of {_NAME_KEYS}")
    return fits, problems


def _array(raw: dict[str, Any], key: str) -> np.ndarray:
    value = np.asarray(raw[key], dtype=np.float64)
    if not np.isfinite(value).all():
        raise FitError(f"'{key}' holds NaN or inf values")
    return value


def _first_person(value: np.ndarray, ndim: int, key: str) -> np.ndarray:
    while value.ndim > ndim:
        if value.shape[0] < 1:
            raise FitError(f"'{key}' is empty")
        value = value[0]
    return value


def _pose(raw: dict[str, Any]) -> np.ndarray:
    if "global_orient" in raw or "root_orient" in raw:
        root = _array(raw, "global_orient" if "global_orient" in raw else "root_orient").reshape(-1)
        body = _array(raw, "body_pose" if "body_pose" in raw else "pose_body").reshape(-1)
        if body.size % 9 == 0 and root.size == 9:  # rotation matrices
            return _pose({"pose": np.concatenate([root, body]).reshape(-1, 3, 3)})
        return _pose({"pose": np.concatenate([root[:3], body])})
    key = next((k for k in _POSE_KEYS if k in raw), None)
    if key is None:
        raise FitError(f"no pose (looked for {list(_POSE_KEYS)} or global_orient + body_pose)")
    pose = _array(raw, key)
    if pose.shape[-2:] in ((24, 3), (22, 3)) and pose.ndim >= 2:
        pose = _first_person(pose, 2, key).reshape(-1)
    elif pose.shape[-2:] == (3, 3):
        mats = pose.reshape(-1, 3, 3)
        if len(mats) % 24 and len(mats) % 22:
            raise FitError(f"'{key}' holds {len(mats)} rotation matrices; expected 24 (or 22 body joints)")
        mats = mats[:24] if len(mats) % 24 == 0 else mats[:22]
        if np.abs(mats @ mats.transpose(0, 2, 1) - np.eye(3)).max() > 1e-3 or (np.linalg.det(mats) < 0).any():
            raise FitError(f"'{key}' holds matrices that are not rotations")
        pose = matrix_to_axis_angle(mats).reshape(-1)
    else:
        pose = _first_person(pose, 1, key)
    if pose.size >= 72 and pose.size not in (156, 165):
        return pose[:72].reshape(24, 3)
    if pose.size >= 66:  # 22 body joints of SMPL-H / SMPL-X (AMASS) → SMPL's 24 with zero hands
        return np.concatenate([pose[:66], np.zeros(6)]).reshape(24, 3)
    raise FitError(f"'{key}' has {pose.size} values; expected 72 (SMPL), 156/165 (AMASS SMPL-H/X) or ≥ 66")


def _camera(raw: dict[str, Any], width: int, height: int, crop_height: float) -> tuple[np.ndarray, np.ndarray]:
    w2c = np.eye(4)
    if "K" in raw and "world_to_camera" in raw:
        K, w2c = _array(raw, "K").reshape(3, 3), _array(raw, "world_to_camera").reshape(4, 4)
        if np.abs(w2c[:3, :3] @ w2c[:3, :3].T - np.eye(3)).max() > 1e-3:
            raise FitError("'world_to_camera' is not rigid (its rotation part is not orthonormal)")
        return K, w2c
    if "orig_cam" in raw:
        sx, sy, tx, ty = _first_person(_array(raw, "orig_cam"), 1, "orig_cam")[:4]
        if sx <= 0 or sy <= 0:
            raise FitError(f"'orig_cam' has non-positive scale ({sx:.4g}, {sy:.4g})")
        # x_pix + ½ = (sx (X + tx) + 1) W/2: a pinhole at depth d with fy·/d = sy H/2 matches it to first order;
        # the focal gives the person's crop a 12° field of view, as the paper's camera does
        fy = 0.5 * crop_height / math.tan(math.radians(WEAK_PERSPECTIVE_FOV_DEG / 2))
        depth = fy / (sy * height / 2)
        K = np.array([[depth * sx * width / 2, 0, width / 2 - 0.5], [0, fy, height / 2 - 0.5], [0, 0, 1]])
        w2c[:3, 3] = (tx, ty, depth)
        return K, w2c
    key = "pred_cam_t" if "pred_cam_t" in raw else "cam_t" if "cam_t" in raw else None
    if key is not None and "focal_length" in raw:
        t = _first_person(_array(raw, key), 1, key)[:3]
        f = float(np.asarray(_array(raw, "focal_length")).reshape(-1)[0])
        if f <= 0 or t[2] <= 0:
            raise FitError(f"camera focal {f:.4g} or depth {t[2]:.4g} is not positive")
        w2c[:3, 3] = t
        return np.array([[f, 0, width / 2 - 0.5], [0, f, height / 2 - 0.5], [0, 0, 1]]), w2c
    raise FitError("no camera (looked for orig_cam, pred_cam_t/cam_t + focal_length, or K + world_to_camera)")


def normalize_fit(raw: dict[str, Any], *, width: int, height: int, crop_height: float | None = None) -> Fit:
    """A raw fit for an image of width×height pixels → Fit. crop_height (pixels): the person's frame height, which
    sets the focal of a weak-perspective camera (default: the image height). Raises FitError."""
    if not isinstance(raw, dict):
        raise FitError(f"fit is a {type(raw).__name__}; expected a mapping of arrays")
    try:
        pose = _pose(raw)
        key = next((k for k in _BETA_KEYS if k in raw), None)
        betas = _first_person(_array(raw, key), 1, key) if key else np.zeros(10)
        key = "transl" if "transl" in raw else "trans" if "trans" in raw else None
        transl = _first_person(_array(raw, key), 1, key)[:3] if key else np.zeros(3)
        K, w2c = _camera(raw, width, height, crop_height or height)
    except (TypeError, IndexError) as error:  # ragged or non-numeric values
        raise FitError(f"malformed values ({type(error).__name__}: {error})") from error
    if transl.shape != (3,) or betas.ndim != 1:
        raise FitError(f"transl {transl.shape} / betas {betas.shape} have the wrong shape; expected (3,) / (n,)")
    return Fit(pose=pose, betas=betas, transl=transl, K=K, world_to_camera=w2c)

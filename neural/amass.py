"""Read AMASS-style motion files (.npz) as SMPL poses: the one reader behind the add-on's motion import
(addon/motion.py) and `python -m neural render` (commands/render.py); docs/overview.md §What users ask for; paper §3.1
(the generator is conditioned on SMPL's 24 joint rotations).

An AMASS .npz holds `poses` (T, 3·J) axis-angle, root first, with J = 24 (SMPL, (T, 72)), 52 (SMPL-H, (T, 156))
or 55 (SMPL-X, (T, 165)); `trans` (T, 3) metres; `betas` (n,); `mocap_framerate` (Hz; some releases spell it
`mocap_frame_rate`). SMPL-H and SMPL-X begin with SMPL's 22 body joints, then hands (and face) that SMPL does not
have: those files give joints 0..21 and SMPL's two hand joints (22, 23) stay at rest. A (T, 72) array is taken as
SMPL's 24 joints. Poses stay in the file's world (AMASS: Z up); turning them into a body frame is the caller's job.

numpy only (the add-on imports this without torch). Only plain arrays are read (allow_pickle=False): an .npz from
anywhere cannot run code. Every error names the file and the key, and says what was expected.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SMPL_JOINTS = 24
BODY_JOINTS = 22  # SMPL's joints 0..21, shared by SMPL-H and SMPL-X; 22, 23 are SMPL's hands
FPS_KEYS = ("mocap_framerate", "mocap_frame_rate")
_EXPECTED = ("an AMASS motion holds poses (T, 72) SMPL or (T, 156) SMPL-H or (T, 165) SMPL-X axis-angle, "
             "trans (T, 3), betas (n,) and mocap_framerate")


@dataclass(frozen=True, kw_only=True)
class AmassMotion:
    """A motion read from `path`, in the file's world frame (AMASS: Z up, metres).

    poses: (T, 24, 3) SMPL axis-angle, root first (joints 22, 23 zero unless the file is SMPL (T, 72)).
    trans: (T, 3) root translation; zeros where the file has no `trans` (then has_trans is False).
    betas: (n,) shape coefficients as stored (n = 0 where the file has none).
    fps: capture rate in Hz, None where the file has none.
    joints: J, the joints per frame in the file (24 SMPL, 52 SMPL-H, 55 SMPL-X).
    """

    path: Path
    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    fps: float | None
    joints: int
    has_trans: bool


def read_amass(path: str | Path, *, require_trans: bool = False, require_fps: bool = False) -> AmassMotion:
    """Read an AMASS-style .npz (FileNotFoundError if missing; ValueError naming the file, key and shape or value
    on bad input). require_trans / require_fps: refuse files without `trans` / a frame rate key. A .bvh is
    retargeted onto the free body (neural/retarget.py) and given in AMASS's Z-up world, with trans and fps."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"motion file {path} does not exist")
    if path.suffix.lower() == ".bvh":  # mocap of any common skeleton, retargeted onto the free body
        return _from_bvh(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"motion file {path} is not a readable .npz without pickles: {error}") from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"motion file {path} is a single .npy array of shape {np.shape(data)}, not an .npz "
                         f"archive of named arrays; {_EXPECTED}")
    with data:
        keys = sorted(data.files)
        fps_key = next((k for k in FPS_KEYS if k in keys), None)
        missing = [k for k, needed in (("poses", True), ("trans", require_trans)) if needed and k not in keys]
        if require_fps and fps_key is None:
            missing.append(FPS_KEYS[0])
        if missing:
            raise ValueError(f"motion file {path} lacks {missing} (it has {keys}); {_EXPECTED}")
        poses = _array(data, "poses", path)
        trans = _array(data, "trans", path) if "trans" in keys else None
        betas = _array(data, "betas", path) if "betas" in keys else np.zeros(0)
        rate = _array(data, fps_key, path) if fps_key else None

    width = poses.shape[1] if poses.ndim == 2 and len(poses) else 0  # 0: wrong rank or no frames
    if not (width == 3 * SMPL_JOINTS or (width >= 3 * BODY_JOINTS and width % 3 == 0)):
        raise ValueError(f"motion file {path}: 'poses' has shape {poses.shape}; expected (T, 72) SMPL or (T, 3·J) "
                         "with J ≥ 22 joints, e.g. (T, 156) SMPL-H or (T, 165) SMPL-X, axis-angle with T ≥ 1 frames")
    T, joints = len(poses), width // 3
    _finite(poses, "poses", path)
    if trans is not None:
        if trans.shape != (T, 3):
            raise ValueError(f"motion file {path}: 'trans' has shape {trans.shape}; expected ({T}, 3) like 'poses' "
                             f"{poses.shape}")
        _finite(trans, "trans", path)
    if betas.ndim > 2 or (betas.ndim == 2 and betas.shape[0] != 1):
        raise ValueError(f"motion file {path}: 'betas' has shape {betas.shape}; expected (n,) shape coefficients "
                         "(one body for the whole motion)")
    betas = betas.reshape(-1)
    _finite(betas, "betas", path)
    fps = None
    if rate is not None:
        if rate.size != 1 or not np.isfinite(rate).all() or not float(rate.reshape(-1)[0]) > 0:
            raise ValueError(f"motion file {path}: '{fps_key}' is {rate.tolist()}; expected one capture rate in "
                             "Hz > 0 (e.g. 120.0)")
        fps = float(rate.reshape(-1)[0])

    body = poses.reshape(T, joints, 3)
    smpl = np.zeros((T, SMPL_JOINTS, 3))
    kept = SMPL_JOINTS if joints == SMPL_JOINTS else BODY_JOINTS  # SMPL-H/X joints 22.. are fingers, not hands
    smpl[:, :kept] = body[:, :kept]
    return AmassMotion(path=path, poses=smpl, trans=np.zeros((T, 3)) if trans is None else trans, betas=betas,
                       fps=fps, joints=joints, has_trans=trans is not None)


def _array(data: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """data[key] as float64, refusing object arrays (pickles) and non-numbers by name."""
    try:
        value = data[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:  # pickles; damaged members
        raise ValueError(f"motion file {path}: '{key}' cannot be read as a plain array without pickles ({error}); "
                         "save it as a numeric array") from error
    if value.dtype.kind not in "fiub":
        raise ValueError(f"motion file {path}: '{key}' has dtype {value.dtype}; expected numbers (float)")
    return np.asarray(value, dtype=np.float64)


def _finite(value: np.ndarray, key: str, path: Path) -> None:
    if not np.isfinite(value).all():
        first = np.argwhere(~np.isfinite(value))[0]
        raise ValueError(f"motion file {path}: '{key}' holds NaN or inf (first at index {tuple(first.tolist())}); "
                         "clean or trim the motion")


def _from_bvh(path: Path) -> AmassMotion:
    """A .bvh read as an AMASS motion: retargeted onto the free body, Z-up world (neural/retarget.py, imported
    here: only .bvh files need it)."""
    from .retarget import free_body_target, retarget_bvh, to_z_up

    target = free_body_target()
    motion, source = retarget_bvh(path, target)
    poses, trans = to_z_up(motion, target.joints[0])
    return AmassMotion(path=path, poses=poses, trans=trans, betas=np.zeros(0), fps=motion.fps,
                       joints=len(source.names), has_trans=True)

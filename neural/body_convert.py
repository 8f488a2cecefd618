"""Convert an official SMPL .pkl into the project's body .npz, without chumpy and without trusting the pickle.

The official SMPL model files (Loper et al. 2015) are Python 2 pickles holding numpy arrays, a chumpy `Ch`
object (shapedirs) and a scipy.sparse J_regressor. A plain `pickle.load` would import and run whatever the
file names, so `_SafeUnpickler` admits only the classes such a file needs and maps chumpy and scipy.sparse
classes to small stand-ins that only hold their state; anything else is refused before it is called.
Used by `python -m neural body convert SRC.pkl DST.npz` (neural/body.py).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .files import refuse_overwriting_input, write_atomic

try:  # numpy 2 moved these to numpy._core (numpy 1.26 has only part of it)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - depends on the numpy version
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

KEEP_KEYS = ("v_template", "f", "weights", "J_regressor", "kintree_table", "shapedirs", "posedirs")


class _ChumpyStandIn:
    """Holds a chumpy object's pickled state; the plain array is its `x` term."""

    def __setstate__(self, state: dict) -> None:
        self.state = state


class _SparseStandIn:
    """Holds a scipy.sparse csc/csr matrix's pickled state (data, indices, indptr, shape)."""

    format = ""

    def __setstate__(self, state: dict) -> None:
        self.state = state


class _CscStandIn(_SparseStandIn):
    format = "csc"


class _CsrStandIn(_SparseStandIn):
    format = "csr"


def _reconstructor(cls, base, state):
    """copyreg._reconstructor (protocol 0/1 pickles of new-style objects), for the stand-ins only."""
    if not (isinstance(cls, type) and issubclass(cls, (_ChumpyStandIn, _SparseStandIn)) and base is object):
        raise pickle.UnpicklingError(f"copyreg._reconstructor called for {cls!r}; only expected classes are built")
    return object.__new__(cls)


_NUMPY = {"_reconstruct": _multiarray._reconstruct, "scalar": _multiarray.scalar, "_frombuffer": _numeric._frombuffer}
_SPARSE = {"csc_matrix": _CscStandIn, "csc_array": _CscStandIn, "csr_matrix": _CsrStandIn, "csr_array": _CsrStandIn}
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(f"numpy.{core}.{mod}", name): obj for core in ("core", "_core") for mod in ("multiarray", "numeric")
       for name, obj in _NUMPY.items()},
    **{(f"scipy.sparse.{mod}", name): cls for mod in ("csc", "_csc", "csr", "_csr", "compressed", "_compressed")
       for name, cls in _SPARSE.items()},
    ("chumpy.ch", "Ch"): _ChumpyStandIn,
    **{(mod, "_reconstructor"): _reconstructor for mod in ("copyreg", "copy_reg")},
    # find_class gets the names as written: Python 2 (and protocol < 3) spell builtins "__builtin__"
    **{(mod, name): obj for mod in ("builtins", "__builtin__")
       for name, obj in (("object", object), ("set", set), ("frozenset", frozenset))},
    ("_codecs", "encode"): __import__("_codecs").encode,  # Python 3 protocol-2 pickles of bytes
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, source: Path) -> None:
        super().__init__(file, encoding="latin1")  # Python 2 str → str; numpy takes latin1 buffers
        self.source = source

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"{self.source} references {module}.{name}, which an SMPL model file does not need; refusing to "
                "load it (a pickle can run code). Only numpy arrays, chumpy Ch and scipy.sparse csc/csr are read")
        return found


def _plain(value, key: str, source: Path):
    """A stand-in or array → numpy array; other values are returned unchanged."""
    if isinstance(value, _ChumpyStandIn):
        x = value.state.get("x") if isinstance(value.state, dict) else None
        if not isinstance(x, np.ndarray):
            raise ValueError(f"{source}: key '{key}' is a chumpy expression without a plain array ('x'); "
                             "re-save it as a numpy array with chumpy installed")
        return x
    if isinstance(value, _SparseStandIn):
        return _dense(value, key, source)
    return value


def _dense(matrix: _SparseStandIn, key: str, source: Path) -> np.ndarray:
    """Compressed sparse (csc: indptr over columns, csr: over rows) → dense, duplicates summed like scipy."""
    state = matrix.state
    try:
        shape = tuple(int(n) for n in state.get("_shape", state.get("shape")))
        data, indices, indptr = (np.asarray(state[k]) for k in ("data", "indices", "indptr"))
    except (KeyError, TypeError) as error:
        raise ValueError(f"{source}: key '{key}' is a sparse matrix whose state lacks {error}") from error
    major = shape[1] if matrix.format == "csc" else shape[0]
    if len(indptr) != major + 1 or indptr[-1] != len(data) or len(indices) != len(data):
        raise ValueError(f"{source}: key '{key}' is a malformed {matrix.format} matrix of shape {shape}")
    dense = np.zeros(shape, dtype=data.dtype)
    outer = np.repeat(np.arange(major), np.diff(indptr))
    rows, cols = (indices, outer) if matrix.format == "csc" else (outer, indices)
    np.add.at(dense, (rows, cols), data)
    return dense


def read_smpl_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an SMPL-format .pkl (chumpy and sparse resolved). ValueError naming file and class."""
    path = Path(path)
    with open(path, "rb") as file:
        try:
            raw = _SafeUnpickler(file, path).load()
        except pickle.UnpicklingError as error:  # ours name the file already; pickle's own do not
            message = str(error) if str(path) in str(error) else f"{path} was refused by the SMPL reader: {error}"
            raise ValueError(message) from error
        except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
            raise ValueError(f"{path} is not a readable SMPL pickle: {error}") from error
    if not isinstance(raw, dict):
        raise ValueError(f"{path} holds a {type(raw).__name__}; an SMPL model file holds a dict of arrays")
    arrays = {}
    for key in KEEP_KEYS:
        if key in raw:
            arrays[key] = np.asarray(_plain(raw[key], key, path))
    return arrays


def convert_smpl_pickle(src: str | Path, dst: str | Path) -> Path:
    """Write `dst` (.npz, float32, pickle-free) from the SMPL pickle `src`, after checking it as a body file."""
    from .body import BodyModel

    src, dst = Path(src), Path(dst)
    refuse_overwriting_input(dst, src)
    arrays = read_smpl_pickle(src)
    BodyModel(arrays=arrays, source=str(src))  # same checks as BodyModel.load: fail before writing
    out = {k: (v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v) for k, v in arrays.items()}
    out["f"] = arrays["f"].astype(np.int64)
    out["kintree_table"] = arrays["kintree_table"].astype(np.int64)
    out["kintree_table"][0, 0] = -1  # SMPL stores the root's parent as uint32 4294967295
    dst.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as file:  # a file object, so numpy does not append ".npz" to another suffix
            np.savez_compressed(file, **out)
    return write_atomic(dst, write)


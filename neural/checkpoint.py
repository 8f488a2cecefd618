"""Generator checkpoints: one `.safetensors` file with JSON metadata (docs/conventions.md §Checkpoints).

The file holds the generator's state dict (parameters and buffers: BN running statistics, spectral-norm u/v, the
truncation means) and, in the safetensors header's string metadata:
- `format`: "humangan-checkpoint/1"
- `config`: the `GeneratorConfig` as JSON
- `body_fingerprint`: the body model the generator was trained with (`BodyModel.fingerprint`, "V<count>-<hash>")
- `step`: training step; `extra`: free-form JSON provenance (e.g. {"body_file": "SMPL_NEUTRAL.npz", "source": ...})
- `content_sha256`: a hash of every tensor (name, dtype, shape, bytes), so a damaged file is refused.

Nothing is unpickled. Every error names the file and says what to do (`CheckpointError`, a `ValueError`).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .config import GeneratorConfig
from .files import write_atomic

FORMAT = "humangan-checkpoint/1"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the file and the reason in the message."""


@dataclass(frozen=True)
class Metadata:
    config: GeneratorConfig
    body_fingerprint: str
    step: int = 0
    format: str = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)


def content_hash(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors in name order: name, dtype, shape and raw bytes of each."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save(path: str | Path, generator, *, body_fingerprint: str, step: int = 0, extra: dict[str, Any] | None = None,
         truncation: Literal["refresh", "keep", "defer"] = "refresh") -> Path:
    """Write `generator` to `path` atomically (`.<name>.<pid>.tmp` in the same folder, fsync, os.replace).

    truncation: "refresh" first recomputes the generator's truncation means from the weights being saved
    (`compute_truncation_means()`: fixed seed, 10,000 latents), so that ψ in a checkpoint always refers to its own
    weights; "keep" keeps the means the generator has (e.g. imported ones); "defer" marks them stale in the metadata
    and `load` recomputes them (training checkpoints: the 10,000-latent pass is paid by whoever renders the file,
    not at every checkpoint)."""
    from safetensors.torch import save_file

    if truncation not in ("refresh", "keep", "defer"):
        raise ValueError(f"truncation must be 'refresh', 'keep' or 'defer', got {truncation!r}")
    path = Path(path)
    if truncation == "refresh":
        generator.compute_truncation_means()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(generator.config.to_dict()),
        "body_fingerprint": str(body_fingerprint),
        "step": str(int(step)),
        "extra": json.dumps(extra or {}),
        "content_sha256": content_hash(tensors),
        "truncation_means": "stale" if truncation == "defer" else "current",
    }
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_metadata(path: str | Path) -> Metadata:
    """The metadata of a checkpoint, without reading its tensors (validates header, format and config)."""
    path = Path(path)
    return _metadata(path, _read_header(path).get("__metadata__") or {})


def load(path: str | Path, *, body_fingerprint: str | None = None, device: str | torch.device = "cpu"):
    """(Generator in eval mode on `device`, Metadata). body_fingerprint: the body the caller will pose; a
    checkpoint made for another body is refused. Tensor shapes are checked against the config before anything is
    allocated, so memory stays bounded by the file's size."""
    from .generator import Generator

    path = Path(path)
    header = _read_header(path)
    meta = _metadata(path, header.get("__metadata__") or {})
    if body_fingerprint is not None and body_fingerprint != meta.body_fingerprint:
        raise CheckpointError(_body_mismatch(path, meta, body_fingerprint))
    with torch.device("meta"):  # the shapes the config implies, without allocating them (a config can be huge)
        expected = {k: tuple(v.shape) for k, v in Generator(meta.config).state_dict().items()}
    _check_keys(path, {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}, expected)
    tensors = read_tensors(path, header)
    generator = Generator(meta.config)
    generator.load_state_dict(tensors)
    if (header.get("__metadata__") or {}).get("truncation_means") == "stale":  # saved with truncation="defer"
        generator.compute_truncation_means()
    return generator.to(device).eval(), meta


def read_tensors(path: str | Path, header: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint on the CPU, checked against the content hash stored with them."""
    from safetensors.torch import load_file

    path = Path(path)
    header = _read_header(path) if header is None else header
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint {path} is corrupt ({error}); re-download or re-export it") from error
    stored_hash = (header.get("__metadata__") or {}).get("content_sha256")
    if stored_hash is not None and content_hash(tensors) != stored_hash:
        raise CheckpointError(f"checkpoint {path} is corrupt: its tensors do not match the content hash written "
                              "with them; re-download or re-export it")
    return tensors


def _read_header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header, after checking that the file is complete."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a generator .safetensors file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is not a safetensors checkpoint (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        first = f.read(1)
        if n > _MAX_HEADER or first != b"{":
            raise CheckpointError(f"{path} is not a safetensors checkpoint (no safetensors header); pass a "
                                  "generator checkpoint written by this project (.safetensors)")
        if 8 + n > size:
            raise CheckpointError(f"checkpoint {path} is truncated: its header needs {8 + n} bytes, the file has "
                                  f"{size}; re-download or re-export it")
        raw = first + f.read(n - 1)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not a safetensors checkpoint (unreadable header: {error})") from error
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors checkpoint (header is not a JSON object)")
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise CheckpointError(f"checkpoint {path} is truncated: it should have {8 + n + end} bytes, it has {size}; "
                              "re-download or re-export it")
    return header


def _metadata(path: Path, meta: dict[str, str]) -> Metadata:
    fmt = meta.get("format")
    if fmt != FORMAT:
        found = f"format {fmt!r}" if fmt else "no format field (not a checkpoint of this project?)"
        raise CheckpointError(f"checkpoint {path} has {found}; this version reads {FORMAT!r}. Convert it with the "
                              "version that wrote it, or import official weights with the importer")
    try:
        config = GeneratorConfig.from_dict(json.loads(meta["config"]))
        extra = json.loads(meta.get("extra", "{}"))
        return Metadata(config=config, body_fingerprint=meta["body_fingerprint"], step=int(meta.get("step", 0)),
                        format=fmt, extra=extra)
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path} has invalid metadata ({type(error).__name__}: {error})") from error


def _body_mismatch(path: Path, meta: Metadata, given: str) -> str:
    hint = meta.extra.get("body_file")
    which = f" (it was made with {hint})" if hint else ""
    return (f"checkpoint {path} was trained for the body with fingerprint {meta.body_fingerprint}{which}, but the "
            f"body given has fingerprint {given}; pass --body with the body file whose fingerprint is "
            f"{meta.body_fingerprint}")


def _check_keys(path: Path, shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> None:
    """The file's tensor names and shapes against those its config implies."""
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_some(unexpected)}")
    wrong = [k for k in sorted(set(expected) & set(shapes)) if shapes[k] != expected[k]]
    if wrong:
        more = f" (and {len(wrong) - 1} more tensors of the wrong shape)" if len(wrong) > 1 else ""
        problems.append(f"tensor {wrong[0]} has shape {shapes[wrong[0]]}, the generator built from "
                        f"the file's config expects {expected[wrong[0]]}{more}")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit its own config: " + "; ".join(problems) +
                              ". It was written by another version of the generator; re-export it")


def _some(keys: list[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + "]" + more

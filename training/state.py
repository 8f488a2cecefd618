"""A run folder's checkpoints: generator snapshots in the `neural` format plus the state needed to resume.

Every `checkpoint_every` steps the loop writes, each atomically (temporary file, fsync, rename):
- `state-<step>.safetensors`: the raw generator, the discriminator and both Adam states as tensors; step, the
  optimisers' hyper-parameters and the AMP scalers as JSON in the safetensors metadata. Never pickled.
- `generator-<step>.safetensors`: the EMA generator, written by `neural.checkpoint.save` — the file a user renders
  with.
A checkpoint counts only when both files of a step exist and read back; `latest` picks the newest such step, so
a run killed at any moment resumes from its last complete checkpoint. Snapshots at multiples of `keep_every` are
kept; the others are removed once a newer checkpoint is complete.

Both files carry a content hash of their tensors. On resume (`resume`) the newest step is read whole, its hashes
checked and every tensor checked finite; a step that fails is moved into `damaged/` (never deleted), saying why,
and the next older one is tried.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from neural.checkpoint import content_hash, read_tensors
from neural.files import write_atomic

FORMAT = "humangan-training-state/1"
DAMAGED = "damaged"  # the run's subfolder that damaged checkpoints are moved into


class StateError(ValueError):
    """A training-state file that cannot be used, with the file and the reason in the message."""
_STEP = re.compile(r"^(state|generator)-(\d+)\.safetensors$")


def state_path(run: Path, step: int) -> Path:
    return run / f"state-{step:07d}.safetensors"


def generator_path(run: Path, step: int) -> Path:
    return run / f"generator-{step:07d}.safetensors"


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in sd["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.state.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state(prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + ".state."):
            index, key = name[len(prefix) + 7:].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save(path: Path, *, step: int, generator: nn.Module, discriminator: nn.Module, g_optimizer: torch.optim.Optimizer,
         d_optimizer: torch.optim.Optimizer, g_scaler, d_scaler, extra: dict[str, Any] | None = None) -> None:
    """Write the training state of `step` to `path` atomically."""
    from safetensors.torch import save_file

    tensors = {f"G.{k}": v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    tensors.update({f"D.{k}": v.detach().to("cpu").contiguous() for k, v in discriminator.state_dict().items()})
    g_tensors, g_meta = _optimizer_tensors("opt_G", g_optimizer)
    d_tensors, d_meta = _optimizer_tensors("opt_D", d_optimizer)
    tensors.update(g_tensors)
    tensors.update(d_tensors)
    meta = {"format": FORMAT, "step": step, "opt_G": g_meta, "opt_D": d_meta,
            "scaler_G": g_scaler.state_dict(), "scaler_D": d_scaler.state_dict(), "extra": extra or {}}
    metadata = {"training_state": json.dumps(meta), "content_sha256": content_hash(tensors)}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata of a training-state file (step, optimiser settings, scalers), without its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        meta = json.loads(raw["training_state"])
    except Exception as error:  # safetensors raises its own error types; KeyError, JSONDecodeError
        raise StateError(f"training state {path} is unreadable ({type(error).__name__}: {error})") from error
    if meta.get("format") != FORMAT:
        raise StateError(f"{path}: format {meta.get('format')!r}; expected {FORMAT!r}")
    return {**meta, "content_sha256": raw.get("content_sha256")}


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of a training-state file, its content hash verified."""
    from safetensors.torch import load_file

    meta = load_metadata(path)
    try:
        tensors = load_file(str(path))
    except Exception as error:  # safetensors raises its own error types
        raise StateError(f"training state {path} is corrupt ({error})") from error
    if meta["content_sha256"] is None or content_hash(tensors) != meta["content_sha256"]:
        raise StateError(f"training state {path} is corrupt: its tensors do not match the content hash written "
                         "with them" if meta["content_sha256"] else f"training state {path} has no content hash")
    return tensors, meta


def load(path: Path, *, generator: nn.Module, discriminator: nn.Module, g_optimizer: torch.optim.Optimizer,
         d_optimizer: torch.optim.Optimizer, g_scaler, d_scaler) -> dict[str, Any]:
    """Restore everything `save` wrote, in place, after verifying it; returns the JSON metadata (with "step")."""
    tensors, meta = read(path)
    restore(tensors, meta, generator=generator, discriminator=discriminator, g_optimizer=g_optimizer,
            d_optimizer=d_optimizer, g_scaler=g_scaler, d_scaler=d_scaler)
    return meta


def restore(tensors: dict[str, torch.Tensor], meta: dict[str, Any], *, generator: nn.Module,
            discriminator: nn.Module, g_optimizer: torch.optim.Optimizer, d_optimizer: torch.optim.Optimizer,
            g_scaler, d_scaler) -> None:
    """Put what `read` returned into the modules, optimisers and scalers, in place."""
    generator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
    discriminator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})
    g_optimizer.load_state_dict(_optimizer_state("opt_G", tensors, meta["opt_G"]))
    d_optimizer.load_state_dict(_optimizer_state("opt_D", tensors, meta["opt_D"]))
    if meta["scaler_G"] and g_scaler.is_enabled():  # a CPU run's disabled scaler saved nothing
        g_scaler.load_state_dict(meta["scaler_G"])
    if meta["scaler_D"] and d_scaler.is_enabled():
        d_scaler.load_state_dict(meta["scaler_D"])


def _readable(path: Path) -> bool:
    """The file is a complete safetensors file (its header parses and its size matches the header)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size == 8 + n + end
    except (OSError, ValueError, KeyError, TypeError):
        return False


def complete_steps(run: Path) -> list[int]:
    """Steps with both a readable state file and a readable generator snapshot, ascending."""
    found: dict[int, set[str]] = {}
    for path in run.glob("*.safetensors"):
        match = _STEP.match(path.name)
        if match and _readable(path):
            found.setdefault(int(match.group(2)), set()).add(match.group(1))
    return sorted(step for step, kinds in found.items() if kinds == {"state", "generator"})


def latest(run: Path) -> int | None:
    steps = complete_steps(run)
    return steps[-1] if steps else None


@dataclass(frozen=True)
class Resumed:
    """A verified checkpoint: the training state's tensors and metadata, and the EMA generator's tensors."""

    step: int
    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    ema: dict[str, torch.Tensor]


def resume(run: Path, *, log: Callable[[str], None], main: bool = True) -> Resumed | None:
    """The newest checkpoint of `run` whose two files read back whole, match their content hashes and hold only
    finite numbers; None if there is none. A step that fails is moved into `run/damaged/` (by the main process)
    and reported through `log`, then the next older step is tried."""
    for step in reversed(complete_steps(run)):
        try:
            tensors, meta = read(state_path(run, step))
            ema = read_tensors(generator_path(run, step))
            for name, tensor in [*tensors.items(), *(("EMA " + k, v) for k, v in ema.items())]:
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise StateError(f"checkpoint of step {step} holds non-finite values in {name}")
        except ValueError as error:  # StateError, CheckpointError
            where = move_aside(run, step) if main else run / DAMAGED
            log(f"checkpoint of step {step} is damaged and was moved to {where}: {error}; trying the previous one")
            continue
        return Resumed(step=step, path=state_path(run, step), tensors=tensors, meta=meta, ema=ema)
    return None


def move_aside(run: Path, step: int) -> Path:
    """Move both files of `step` into run/damaged/ (kept for inspection, out of `latest` and `prune`)."""
    folder = run / DAMAGED
    folder.mkdir(exist_ok=True)
    for path in (state_path(run, step), generator_path(run, step)):
        if path.exists():
            shutil.move(str(path), str(folder / path.name))
    return folder


def prune(run: Path, *, keep_every: int) -> None:
    """Remove leftovers of interrupted writes, a lone file of a step whose partner was never written, and complete
    checkpoints that are neither the newest nor at a multiple of keep_every; a file that no longer reads back is
    moved into damaged/, never deleted. Call from the one process that writes checkpoints, between writes."""
    for tmp in run.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    complete = set(complete_steps(run))
    newest = max(complete, default=None)
    for path in run.glob("*.safetensors"):
        match = _STEP.match(path.name)
        if not match:
            continue
        step = int(match.group(2))
        if not _readable(path):
            move_aside(run, step)
        elif step not in complete or (step != newest and step % keep_every):
            path.unlink(missing_ok=True)

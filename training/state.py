"""A run folder's checkpoints: generator snapshots in the `neural` format plus the state needed to resume.

Every `checkpoint_every` steps the loop writes, each atomically (temporary file, fsync, rename):
- `state-<step>.safetensors`: the raw generator, the discriminator and both Adam states as tensors; step, the
  optimisers' hyper-parameters and the AMP scalers as JSON in the safetensors metadata. Never pickled.
- `generator-<step>.safetensors`: the EMA generator, written by `neural.checkpoint.save` — the file a user renders
  with.
A checkpoint counts only when both files of a step exist and read back; `latest` picks the newest such step, so
a run killed at any moment resumes from its last complete checkpoint. Snapshots at multiples of `keep_every` are
kept; the others are removed once a newer checkpoint is complete.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neural.files import write_atomic

FORMAT = "humangan-training-state/1"
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
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={"training_state": json.dumps(meta)}))


def load_metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata of a training-state file (step, optimiser settings, scalers), without its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["training_state"])
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}; expected {FORMAT!r}")
    return meta


def load(path: Path, *, generator: nn.Module, discriminator: nn.Module, g_optimizer: torch.optim.Optimizer,
         d_optimizer: torch.optim.Optimizer, g_scaler, d_scaler) -> dict[str, Any]:
    """Restore everything `save` wrote, in place; returns the JSON metadata (with "step")."""
    from safetensors.torch import load_file

    meta = load_metadata(path)
    tensors = load_file(str(path))
    generator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
    discriminator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})
    g_optimizer.load_state_dict(_optimizer_state("opt_G", tensors, meta["opt_G"]))
    d_optimizer.load_state_dict(_optimizer_state("opt_D", tensors, meta["opt_D"]))
    if meta["scaler_G"] and g_scaler.is_enabled():  # a CPU run's disabled scaler saved nothing
        g_scaler.load_state_dict(meta["scaler_G"])
    if meta["scaler_D"] and d_scaler.is_enabled():
        d_scaler.load_state_dict(meta["scaler_D"])
    return meta


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


def prune(run: Path, *, keep_every: int) -> None:
    """Remove leftovers of interrupted writes, incomplete checkpoints, and complete ones that are neither the
    newest nor at a multiple of keep_every. Call from the one process that writes checkpoints, between writes."""
    for tmp in run.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    complete = set(complete_steps(run))
    newest = max(complete, default=None)
    for path in run.glob("*.safetensors"):
        match = _STEP.match(path.name)
        if match:
            step = int(match.group(2))
            if step not in complete or (step != newest and step % keep_every):
                path.unlink(missing_ok=True)

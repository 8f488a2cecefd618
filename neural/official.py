"""Import of the released official 3DHumanGAN weights into this project's checkpoint format (paper §3;
docs/official_conventions.md §State-dict layout, §Forward pass; docs/official_weights.md for the user's steps and
licences).

The authors released one generator: MAP3DBN512L (512×256, width 420, isolated pose styles, legacy geo-feature
order), trained on SHHQ, the EMA state dict at step 295,000 (`00295000_generator_ema_state_dict.pth`, Hugging Face
`inrainbws/3DHumanGAN-SHHQ-512x256`). `import_official` reads such a state dict, or one of the 256×128 MAP3DBN
config (told apart by their widths, 420 and 384), and writes a `.safetensors` checkpoint (neural/checkpoint.py) of
the `paper-512` or `paper-256` preset:

1. The source is read with `torch.load(weights_only=True)` only: a file that needs full unpickling (the training
   script's whole-module `*_generator.pth`, anything holding a custom class) is refused, never executed.
2. Official keys are renamed to ours (`our_key`; each module's docstring lists its part of the mapping); a
   missing, unexpected or wrongly shaped tensor is an error naming the official key.
3. What inference never uses is dropped and reported (`DROPPED`): the per-image latent pool, the ablation-only
   style input, the unused `implicit0` branch, ToRGB of blocks 0–2, and optimiser state or training counters
   if the file holds any. The pose field's rgb head is kept: it is tiny and gives `PoseMap.rgb`.
4. The truncation means (w, and the pose MLP's freq/phase) are computed once from the imported weights with a
   fixed seed (10,000 latents, as the official code does, which re-draws them at every call) and stored, so that
   renders are reproducible.
5. The body fingerprint of the user's SMPL file is stored: the weights were trained on SMPL (6890 vertices).
   Provenance (source file name, sha256, step, truncation seed) goes into the checkpoint's `extra` metadata.

Official inference versus our defaults: `Generator.forward` reproduces the official `staged_forward` exactly when
asked to (recorded stratified jitter `jitter=`, the last-sample fill `last_back=True`; the white background is
always on, as in the official code), and otherwise makes the deterministic choices: bin-centre samples instead
of a fresh random jitter per call, no last-sample fill, and truncation means fixed at import.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import PRESETS, GeneratorConfig
from .files import refuse_overwriting_input
from .generator import TRUNCATION_SAMPLES, TRUNCATION_SEED
from .pose_field import OFFICIAL_PREFIXES

RELEASED_FILE = "00295000_generator_ema_state_dict.pth"
RELEASED_REPO = "inrainbws/3DHumanGAN-SHHQ-512x256"
SMPL_VERTICES = 6890
WIDTH_KEY = "synthesis_input.network.0.weight"  # (C, 2, 1, 1): tells the official configs apart
OFFICIAL_CONFIGS = {420: ("MAP3DBN512L", "paper-512"), 384: ("MAP3DBN", "paper-256")}
COMPUTED_KEYS = ("appearance.w_avg", "pose_mapping.freq_avg", "pose_mapping.phase_avg")

# (group, official key pattern, why inference never needs it)
DROPPED = (
    ("latent_pool", r"latent_pool\.", "per-image codes of the training set; never read by inference"),
    ("synthesis_style_input", r"synthesis_style_input\.", "only the disable_render ablation uses it"),
    ("implicit0", r"synthesis_mapping_network\.implicit0\.", "unused output branch of the appearance mapping"),
    ("to_rgbs m3d_0..2", r"synthesis_network\.to_rgbs\.m3d_[012]\.", "skip-RGB starts at block 3"),
)
SMPL_HINT = ("download the SMPL model (SMPL_NEUTRAL.pkl) from https://smpl.is.tue.mpg.de and convert it: "
             "`python -m neural body convert SMPL_NEUTRAL.pkl smpl.npz`, then pass --body smpl.npz")


class OfficialImportError(ValueError):
    """An official state dict that cannot be imported, with the file and the reason in the message."""


@dataclass(frozen=True)
class DroppedGroup:
    name: str
    reason: str
    tensors: int
    numel: int


@dataclass(frozen=True)
class ImportSummary:
    source: Path
    destination: Path
    sha256: str
    step: int | None
    official_config: str     # "MAP3DBN512L", "MAP3DBN" or "custom"
    preset: str              # our preset name, or "custom" for a config passed in
    kept_tensors: int
    kept_numel: int
    dropped: tuple[DroppedGroup, ...]
    body_fingerprint: str
    truncation_seed: int

    def text(self) -> str:
        step = f", step {self.step:,}" if self.step is not None else ""
        origin = f" (official {self.official_config})" if self.official_config != "custom" else ""
        lines = [f"imported {self.source.name} (sha256 {self.sha256[:16]}…{step}) as {self.preset}{origin} "
                 f"→ {self.destination}",
                 f"  kept     {self.kept_tensors:4d} tensors {self.kept_numel:>12,} values"]
        for g in self.dropped:
            lines.append(f"  dropped  {g.tensors:4d} tensors {g.numel:>12,} values  {g.name}: {g.reason}")
        lines.append(f"  computed truncation means (w, pose freq/phase) from {TRUNCATION_SAMPLES:,} latents, seed "
                     f"{self.truncation_seed} (the official code re-draws them at every call)")
        lines.append(f"  body     {self.body_fingerprint} (SMPL, {SMPL_VERTICES} vertices)")
        return "\n".join(lines)


# The renaming, official prefix ↔ ours, one table read in both directions; {n} is a block or layer number. The
# first rule that matches wins, so superres0 (our layer 7) stands before the trunk layers.
KEY_RULES = tuple((official, "pose_mapping." + ours) for official, ours in OFFICIAL_PREFIXES.items()) + (
    ("synthesis_mapping_network.superres0.", "appearance.layers.7."),
    ("synthesis_mapping_network.trunk{n}.", "appearance.layers.{n}."),
    ("synthesis_input.network.0.", "backbone.coord_input."),
    ("synthesis_network.to_rgbs.m3d_{n}.linear.", "backbone.to_rgb.{n}."),
    ("synthesis_network.network.m3d_{n}.", "backbone.blocks.{n}."),
)
BLOCK_RULES = ((".first_norm.", ".norm."), (".mlp_shared.0.", ".shared."), (".mlp_gamma.", ".gamma."),
               (".mlp_beta.", ".beta."))  # inside a backbone block


def _rename(key: str, *, to_ours: bool) -> str:
    """`key` renamed by KEY_RULES (and BLOCK_RULES inside a backbone block), official → ours or back."""
    for official, ours in KEY_RULES:
        source, target = (official, ours) if to_ours else (ours, official)
        found = re.match(re.escape(source).replace(r"\{n\}", r"(\d+)"), key)
        if found:
            number = found.group(1) if found.groups() else ""
            key = target.replace("{n}", number) + key[found.end():]
            if ours.startswith("backbone.blocks."):
                for a, b in BLOCK_RULES:
                    key = key.replace(*((a, b) if to_ours else (b, a)))
            return key
    return key


def our_key(official: str) -> str | None:
    """Official generator key → ours; None for a key of a `DROPPED` group. Unknown keys come back renamed as far
    as the rules go, and the shape check then reports them as unexpected."""
    if dropped_group(official) is not None:
        return None
    return _rename(official, to_ours=True)


def dropped_group(official: str) -> int | None:
    """Index into `DROPPED` of the group an official key belongs to, else None."""
    for i, (_, pattern, _) in enumerate(DROPPED):
        if re.match(pattern, official):
            return i
    return None


def infer_config(shapes: Mapping[str, Sequence[int]], *, source: str = "<state dict>") -> tuple[str, str]:
    """(official config name, our preset) of a state dict from its width (`WIDTH_KEY`): 420 → MAP3DBN512L /
    paper-512, 384 → MAP3DBN / paper-256. The feature order and pose mode follow from the config, not the shapes."""
    if WIDTH_KEY not in shapes:
        raise OfficialImportError(f"{source} has no tensor {WIDTH_KEY}: not a 3DHumanGAN generator state dict "
                                  f"(pass the released {RELEASED_FILE})")
    width = int(shapes[WIDTH_KEY][0])
    if width not in OFFICIAL_CONFIGS:
        known = ", ".join(f"{w} ({name})" for w, (name, _) in OFFICIAL_CONFIGS.items())
        raise OfficialImportError(f"{source} has width {width} ({WIDTH_KEY} is {tuple(shapes[WIDTH_KEY])}); the "
                                  f"official configs have widths {known}")
    return OFFICIAL_CONFIGS[width]


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], list[DroppedGroup], int | None]:
    """(tensors, dropped non-tensor entries, step stored in the file or None) of a `.pth` read with
    `torch.load(weights_only=True)`: a plain state dict, or one with optimiser state / counters beside it."""
    path = Path(path)
    if not path.is_file():
        raise OfficialImportError(f"official weights {path} do not exist; download {RELEASED_FILE} from "
                                  f"https://huggingface.co/{RELEASED_REPO}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise OfficialImportError(_refusal(path, str(error))) from error
    except Exception as error:  # torch raises many types for a file that is not a torch file at all
        raise OfficialImportError(f"{path} is not a readable PyTorch file ({type(error).__name__}: {error}); "
                                  f"re-download {RELEASED_FILE}") from error
    if not isinstance(obj, Mapping):
        raise OfficialImportError(f"{path} holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    if {"state", "param_groups"} <= set(obj):
        raise OfficialImportError(f"{path} is an optimiser state (keys 'state', 'param_groups'), not generator "
                                  f"weights; pass the *_generator_ema_state_dict.pth file")
    tensors, optimiser, counters, step = {}, [], [], None
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            tensors[str(key)] = value
        elif isinstance(value, Mapping) and {"state", "param_groups"} <= set(value):
            optimiser.append(key)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            counters.append(key)
            step = int(value) if key == "step" else step
        else:
            raise OfficialImportError(f"{path}: entry {key!r} is a {type(value).__name__}, neither a tensor nor "
                                      "optimiser state; pass a generator state dict")
    dropped = []
    if optimiser:
        dropped.append(DroppedGroup("optimiser state", f"entries {optimiser}; training only", len(optimiser), 0))
    if counters:
        dropped.append(DroppedGroup("training counters", f"entries {counters}", len(counters), 0))
    return tensors, dropped, step


def map_state_dict(official: Mapping[str, torch.Tensor], generator, *,
                   source: str = "<state dict>") -> tuple[dict[str, torch.Tensor], list[DroppedGroup]]:
    """Official tensors → state dict for our `generator` (a Generator of the target config; its own tensors give
    the expected keys, shapes and dtypes), without the computed truncation means, and the dropped groups. Every
    missing, unexpected or wrongly shaped key is an error naming the official key."""
    config = generator.config
    expected = {k: v for k, v in generator.state_dict().items() if k not in COMPUTED_KEYS}
    ours: dict[str, torch.Tensor] = {}
    counts = [[0, 0] for _ in DROPPED]
    unexpected = []
    for key, tensor in official.items():
        group = dropped_group(key)
        if group is not None:
            counts[group][0] += 1
            counts[group][1] += tensor.numel()
            continue
        mapped = our_key(key)
        if mapped not in expected:
            unexpected.append(key)
            continue
        want = expected[mapped]
        if tuple(tensor.shape) != tuple(want.shape):
            raise OfficialImportError(f"{source}: tensor {key} has shape {tuple(tensor.shape)}; the {_name(config)} "
                                      f"generator expects {tuple(want.shape)} (is it another config?)")
        if want.dtype.is_floating_point != tensor.dtype.is_floating_point:
            raise OfficialImportError(f"{source}: tensor {key} has dtype {tensor.dtype}; expected {want.dtype}")
        ours[mapped] = tensor.detach().to(dtype=want.dtype).contiguous()
    if unexpected:
        raise OfficialImportError(f"{source}: unexpected tensor {unexpected[0]}" + _more(unexpected) +
                                  "; not part of the official generator this importer knows "
                                  "(docs/official_conventions.md §State-dict layout)")
    missing = [k for k in expected if k not in ours]
    if missing:
        names = [_official_name(k) for k in missing]
        raise OfficialImportError(f"{source}: missing tensor {names[0]}" + _more(names) +
                                  "; the file is incomplete or from another model (re-download it)")
    dropped = [DroppedGroup(name, reason, n, numel) for (name, _, reason), (n, numel) in zip(DROPPED, counts) if n]
    return ours, dropped


def import_official(source: str | Path, destination: str | Path, *, body: str | Path | None,
                    config: GeneratorConfig | None = None, truncation_seed: int = TRUNCATION_SEED) -> ImportSummary:
    """Read official weights at `source`, write our checkpoint at `destination`, return the summary.

    body: the user's SMPL body file (.npz, `python -m neural body convert`), required, 6890 vertices; its
    fingerprint is stored. config: None infers `paper-512` / `paper-256` from the shapes; pass one for reduced
    test models (docs/official_conventions.md §Golden fixture)."""
    from . import checkpoint
    from .body import BodyModel
    from .generator import Generator

    source, destination = Path(source), Path(destination)
    refuse_overwriting_input(destination, source, *([body] if body is not None else []))
    if body is None:
        raise OfficialImportError(f"the official weights were trained on SMPL; a body file is required: {SMPL_HINT}")
    body_model = BodyModel.load(body)
    if body_model.num_vertices != SMPL_VERTICES:
        raise OfficialImportError(f"body file {body} has {body_model.num_vertices} vertices; the official weights "
                                  f"were trained on SMPL ({SMPL_VERTICES} vertices): {SMPL_HINT}")
    official, dropped, stored_step = read_state_dict(source)
    if config is None:
        official_name, preset_name = infer_config({k: v.shape for k, v in official.items()}, source=str(source))
        config = PRESETS[preset_name]
    else:
        preset_name = next((name for name, c in PRESETS.items() if c == config), "custom")
        official_name = next((o for o, p in OFFICIAL_CONFIGS.values() if p == preset_name), "custom")
    generator = Generator(config)
    ours, mapped_dropped = map_state_dict(official, generator, source=str(source))
    del official  # the latent pool alone is 351 MiB
    result = generator.load_state_dict(ours, strict=False)  # all but the truncation means, computed next
    assert set(result.missing_keys) == set(COMPUTED_KEYS) and not result.unexpected_keys, result
    generator.eval().compute_truncation_means(seed=truncation_seed, n=TRUNCATION_SAMPLES)
    digest = _sha256(source)
    found = re.match(r"^(\d+)_", source.name)
    step = stored_step if stored_step is not None else (int(found.group(1)) if found else None)
    summary = ImportSummary(
        source=source, destination=destination, sha256=digest, step=step, official_config=official_name,
        preset=preset_name, kept_tensors=len(ours), kept_numel=sum(t.numel() for t in ours.values()),
        dropped=tuple(mapped_dropped + dropped), body_fingerprint=body_model.fingerprint,
        truncation_seed=truncation_seed)
    extra = {"source": "official 3DHumanGAN (github 3dhumangan/3DHumanGAN)", "source_file": source.name,
             "source_sha256": digest, "source_step": step, "official_config": official_name,
             "truncation_seed": truncation_seed, "truncation_samples": TRUNCATION_SAMPLES,
             "body_file": Path(body).name, "dropped": {g.name: g.numel for g in summary.dropped}}
    checkpoint.save(destination, generator, body_fingerprint=body_model.fingerprint, step=step or 0, extra=extra,
                    truncation="keep")
    return summary


# torch's wordings for a global its weights-only reader refuses (2.6: "Unsupported global: GLOBAL x.y";
# 2.13: "unsupported GLOBAL posix.system whose module posix is blocked")
_REFUSED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", re.IGNORECASE)


def _refusal(path: Path, message: str) -> str:
    """Our message for an UnpicklingError of torch's weights-only reader. Torch's own text advises turning the
    protection off (`weights_only=False`); that advice is never relayed."""
    found = _REFUSED_GLOBAL.search(message)
    if found is not None:
        return (f"{path} was refused: loading it would run code ({found.group(1).rstrip('.')}), which a file of "
                "weights never needs. This importer reads only plain state dicts. Pass the released "
                f"{RELEASED_FILE}, or, for a whole-module *_generator.pth you trust, save its state_dict() in a "
                "separate trusted process first")
    reason = re.search(r"WeightsUnpickler error:\s*([^\n]+)", message)
    detail = reason.group(1) if reason else "its pickle stream is damaged or not one torch reads"
    return f"{path} is not a readable PyTorch file ({detail}); re-download {RELEASED_FILE}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _official_name(ours: str) -> str:
    """Our key → the official key it is imported from (for error messages)."""
    return _rename(ours, to_ours=False)


def _name(config: GeneratorConfig) -> str:
    return next((name for name, c in PRESETS.items() if c == config), f"width-{config.feature_dim}")


def _more(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more: {', '.join(keys[1:4])}{', …' if len(keys) > 4 else ''})" if len(keys) > 1 \
        else ""

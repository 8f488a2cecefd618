"""Generator configurations: one frozen dataclass and its named presets (docs/architecture.md §Configurations).

`paper-256` is the official MAP3DBN, `paper-512` the official MAP3DBN512L that the released weights were trained
with (width 420, isolated pose styles, legacy feature order). `cpu-small` is sized for this project's 2-core CPU,
`tiny` for tests. Ablation variants (paper Table 2) are `Literal` fields, each handled by a visible `if`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    height: int  # output image H (full resolution, the backbone's resolution)
    width: int  # output image W; images are 2:1
    render_height: int  # pose style map h (¼ of H, except paper-512: 96 for 512, as released; cpu-small ½)
    render_width: int
    latent_dim: int  # z dimension (appearance and, for the truncation mean, the pose MLP input)
    hidden_dim: int  # SIREN width of the pose field
    feature_dim: int  # style channels Ns = backbone width C
    num_samples: int = 32  # samples per ray
    ray_start: float = -0.5  # slab around the body origin's depth, metres along the unit ray
    ray_end: float = 0.55
    side_length: float = 2.85  # raw xyz is scaled by 2 / side_length before its sine embedding
    field_blocks: int = 4  # FiLM layers of the pose field
    backbone_blocks: int = 9
    pose_blocks: tuple[int, ...] = (0, 1, 2)  # backbone blocks that receive the pose style map
    spade_hidden: int = 128
    mapping_layers: int = 8  # appearance mapping FC layers (7 trunk + 1 "superres")
    mapping_lr_multiplier: float = 0.01
    pose_mode: Literal["mixed", "isolated"] = "mixed"  # mixed: map + w into pose blocks; isolated: map only
    feature_order: Literal["default", "legacy"] = "default"  # legacy = [joint dists, canonical, template, dist]
    normalization: Literal["batch", "instance"] = "batch"  # ablation: spatially-adaptive instance norm
    backbone: Literal["pixelwise", "upsampling"] = "pixelwise"  # ablation: 3×3 convs from ¼ resolution upwards
    conditioning: Literal["styles", "feed_forward"] = "styles"  # ablation: pose field at full res as backbone input
    # volume: the paper's Σ w·f along each ray; surface (ours): f read once, at the body's surface where the ray
    # meets it, so a style-map pixel holds one surface point's features, the same from every view (pose_mapping.py)
    readout: Literal["volume", "surface"] = "volume"
    readout_subsamples: int = 1  # surface readout: n×n subpixels per style-map pixel, averaged (anti-aliasing)

    def __post_init__(self) -> None:
        check_field_types(self, what="generator config")
        small = [f"{f.name} {getattr(self, f.name)}" for f in dataclasses.fields(self)
                 if type(getattr(self, f.name)) is int and getattr(self, f.name) < 1]
        if small:
            raise ValueError(f"generator config: {', '.join(small)}; sizes and counts must be ≥ 1")
        if not self.ray_start < self.ray_end or not self.side_length > 0 or not self.mapping_lr_multiplier > 0:
            raise ValueError(f"generator config: ray_start {self.ray_start} < ray_end {self.ray_end}, side_length "
                             f"{self.side_length} > 0 and mapping_lr_multiplier {self.mapping_lr_multiplier} > 0 "
                             "are required")
        if self.height != 2 * self.width:
            raise ValueError(f"images are 2:1 (H = 2W); got {self.height}×{self.width}")
        if self.render_height != 2 * self.render_width:
            raise ValueError(f"style maps are 2:1; got {self.render_height}×{self.render_width}")
        if self.readout_subsamples < 1 or (self.readout == "volume" and self.readout_subsamples != 1):
            raise ValueError(f"readout_subsamples {self.readout_subsamples}: ≥ 1, and only the surface readout "
                             f"subsamples (readout={self.readout!r} needs 1)")
        if any(not 0 <= b < self.backbone_blocks for b in self.pose_blocks):
            raise ValueError(f"pose_blocks {self.pose_blocks} outside 0..{self.backbone_blocks - 1}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeneratorConfig":
        return cls(**checked_fields(cls, data, what="generator config"))

    def replace(self, **changes: Any) -> "GeneratorConfig":
        return self.from_dict({**self.to_dict(), **changes})


def checked_fields(cls: type, data: dict[str, Any], *, what: str) -> dict[str, Any]:
    """The keyword arguments of dataclass `cls` from a JSON-like dict: unknown and missing keys refused by name, lists turned
    back into the tuples that a frozen config holds (JSON has no tuples)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; valid keys: {sorted(names)}")
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if required - set(data):
        raise ValueError(f"{what} lacks the keys {sorted(required - set(data))}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def check_field_types(config: Any, *, what: str) -> None:
    """Check every field of the dataclass instance `config` against its annotation (int, float, bool, str,
    `Literal[...]` choices, `X | None`, `tuple[X, ...]`, `tuple[X, Y]`, nested dataclasses); raise ValueError naming
    the field, the value and what is allowed. One check for every config, driven by the annotations only."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        problem = _type_problem(value, hints[f.name])
        if problem:
            raise ValueError(f"{what} field {f.name} = {value!r}: {problem}")


def _type_problem(value: Any, hint: Any) -> str | None:
    """None when `value` fits `hint`, else what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return None if value in args and type(value) is type(args[0]) else f"expected one of {list(args)}"
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, a) for a in args]
        return None if None in problems else "expected " + " or ".join(_name(a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return f"expected a tuple ({_name(hint)}), got {type(value).__name__}"
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            return f"expected {len(items)} items ({_name(hint)}), got {len(value)}"
        inner = [p for p in (_type_problem(v, a) for v, a in zip(value, items)) if p]
        return f"item: {inner[0]}" if inner else None
    if hint is type(None):
        return None if value is None else "expected None"
    if hint is float:  # JSON writes 1.0 as 1; NaN and inf are never a valid setting
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"expected a finite number, got {type(value).__name__}"
    if hint in (int, bool, str):  # bool is an int subclass: an exact type check keeps True out of int fields
        return None if type(value) is hint else f"expected {hint.__name__}, got {type(value).__name__}"
    if dataclasses.is_dataclass(hint):
        return None if isinstance(value, hint) else f"expected a {hint.__name__}, got {type(value).__name__}"
    return None


def _name(hint: Any) -> str:
    if hint is type(None):
        return "None"
    return str(hint) if typing.get_origin(hint) else getattr(hint, "__name__", str(hint))


PRESETS: dict[str, GeneratorConfig] = {
    # MAP3DBN: 256×128, width 384, pose styles mixed with w.
    "paper-256": GeneratorConfig(
        height=256, width=128, render_height=64, render_width=32,
        latent_dim=384, hidden_dim=384, feature_dim=384,
        pose_mode="mixed", feature_order="default",
    ),
    # MAP3DBN512L, the released checkpoint: 512×256, width 420, isolated pose styles, legacy feature order.
    "paper-512": GeneratorConfig(
        height=512, width=256, render_height=96, render_width=48,
        latent_dim=420, hidden_dim=420, feature_dim=420,
        pose_mode="isolated", feature_order="legacy",
    ),
    # Trainable on a 2-core CPU in about two hours and renders at interactive rates there: ~10 images/s
    # for a training step (1 thread), ~4.5k steps of batch 8 an hour; 128×64 / width 64 ran at ~1/s. The style map
    # is ½ of the image, not the paper's ¼: at 64×32 a ¼ map (16×8) cannot carry the parts (the ground truth
    # through a 16×8 map: pose mIoU 0.24, view error 12.6; through 32×16: 0.41, 6.5; evaluate --bottleneck). It is
    # read at the body's surface: view error 9.4 instead of 11.7 at 9,000 steps (neural/assets/DEFAULT_MODEL.md).
    "cpu-small": GeneratorConfig(
        height=64, width=32, render_height=32, render_width=16,
        latent_dim=32, hidden_dim=32, feature_dim=32, num_samples=16, spade_hidden=16, readout="surface",
    ),
    # For tests: every module present, every dimension small.
    "tiny": GeneratorConfig(
        height=32, width=16, render_height=8, render_width=4,
        latent_dim=16, hidden_dim=16, feature_dim=16, num_samples=4, spade_hidden=8,
    ),
}

# Table 2 of the paper (and one of ours): each ablation changes one thing of the model.
ABLATIONS: dict[str, dict[str, Any]] = {
    "feed-forward": {"conditioning": "feed_forward"},
    # ours, not the paper's: the style map read at the body's surface (cpu-small's readout; DEFAULT_MODEL.md)
    "surface-readout": {"readout": "surface"},
    "volume-readout": {"readout": "volume", "readout_subsamples": 1},  # the paper's readout, e.g. for cpu-small
    "upsampling": {"backbone": "upsampling"},
    "instance-norm": {"normalization": "instance"},
}


def preset(name: str) -> GeneratorConfig:
    """`paper-256`, `paper-512`, `cpu-small`, `tiny`, or `<preset>+<ablation>` (e.g. `cpu-small+instance-norm`)."""
    base, _, ablation = name.partition("+")
    if base not in PRESETS:
        raise ValueError(f"unknown preset {base!r}; valid presets: {sorted(PRESETS)}")
    config = PRESETS[base]
    if ablation:
        if ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {ablation!r}; valid ablations: {sorted(ABLATIONS)}")
        config = config.replace(**ABLATIONS[ablation])
    return config

"""Training configurations: one frozen dataclass and its named presets
(docs/architecture.md §Segmentation loss, §Optimisation).

`paper-256` and `paper-512` follow the official MAP3DBN / MAP3DBN512L schedules (Adam (0, 0.9), lr 1e-4 / 4e-4
dropping to 5e-5 / 2e-4 at step 140k for 256, 5e-5 / 2e-4 throughout for 512, batch 32, grad clip 1.0, EMA 0.999,
the 8-step phase cycle with camera rotation on 4 of 8 steps, density noise annealed over 5k steps). `cpu-small`
trains on this project's 2-core CPU in under two hours (with a faster pose field and the silhouette loss), `tiny` is
for tests. Ablations of the paper's Table 2 are written `<preset>+<ablation>`: `feed-forward`, `upsampling`,
`instance-norm` and our `surface-readout` / `volume-readout` change the generator, `binary-loss` the adversarial loss.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from neural import config as generator_config
from neural.config import GeneratorConfig, check_field_types, checked_fields

# Official phase cycle (docs/architecture.md §Optimisation): which of 8 consecutive steps render from a randomly rotated
# camera.
PAPER_ROTATE_CYCLE = (False, True, True, False, False, True, False, True)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    generator: GeneratorConfig
    # Discriminator (docs/architecture.md §Discriminator): encoder widths per level (the first `levels(H, W)` are used),
    # decoder head width.
    d_channels: tuple[int, ...] = (128, 128, 256, 256, 512, 512)
    d_head: int = 64
    loss: Literal["segmentation", "binary"] = "segmentation"  # binary = the paper's ablation (loses pose control)
    batch: int = 32  # global batch, split evenly over processes
    g_lr: float = 1e-4
    d_lr: float = 4e-4
    lr_drop_step: int | None = 140_000  # from this step on both learning rates are halved
    betas: tuple[float, float] = (0.0, 0.9)
    field_lr_scale: float = 0.05  # pose field SIREN and its mapping MLP train at gen_lr × this
    grad_clip: float = 1.0
    ema_decay: float = 0.999  # with warm-up min(decay, (1 + n) / (10 + n))
    r1_lambda: float = 0.0  # R1 on the real-class log-probability (losses.r1_penalty); lazy on `r1_phases`
    r1_phases: tuple[int, ...] = (3, 7)
    silhouette_lambda: float = 0.0  # G: BCE of the pose field's opacity against the body's coverage (ours)
    depth_lambda: float = 0.0  # G: the pose field's expected ray termination to the body's surface (ours)
    mode_seeking_lambda: float = 0.0  # G: two latents, same body and camera, must differ (MSGAN; losses.py)
    mode_seeking_start: int = 0  # the step from which the mode-seeking loss is on
    rotate_cycle: tuple[bool, ...] = PAPER_ROTATE_CYCLE
    yaw_std: float = 0.4  # radians, rotated steps
    pitch_std: float = 0.1
    label_swap: float = 0.5  # probability that a real image's part map is replaced by its fit's rasterised one
    density_noise_steps: int = 5000  # density noise std = max(0, 1 - step / this)
    amp: bool = True  # float16 autocast + GradScaler, CUDA only (ignored on CPU)
    steps: int = 300_000
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 1000
    keep_every: int = 5000  # checkpoints at multiples of this are kept; others only until the next one
    seed: int = 0
    workers: int = 2  # data loader processes per training process

    def __post_init__(self) -> None:
        check_field_types(self, what="training config")
        if not self.d_channels or self.d_head < 1:
            raise ValueError(f"d_channels {self.d_channels} and d_head {self.d_head} must be non-empty / positive")
        if any(not 0 <= p < len(self.rotate_cycle) for p in self.r1_phases):
            raise ValueError(f"r1_phases {self.r1_phases} outside the {len(self.rotate_cycle)}-step cycle")
        for name in ("batch", "steps", "log_every", "sample_every", "checkpoint_every", "keep_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.workers < 0 or not (self.g_lr > 0 and self.d_lr > 0) or not 0 <= self.label_swap <= 1:
            raise ValueError(f"training config: workers {self.workers} ≥ 0, g_lr {self.g_lr} and d_lr {self.d_lr} > 0, "
                             f"label_swap {self.label_swap} in [0, 1] are required")

    @property
    def r1_gain(self) -> float:
        """Lazy R1 runs on len(r1_phases) of len(rotate_cycle) steps, so each application is scaled up."""
        return len(self.rotate_cycle) / max(1, len(self.r1_phases))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingConfig":
        data = checked_fields(cls, data, what="training config")
        if isinstance(data.get("generator"), dict):
            data["generator"] = GeneratorConfig.from_dict(data["generator"])
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainingConfig":
        return dataclasses.replace(self, **changes)


_NARROW_D = dict(d_channels=(16, 32, 32, 64, 64), d_head=16)  # 5 levels at 64×32

PRESETS: dict[str, TrainingConfig] = {
    "paper-256": TrainingConfig(generator=generator_config.PRESETS["paper-256"], r1_lambda=0.25),
    "paper-512": TrainingConfig(generator=generator_config.PRESETS["paper-512"], g_lr=5e-5, d_lr=2e-4,
                                lr_drop_step=None),
    # Sized for a 2-core CPU: ~10 images/s on one thread. A schedule this short needs the pose field to learn
    # faster than the paper's ×0.05 and the silhouette loss (losses.py), or its density never takes the body's shape,
    # and the surface-depth loss. With the surface readout the backbone can ignore w (most seeds wore one outfit), so
    # the mode-seeking loss joins once the field has formed. This is the shipped default model's recipe.
    "cpu-small": TrainingConfig(
        generator=generator_config.PRESETS["cpu-small"], **_NARROW_D, batch=8, g_lr=2e-4, d_lr=8e-4,
        lr_drop_step=None, density_noise_steps=300, field_lr_scale=0.5, silhouette_lambda=1.0, depth_lambda=1.0,
        mode_seeking_lambda=0.15, mode_seeking_start=9000, steps=12000,
        log_every=20, sample_every=200, checkpoint_every=200, keep_every=1000, workers=0,
    ),
    "tiny": TrainingConfig(
        generator=generator_config.PRESETS["tiny"], d_channels=(8, 8, 16, 16), d_head=8, batch=4,
        lr_drop_step=None, density_noise_steps=10, steps=20, log_every=1, sample_every=10,
        checkpoint_every=5, keep_every=10, workers=0,
    ),
}

ABLATIONS: dict[str, dict[str, Any]] = {"binary-loss": {"loss": "binary"}}  # plus the generator's own


def preset(name: str) -> TrainingConfig:
    """`paper-256`, `paper-512`, `cpu-small`, `tiny`, or `<preset>+<ablation>` with ablation one of
    `feed-forward`, `upsampling`, `instance-norm`, `surface-readout`, `volume-readout` (generator) or
    `binary-loss` (training)."""
    base, _, ablation = name.partition("+")
    if base not in PRESETS:
        raise ValueError(f"unknown training preset {base!r}; valid presets: {sorted(PRESETS)}")
    config = PRESETS[base]
    if not ablation:
        return config
    if ablation in ABLATIONS:
        return config.replace(**ABLATIONS[ablation])
    if ablation in generator_config.ABLATIONS:
        return config.replace(generator=generator_config.preset(name))
    valid = sorted([*ABLATIONS, *generator_config.ABLATIONS])
    raise ValueError(f"unknown ablation {ablation!r}; valid ablations: {valid}")

"""How much memory training and synthesis need (rough, deliberately on the high side), for `neural.memory.check_fits`.

Measured peaks (resident set, 1 thread, CPU) against these models: see docs/training.md "Memory". A training step
holds, per image, the pose field's activations at every ray sample (render_h × render_w × num_samples points ×
hidden_dim × field_blocks), the backbone's (H × W × feature_dim × backbone_blocks) and per-pixel work on the body
(rasterisation, labels); plus the weights, their gradients, Adam's two moments and the EMA copy.
"""

from __future__ import annotations

import torch

from neural.config import GeneratorConfig
from neural.memory import available_bytes, check_fits

from .config import TrainingConfig

BASE = 400 * 2**20  # interpreter, torch, body model, data
# bytes per unit, fitted to measured peaks of tiny, cpu-small and paper-256 steps (0.99× to 1.35× of them)
PER_FIELD_VALUE, PER_BACKBONE_VALUE, PER_PIXEL = 60, 8, 8000
SYNTH_PER_FINE_PIXEL = 200  # synth renders at 2× supersampling: bytes per fine pixel and image, measured 181


def training_bytes(generator: GeneratorConfig, discriminator_params: int) -> tuple[int, int]:
    """(fixed, per image): estimated peak bytes of one training step on one process are fixed + batch × per image."""
    g = generator
    field = g.render_height * g.render_width * g.num_samples * g.hidden_dim * g.field_blocks
    backbone = g.height * g.width * g.feature_dim * g.backbone_blocks
    per_image = PER_FIELD_VALUE * field + PER_BACKBONE_VALUE * backbone + PER_PIXEL * g.height * g.width
    return BASE + 4 * 5 * (generator_params(g) + discriminator_params), per_image  # weights, grads, Adam ×2, EMA


def generator_params(config: GeneratorConfig) -> int:
    """Number of the generator's parameters and buffers, counted without allocating them."""
    from neural.generator import Generator

    with torch.device("meta"):
        return sum(t.numel() for t in Generator(config).state_dict().values())


def check_training(config: TrainingConfig, device: torch.device, *, world: int = 1) -> None:
    """Refuse a global batch whose training step cannot fit on `device`, saying how large a batch would."""
    from .discriminator import NUM_CLASSES, UNetDiscriminator

    generator, batch = config.generator, config.batch
    with torch.device("meta"):
        D = UNetDiscriminator(height=generator.height, width=generator.width, channels=config.d_channels,
                              head=config.d_head, num_classes=NUM_CLASSES)
    fixed, per_image = training_bytes(generator, sum(p.numel() for p in D.parameters()))
    limit = available_bytes(device)
    most = max(0, (limit - fixed) // per_image) * world
    per_process = f" ({batch // world} per process)" if world > 1 else ""
    check_fits(f"training batch {batch}{per_process} at {generator.width}×{generator.height}",
               fixed + batch // world * per_image, device=device, limit=limit,
               hint=f"pass --batch {most} or less" if most else "this model does not fit on this device")


def synth_batch(width: int, height: int, *, batch: int) -> int:
    """The largest batch ≤ `batch` whose rendering fits in the memory available; MemoryError if not even one does."""
    per_image = SYNTH_PER_FINE_PIXEL * 4 * width * height
    limit = available_bytes()
    check_fits(f"synth --size {width}x{height}", BASE + per_image, limit=limit,
               hint="choose a smaller --size (e.g. 128x256)")
    return int(min(batch, (limit - BASE) // per_image))

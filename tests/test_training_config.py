"""training/config.py: presets follow the paper's schedules; ablations; JSON round trip; unknown keys fail."""

import json

import pytest

from neural import config as generator_config
from training.config import PAPER_ROTATE_CYCLE, PRESETS, TrainingConfig, preset


def test_paper_presets_follow_the_official_schedules():
    p256, p512 = preset("paper-256"), preset("paper-512")
    assert (p256.g_lr, p256.d_lr, p256.lr_drop_step, p256.r1_lambda) == (1e-4, 4e-4, 140_000, 0.25)
    assert (p512.g_lr, p512.d_lr, p512.lr_drop_step, p512.r1_lambda) == (5e-5, 2e-4, None, 0.0)
    for p in (p256, p512):
        assert (p.batch, p.betas, p.grad_clip, p.ema_decay, p.field_lr_scale, p.steps) == (32, (0.0, 0.9), 1.0,
                                                                                            0.999, 0.05, 300_000)
        assert p.rotate_cycle == PAPER_ROTATE_CYCLE and sum(p.rotate_cycle) == 4 and p.r1_phases == (3, 7)
        assert (p.yaw_std, p.pitch_std, p.label_swap, p.density_noise_steps) == (0.4, 0.1, 0.5, 5000)
        assert p.d_channels == (128, 128, 256, 256, 512, 512) and p.d_head == 64
    assert p512.generator == generator_config.PRESETS["paper-512"]
    assert preset("paper-256").r1_gain == 4.0  # lazy R1 on 2 of 8 steps


def test_ablations():
    assert preset("paper-256+binary-loss").loss == "binary"
    assert preset("paper-256+binary-loss").generator == preset("paper-256").generator
    assert preset("paper-256+instance-norm").generator.normalization == "instance"
    assert preset("cpu-small+upsampling").generator.backbone == "upsampling"
    assert preset("tiny+feed-forward").generator.conditioning == "feed_forward"
    with pytest.raises(ValueError, match="valid ablations"):
        preset("paper-256+dropout")
    with pytest.raises(ValueError, match="valid presets"):
        preset("paper-1024")


def test_json_round_trip_and_unknown_keys():
    for name in PRESETS:
        config = preset(name)
        assert TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="valid keys"):
        TrainingConfig.from_dict({**preset("tiny").to_dict(), "learning_rate": 1})
    with pytest.raises(ValueError, match="r1_phases"):
        preset("tiny").replace(r1_phases=(9,))


@pytest.mark.parametrize("field,value,culprit", [
    ("batch", "4", "batch = '4': expected int, got str"),
    ("loss", "bce", "loss = 'bce': expected one of ['segmentation', 'binary']"),
    ("lr_drop_step", "soon", "lr_drop_step = 'soon': expected int or None"),
    ("betas", (0.0,), "betas = (0.0,): expected 2 items"),
    ("rotate_cycle", (1, 0), "rotate_cycle = (1, 0): item: expected bool, got int"),
    ("generator", {"height": 32}, "generator config lacks the keys ['feature_dim'"),
])
def test_training_fields_are_checked_against_their_annotations(field, value, culprit):
    from training.config import PRESETS, TrainingConfig

    with pytest.raises(ValueError) as error:
        TrainingConfig.from_dict({**PRESETS["tiny"].to_dict(), field: value})
    assert culprit in str(error.value)

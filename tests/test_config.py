"""neural/config.py: presets, ablations, and the JSON round trip that checkpoints rely on."""

import json

import pytest

from neural.config import ABLATIONS, PRESETS, GeneratorConfig, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_survive_a_json_round_trip(name):
    config = PRESETS[name]
    again = GeneratorConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and isinstance(again.pose_blocks, tuple)


def test_paper_presets_hold_the_paper_numbers():
    p512, p256 = PRESETS["paper-512"], PRESETS["paper-256"]
    assert (p512.height, p512.width, p512.feature_dim, p512.render_height) == (512, 256, 420, 96)
    assert (p512.pose_mode, p512.feature_order) == ("isolated", "legacy")
    assert (p256.height, p256.width, p256.feature_dim, p256.render_height) == (256, 128, 384, 64)
    assert p256.pose_mode == "mixed" and p256.backbone_blocks == 9 and p256.pose_blocks == (0, 1, 2)


def test_ablations_change_only_their_fields():
    for ablation, change in ABLATIONS.items():
        changed = set()
        for base in ("paper-256", "cpu-small"):
            before, after = PRESETS[base].to_dict(), preset(f"{base}+{ablation}").to_dict()
            differs = {k for k in after if after[k] != before[k]}
            assert differs == {k for k, v in change.items() if before[k] != v}
            changed |= differs
        assert changed, f"{ablation} changes neither paper-256 nor cpu-small"


def test_bad_names_and_keys_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown preset 'paper-1024'"):
        preset("paper-1024")
    with pytest.raises(ValueError, match="unknown ablation 'dropout'"):
        preset("tiny+dropout")
    with pytest.raises(ValueError, match=r"unknown generator config keys \['widht'\]"):
        GeneratorConfig.from_dict({**PRESETS["tiny"].to_dict(), "widht": 3})
    with pytest.raises(ValueError, match="2:1"):
        PRESETS["tiny"].replace(width=32)


def test_readout_subsamples_belong_to_the_surface_readout():
    assert preset("tiny+surface-readout").replace(readout_subsamples=2).readout_subsamples == 2
    with pytest.raises(ValueError, match=r"readout_subsamples 2: .*\(readout='volume' needs 1\)"):
        PRESETS["tiny"].replace(readout_subsamples=2)
    with pytest.raises(ValueError, match="readout_subsamples 0"):
        preset("tiny+surface-readout").replace(readout_subsamples=0)


@pytest.mark.parametrize("field,value,culprit", [
    ("hidden_dim", "32", "hidden_dim = '32': expected int, got str"),
    ("hidden_dim", True, "hidden_dim = True: expected int, got bool"),
    ("hidden_dim", 0, "hidden_dim 0; sizes and counts must be ≥ 1"),
    ("pose_mode", "Mixed", "pose_mode = 'Mixed': expected one of ['mixed', 'isolated']"),
    ("backbone", "pixelwize", "backbone = 'pixelwize': expected one of ['pixelwise', 'upsampling']"),
    ("ray_end", float("nan"), "ray_end = nan: expected a finite number"),
    ("pose_blocks", (0, "1"), "pose_blocks = (0, '1'): item: expected int, got str"),
])
def test_every_field_is_checked_against_its_annotation(field, value, culprit):
    with pytest.raises(ValueError) as error:
        GeneratorConfig.from_dict({**PRESETS["tiny"].to_dict(), field: value})
    assert culprit in str(error.value)
    with pytest.raises(ValueError, match="pose_mode = 'bogus'"):  # direct construction is checked the same way
        PRESETS["tiny"].replace(pose_mode="bogus")

"""training/parser.py: the judge parser trains on a tiny synthetic collection (its loss falls), saves as
.safetensors and reloads to the same predictions; mirrored labels swap left and right."""

import math

import pytest
import torch

from tests.tiny_body import write_box_body
from training import parser as judge
from training.synth import synth

CONFIG = judge.ParserConfig(height=32, width=16, channels=(8, 16))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("parser")
    body = write_box_body(root / "box.npz")
    synth(out=root / "data", count=10, height=64, width=32, seed=0, body_path=body, progress=False)
    return root / "data"


@pytest.fixture(scope="module")
def trained(data):
    return judge.train_parser(data, config=CONFIG, steps=40, batch=4, lr=1e-2, holdout=0.2, log=None)


def test_training_lowers_the_loss_and_holds_items_out(trained):
    first, last = sum(trained.losses[:5]) / 5, sum(trained.losses[-5:]) / 5
    assert len(trained.losses) == 40 and last < 0.8 * first
    assert len(trained.holdout) == 2 and 0.0 <= trained.holdout_miou <= 1.0


def test_saved_parser_reloads_to_the_same_predictions(trained, tmp_path, data):
    path = judge.save_parser(tmp_path / "parser.safetensors", trained)
    loaded, meta = judge.load_parser(path)
    assert meta["holdout_miou"] == trained.holdout_miou and meta["holdout"] == trained.holdout
    assert meta["steps"] == 40 and meta["config"]["height"] == 32
    image = torch.rand(2, 3, 64, 32) * 2 - 1
    labels = loaded.predict(image)
    assert labels.shape == (2, 64, 32) and labels.min() >= 1 and labels.max() <= 25
    assert torch.equal(labels, trained.parser.predict(image))


def test_load_refuses_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "something"})
    with pytest.raises(ValueError, match="not a parser file"):
        judge.load_parser(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="--train-parser"):
        judge.load_parser(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all")
    with pytest.raises(ValueError, match=f"{junk} is not a readable parser file"):  # was a SafetensorError
        judge.load_parser(junk)


def test_balanced_cross_entropy_weights_rare_classes_up():
    # 4 pixels, targets 0, 0, 0, 1: N = 4, K = 2 → w0 = 4 / (2·3), w1 = 4 / (2·1)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.5, 0.25, 0.25], [0.2, 0.4, 0.4]], dtype=torch.float64)
    logits = probs.log().T[None, :, None, :]                                  # (1, 3, 1, 4)
    target = torch.tensor([[[0, 0, 0, 1]]])
    expected = (4 / 6 * -(math.log(0.7) + math.log(0.6) + math.log(0.5)) + 2 * -math.log(0.4)) / 4
    assert judge.balanced_cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-9)


def test_flip_labels_mirrors_and_swaps_sides():
    # left shoulder (joint 16 → label 18) at x = 0, right hand (23 → 25) at x = 1, head (15 → 17) at x = 2
    parts = torch.tensor([[18, 25, 17]])
    assert judge.flip_labels(parts).tolist() == [[17, 24, 19]]
    assert torch.equal(judge.flip_labels(judge.flip_labels(parts)), parts)


def test_config_refuses_sizes_the_levels_cannot_halve():
    with pytest.raises(ValueError, match="must divide by 8"):
        judge.ParserConfig(height=36, width=18, channels=(8, 16, 32, 64))

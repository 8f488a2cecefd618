"""training/metrics/pose_accuracy.py: confusion matrix and mIoU against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from training.metrics.pose_accuracy import NUM_LABELS, Confusion


def test_identical_maps_give_miou_one():
    target = torch.randint(1, 26, (2, 16, 8))
    c = Confusion.of(target, target)
    assert c.miou() == 1.0 and c.accuracy() == 1.0
    assert c.counts.sum() == target.numel()


def test_hand_computed_iou_of_a_shifted_part():
    # 1×8 strip: target background 1 with part 5 at columns 2..5; prediction has the part shifted right by 1
    target = torch.tensor([[[1, 1, 5, 5, 5, 5, 1, 1]]])
    predicted = torch.tensor([[[1, 1, 1, 5, 5, 5, 5, 1]]])
    c = Confusion.of(predicted, target)
    # part 5: TP 3, FP 1, FN 1 → 3/5; background: TP 3, FP 1, FN 1 → 3/5
    assert c.iou()[5] == pytest.approx(0.6) and c.iou()[1] == pytest.approx(0.6)
    assert c.miou() == pytest.approx(0.6)
    assert c.accuracy() == pytest.approx(6 / 8)
    assert math.isnan(c.iou()[7])                                     # absent from both: not averaged


def test_a_missed_part_counts_as_zero_and_sums_accumulate():
    target = torch.tensor([[[1, 2, 3, 3]]])
    predicted = torch.tensor([[[1, 1, 3, 3]]])
    c = Confusion.of(predicted, target)
    # background: TP 1, FP 1 → 1/2; part 2: missed → 0; part 3: 1
    assert c.miou() == pytest.approx((0.5 + 0 + 1) / 3)
    total = c + Confusion.of(target, target)
    assert total.counts.sum() == 8
    # accumulated over the set: background TP 2, FP 1 → 2/3; part 2 TP 1, FN 1 → 1/2; part 3 → 1
    assert total.miou() == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_empty_confusion_is_nan_and_bad_labels_are_refused():
    assert math.isnan(Confusion.empty().miou())
    assert Confusion.empty().counts.shape == (NUM_LABELS, NUM_LABELS)
    with pytest.raises(ValueError, match="0..25"):
        Confusion.of(torch.tensor([[26]]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="differ in shape"):
        Confusion.of(torch.ones(1, 4, 2, dtype=torch.int64), torch.ones(1, 2, 4, dtype=torch.int64))


def test_counts_match_a_numpy_oracle():
    rng = np.random.default_rng(0)
    t, p = rng.integers(1, 26, (3, 10, 5)), rng.integers(1, 26, (3, 10, 5))
    oracle = np.zeros((NUM_LABELS, NUM_LABELS), np.int64)
    np.add.at(oracle, (t.ravel(), p.ravel()), 1)
    assert (Confusion.of(torch.from_numpy(p), torch.from_numpy(t)).counts == oracle).all()

"""Pose accuracy: part-map mIoU between a judge parser's prediction and the conditioning body
(docs/evaluation.md §Pose accuracy).

The paper measures how well a generated person follows the conditioning pose; its tool was never released. Our
judge is `training/parser.py`, trained on the dataset's real images and part maps: its prediction on a generated
image is compared with the part map of the body the image was generated for (rasterised, labels 1 = background,
2..25 = parts). The parser's own mIoU on held-out real images is the ceiling a perfect generator would reach.

mIoU is accumulated over a whole set (one confusion matrix, as in semantic-segmentation benchmarks): IoU_c =
TP / (TP + FP + FN) per label, averaged over the labels that occur in the prediction or the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["NUM_LABELS", "Confusion"]

NUM_LABELS = 26  # 0 = fake (never predicted or rasterised), 1 = background, 2..25 = the 24 SMPL-joint parts


@dataclass(frozen=True)
class Confusion:
    """A (26, 26) confusion matrix: counts[target, predicted] over all pixels seen so far."""

    counts: np.ndarray

    @classmethod
    def empty(cls) -> Confusion:
        return cls(np.zeros((NUM_LABELS, NUM_LABELS), dtype=np.int64))

    @classmethod
    def of(cls, predicted: Tensor, target: Tensor) -> Confusion:
        """predicted, target: (B, H, W) int64 labels in 0..25, the same shape."""
        if predicted.shape != target.shape:
            raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} label maps "
                             "differ in shape; resize the prediction to the target (nearest)")
        p, t = predicted.reshape(-1).long().cpu(), target.reshape(-1).long().cpu()
        if p.numel() and (min(p.min(), t.min()) < 0 or max(p.max(), t.max()) >= NUM_LABELS):
            raise ValueError(f"labels must lie in 0..{NUM_LABELS - 1}; got predicted {int(p.min())}..{int(p.max())},"
                             f" target {int(t.min())}..{int(t.max())}")
        counts = torch.bincount(t * NUM_LABELS + p, minlength=NUM_LABELS**2).reshape(NUM_LABELS, NUM_LABELS)
        return cls(counts.numpy().astype(np.int64))

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.counts + other.counts)

    def iou(self) -> np.ndarray:
        """(26,) IoU per label; nan for labels absent from both prediction and target."""
        tp = np.diag(self.counts).astype(np.float64)
        union = self.counts.sum(0) + self.counts.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over the labels present in the prediction or the target (nan if no pixel was counted)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def accuracy(self) -> float:
        """Fraction of pixels labelled correctly."""
        total = self.counts.sum()
        return float(np.trace(self.counts) / total) if total else float("nan")

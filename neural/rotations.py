"""Rotation conversions in numpy for SMPL's axis-angle poses (paper §3.1: the generator is conditioned on an SMPL
pose, 24 joint rotations as axis-angle, root first).

numpy only, no torch: the Blender add-on imports this at registration (a CUDA torch chosen in its preferences must
be found first), and the AMASS reader (neural/amass.py) and the render CLI's Z-up → Y-up root turn use it too.
The differentiable torch version used by the body model is neural.body.axis_angle_to_matrix.

Quaternions are (w, x, y, z), unit length, w ≥ 0 where returned (the rotation angle in [0, π]).
"""

from __future__ import annotations

import numpy as np


def axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle (radians) → (..., 3, 3) rotation matrices (Rodrigues; exact at angle 0)."""
    aa = np.asarray(aa, dtype=np.float64)
    theta = np.linalg.norm(aa, axis=-1)[..., None, None]
    x, y, z = np.moveaxis(aa, -1, 0)
    K = np.stack([np.zeros_like(x), -z, y, z, np.zeros_like(x), -x, -y, x, np.zeros_like(x)], -1)
    K = K.reshape(*aa.shape[:-1], 3, 3)
    small = theta < 1e-8
    a = np.where(small, 1.0, np.sin(theta) / np.where(small, 1.0, theta))
    b = np.where(small, 0.5, (1 - np.cos(theta)) / np.where(small, 1.0, theta) ** 2)
    return np.eye(3) + a * K + b * (K @ K)


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations → (..., 4) unit quaternions (w, x, y, z) with w ≥ 0 (Shepperd's method)."""
    m = np.asarray(R, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # four algebraically equal forms; each is stable where its leading component is largest
    def c(i: int, j: int, sign: float) -> np.ndarray:  # m_ij ± m_ji
        return m[..., i, j] + sign * m[..., j, i]

    forms = np.stack([
        np.stack([1 + m00 + m11 + m22, c(2, 1, -1), c(0, 2, -1), c(1, 0, -1)], -1),
        np.stack([c(2, 1, -1), 1 + m00 - m11 - m22, c(0, 1, 1), c(0, 2, 1)], -1),
        np.stack([c(0, 2, -1), c(0, 1, 1), 1 - m00 + m11 - m22, c(1, 2, 1)], -1),
        np.stack([c(1, 0, -1), c(0, 2, 1), c(1, 2, 1), 1 - m00 - m11 + m22], -1),
    ], -2)  # (..., 4 forms, 4)
    best = np.stack([m00 + m11 + m22, m00, m11, m22], -1).argmax(-1)
    q = np.take_along_axis(forms, best[..., None, None], -2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (w, x, y, z) → (..., 3, 3) rotation matrices."""
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return np.stack(rows, -1).reshape(*np.shape(q)[:-1], 3, 3)


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations → (..., 3) axis-angle with angle in [0, π], via the quaternion (accurate at 0 and at
    π, where the matrix's antisymmetric part vanishes)."""
    q = matrix_to_quaternion(R)
    v, w = q[..., 1:], q[..., :1]
    sin = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2 * np.arctan2(sin, w)
    scale = np.where(sin > 1e-12, angle / np.maximum(sin, 1e-300), 2.0 / np.where(w == 0, 1.0, w))
    return v * scale

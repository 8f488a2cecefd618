"""neural/rotations.py: numpy axis-angle / matrix / quaternion conversions agree with scipy's, including the half
turns where the matrix's antisymmetric part vanishes."""

import numpy as np
from scipy.spatial.transform import Rotation

from neural.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quaternion, quaternion_to_matrix


def rotvecs():
    vecs = Rotation.random(500, random_state=0).as_rotvec()
    vecs[:5] = [[np.pi, 0, 0], [0, 0, 0], [0, np.pi - 1e-9, 0], [1e-10, 0, 0], [0, 0, -np.pi]]
    return vecs


def test_axis_angle_to_matrix_matches_scipy_batched():
    vecs = rotvecs().reshape(50, 10, 3)
    expected = Rotation.from_rotvec(vecs.reshape(-1, 3)).as_matrix().reshape(50, 10, 3, 3)
    np.testing.assert_allclose(axis_angle_to_matrix(vecs), expected, atol=1e-14)


def test_matrix_to_axis_angle_round_trips_including_half_turns():
    matrices = Rotation.from_rotvec(rotvecs()).as_matrix()
    back = matrix_to_axis_angle(matrices)
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), matrices, atol=1e-12)
    assert np.linalg.norm(back, axis=-1).max() <= np.pi + 1e-12
    small = rotvecs()[np.linalg.norm(rotvecs(), axis=-1) < np.pi - 1e-6]  # away from π the vector is unique
    np.testing.assert_allclose(matrix_to_axis_angle(axis_angle_to_matrix(small)), small, atol=1e-12)


def test_quaternions_match_scipy_with_w_non_negative():
    rotations = Rotation.from_rotvec(rotvecs())
    q = matrix_to_quaternion(rotations.as_matrix())
    xyzw = rotations.as_quat()
    expected = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], 1) * np.where(xyzw[:, 3:] < 0, -1.0, 1.0)
    assert (q[:, 0] >= 0).all()
    np.testing.assert_allclose(np.abs((q * expected).sum(1)), 1, atol=1e-12)  # same rotation (±q at w = 0)
    np.testing.assert_allclose(quaternion_to_matrix(q), rotations.as_matrix(), atol=1e-12)

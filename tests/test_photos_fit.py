"""training/photos/fit.py, landmarks.py, prior.py: the fitter recovers known synthetic people from their true 2D
landmarks and masks (bounds from docs/photos.md's table), on exact parts (reduced body, landmark map, priors)."""

import numpy as np
import pytest
import torch

from neural.body import BodyModel, free_body_path
from neural.camera import Camera
from neural.raster import rasterize
from neural.skeleton import JOINT_NAMES
from photos_fixture import synthetic_people
from training.fits import Fit
from training.motions import pose_array, walk
from training.photos.fit import FitConfig, Fitter, Target, reduced_body
from training.photos.landmarks import LANDMARK_NAMES, OFFSETS_MM, landmark_map
from training.photos.measure import procrustes
from training.photos.prior import joint_limit_cost, motion_prior
from training.prepare import _rasterize_parts

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def body():
    return BodyModel.load(free_body_path())


def test_reduced_body_poses_like_the_full_body(body):
    ids = np.array([0, 17, 4000, 13717])
    small = reduced_body(body, ids)
    g = torch.Generator().manual_seed(0)
    pose, betas = 0.4 * torch.randn(3, 24, 3, generator=g), torch.randn(3, 16, generator=g)
    transl = torch.randn(3, 3, generator=g)
    full, part = body(betas=betas, pose=pose, transl=transl), small(betas=betas, pose=pose, transl=transl)
    torch.testing.assert_close(part.joints, full.joints, atol=2e-6, rtol=0)
    torch.testing.assert_close(part.vertices[:, :4], full.vertices[:, ids], atol=2e-6, rtol=0)
    torch.testing.assert_close(part.vertices[:, 4:], full.joints, atol=2e-6, rtol=0)  # joints ride as vertices


def test_landmarks_sit_where_their_names_say(body):
    marks = landmark_map(body)
    points = marks.points(body())[0].numpy()
    at = {LANDMARK_NAMES[i]: p for i, p in zip(marks.indices, points)}
    head = body().joints[0, JOINT_NAMES.index("head")].numpy()
    assert at["nose"][2] > at["left_eye"][2] > head[2]  # the nose leads, the eyes are on the face
    assert at["left_eye"][0] > 0 > at["right_eye"][0] and at["left_ear"][0] > at["left_eye"][0]
    assert at["left_eye"][1] > at["nose"][1] > at["mouth_left"][1]
    for side in ("left", "right"):
        assert at[f"{side}_heel"][2] < at[f"{side}_ankle"][2] < at[f"{side}_foot_index"][2]
        assert at[f"{side}_heel"][1] < at[f"{side}_ankle"][1]


def test_calibrated_offsets_ride_on_their_bones(body):
    plain, calibrated = landmark_map(body, offsets_mm={}), landmark_map(body)
    g = torch.Generator().manual_seed(1)
    posed = body(pose=0.5 * torch.randn(2, 24, 3, generator=g), betas=torch.randn(2, 16, generator=g))
    at_joints = plain.points(posed)
    joint_rows = plain.joints >= 0
    torch.testing.assert_close(at_joints[:, joint_rows], posed.joints[:, plain.joints[joint_rows]])  # uncalibrated
    moved = calibrated.points(posed) - at_joints
    rotation = posed.transforms[:, calibrated.frames, :3, :3]
    expected = torch.einsum("blij,lj->bli", rotation, torch.as_tensor(calibrated.offsets, dtype=torch.float32))
    torch.testing.assert_close(moved, expected)
    name = {n: k for k, n in enumerate(LANDMARK_NAMES[i] for i in calibrated.indices)}
    assert calibrated.frames[name["left_elbow"]] == JOINT_NAMES.index("left_shoulder")  # the upper arm carries it
    for side, sign in (("left", 1), ("right", -1)):  # OFFSETS_MM's left side, mirrored for the right
        expected_mm = np.multiply(OFFSETS_MM["left_shoulder"], (sign, 1, 1))
        np.testing.assert_allclose(calibrated.offsets[name[f"{side}_shoulder"]] * 1000, expected_mm)


def test_motion_prior_prefers_motions_and_limits_bend_joints_one_way():
    prior = motion_prior()
    walking = torch.as_tensor(pose_array(walk(0.25))[None, 1:], dtype=torch.float32)
    twisted = torch.zeros(1, 23, 3)
    twisted[0, JOINT_NAMES.index("left_knee") - 1] = torch.tensor([0.0, 2.0, 0.0])
    assert prior.cost(walking) < 1.0 < prior.cost(twisted)
    pose = torch.zeros(2, 24, 3)
    pose[0, JOINT_NAMES.index("left_knee"), 0] = 1.0  # bent forwards: allowed
    pose[1, JOINT_NAMES.index("left_knee"), 0] = -1.0  # backwards: refused
    cost = joint_limit_cost(pose)
    assert cost[0] == 0 and cost[1] > 0.5


def test_bad_configs_and_targets_are_refused(body):
    with pytest.raises(ValueError, match="orientations_deg"):
        FitConfig(orientations_deg=())
    with pytest.raises(ValueError, match="crop_height"):
        FitConfig(crop_height=15)
    bad = Target(keypoints=np.zeros((17, 2)), visibility=np.ones(17), mask=None, K=np.eye(3), width=10, height=10)
    with pytest.raises(ValueError, match="target 0: keypoints.*BlazePose order"):
        Fitter(body).fit([bad])
    odd = Target(keypoints=np.zeros((33, 2)), visibility=np.ones(33), mask=None, K=np.eye(3), width=10, height=10,
                 alternatives=((np.full((33, 2), np.nan), np.ones(33)),))
    with pytest.raises(ValueError, match="target 0, alternative 1: keypoints hold NaN"):
        Fitter(body).fit([odd])


def test_the_fitter_keeps_the_reading_that_fits(body):
    """Two readings of each person's landmarks: the one with the legs' labels swapped fits worse and is dropped."""
    body, images, masks, posed, camera, pose, betas = synthetic_people([2, 6])
    fitter = Fitter(body, FitConfig(steps=(30, 120, 0)))
    with torch.no_grad():
        truth, _ = camera.project(fitter.landmarks.points(posed))
    legs = [LANDMARK_NAMES.index(f"{s}_{n}") for s in ("left", "right") for n in ("knee", "ankle", "heel", "foot_index")]
    swapped = legs[4:] + legs[:4]
    targets = []
    for b, first in enumerate((0, 1)):  # person 0: the true reading first; person 1: the swapped one first
        keypoints, visibility = np.zeros((33, 2)), np.zeros(33)
        keypoints[fitter.landmarks.indices], visibility[fitter.landmarks.indices] = truth[b].numpy(), 1.0
        wrong = keypoints.copy()
        wrong[legs] = keypoints[swapped]
        readings = [(keypoints, visibility), (wrong, visibility)][::1 if first == 0 else -1]
        targets.append(Target(keypoints=readings[0][0], visibility=visibility, mask=masks[b], width=128, height=256,
                              K=camera.K[b].double().numpy(), alternatives=(readings[1],)))
    fits = fitter.fit(targets)
    assert [f.reading for f in fits] == [0, 1], [(f.reading, f.keypoint_error_px) for f in fits]
    assert all(f.keypoint_error_px < 3.0 for f in fits), [f.keypoint_error_px for f in fits]


@pytest.mark.slow
def test_fitter_recovers_synthetic_people_from_true_landmarks(body):
    indices = [1, 2, 4, 6, 7, 9]
    body, images, masks, posed, camera, pose, betas = synthetic_people(indices)
    fitter = Fitter(body)
    with torch.no_grad():
        truth, _ = camera.project(fitter.landmarks.points(posed))
    targets = [Target(keypoints=np.zeros((33, 2)), visibility=np.zeros(33), mask=masks[b], K=camera.K[b].double().numpy(),
                      width=128, height=256) for b in range(len(indices))]
    for b, t in enumerate(targets):
        t.keypoints[fitter.landmarks.indices] = truth[b].numpy()
        t.visibility[fitter.landmarks.indices] = 1.0
    fits = fitter.fit(targets)
    pa, ious = [], []
    for b, fit in enumerate(fits):
        assert fit.keypoint_error_px < 3.0, f"person {indices[b]}: landmarks reprojected {fit.keypoint_error_px:.1f} px off"
        with torch.no_grad():
            mine = body(betas=torch.as_tensor(fit.betas[None], dtype=torch.float32),
                        pose=torch.as_tensor(fit.pose[None], dtype=torch.float32),
                        transl=torch.as_tensor(fit.transl[None], dtype=torch.float32)).joints[0].numpy()
        true_joints = posed.joints[b].numpy()
        pa.append(np.linalg.norm(procrustes(mine, true_joints) - true_joints, axis=1).mean() * 1000)
        parts = _rasterize_parts(body, Fit(pose=fit.pose, betas=fit.betas, transl=fit.transl, K=fit.K,
                                           world_to_camera=fit.world_to_camera), fit.K, fit.world_to_camera, 128, 256)
        ious.append(((parts > 1) & masks[b]).sum() / ((parts > 1) | masks[b]).sum())
    # docs/photos.md's table, true keypoints: PA-MPJPE median 31 mm, silhouette IoU 0.930
    assert np.median(pa) < 40, f"PA-MPJPE per person (mm): {np.round(pa)}"
    assert np.mean(ious) > 0.90, f"silhouette IoU per person: {np.round(ious, 3)}"


def another_smpl_format_body(path):
    """A body file that is not the free body: its vertices in another order and its proportions changed (5% shorter,
    5% broader), as a user's own SMPL-format body differs from it. Nothing may rely on the free body's indices."""
    arrays = dict(np.load(free_body_path(), allow_pickle=False))
    V = len(arrays["v_template"])
    order = np.random.default_rng(0).permutation(V)                   # new vertex i is old vertex order[i]
    new_index = np.argsort(order)
    arrays["v_template"] = arrays["v_template"][order] * np.array([1.05, 0.95, 1.05], np.float32)
    for key in ("shapedirs", "posedirs", "weights", "parts"):
        arrays[key] = arrays[key][order]
    arrays["J_regressor"] = arrays["J_regressor"][:, order]
    arrays["f"] = new_index[arrays["f"]]
    np.savez(path, **arrays)
    return BodyModel.load(path), order


def test_the_fitter_works_on_a_users_own_smpl_format_body(body, tmp_path):
    """Landmarks are found by the body's geometry, not by the free body's vertex numbers: on a reordered,
    reproportioned body they are the same surface points, and a person of that body is recovered from them."""
    other, order = another_smpl_format_body(tmp_path / "mine.npz")
    ours, theirs = landmark_map(body), landmark_map(other)
    assert list(theirs.indices) == list(ours.indices)
    scale = torch.tensor([1.05, 0.95, 1.05])
    np.testing.assert_allclose(theirs.points(other())[0].numpy(), (ours.points(body())[0] * scale).numpy(), atol=0.01)
    pose = torch.as_tensor(pose_array(walk(0.25))[None], dtype=torch.float32)
    betas = torch.zeros(1, other.num_betas)
    betas[0, :2] = torch.tensor([0.8, -0.5])
    with torch.no_grad():
        posed = other(betas=betas, pose=pose, transl=torch.tensor([[0.0, 0.0, 0.0]]))
    camera = Camera.look_at(torch.tensor([0.3, 0.1, 3.2]), posed.joints[0, 0], fov_y_deg=40.0, width=128,
                            height=256)
    fitter = Fitter(other)
    with torch.no_grad():
        truth, _ = camera.project(fitter.landmarks.points(posed))
    mask = rasterize(posed.vertices, other.faces, camera).mask[0].numpy()
    target = Target(keypoints=np.zeros((33, 2)), visibility=np.zeros(33), mask=mask,
                    K=camera.K[0].double().numpy(), width=128, height=256)
    target.keypoints[fitter.landmarks.indices] = truth[0].numpy()
    target.visibility[fitter.landmarks.indices] = 1.0
    fit, = fitter.fit([target])
    with torch.no_grad():
        mine = other(betas=torch.as_tensor(fit.betas[None], dtype=torch.float32),
                     pose=torch.as_tensor(fit.pose[None], dtype=torch.float32),
                     transl=torch.as_tensor(fit.transl[None], dtype=torch.float32)).joints[0].numpy()
    true_joints = posed.joints[0].numpy()
    pa = np.linalg.norm(procrustes(mine, true_joints) - true_joints, axis=1).mean() * 1000
    assert fit.keypoint_error_px < 3.0 and pa < 60, (fit.keypoint_error_px, pa)

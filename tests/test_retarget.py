"""neural/retarget.py and retarget_metrics.py: SMPL motion → BVH by our writer → retargeted back equals the motion
(0.5°), whatever the rest pose, world, units and naming; a real CMU clip lands within 10° mean segment angle with
its feet on the floor; skeletons without legs or spine, NaN and bad maps are refused by name."""

import numpy as np
import pytest
from mocap_fixture import CMU_PLACES, cmu_clip, smooth_poses, smpl_bvh

from neural.amass import read_amass
from neural.bvh import axis_rotation, read_bvh
from neural.retarget import (Retargeted, RetargetConfig, SourceMotion, free_body_target, resample, retarget,
                             retarget_bvh, smpl_joints, source_from_bvh)
from neural.retarget_metrics import measure
from neural.retarget_names import canonical, match_bones, parse_bone_map
from neural.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from neural.skeleton import JOINT_NAMES, PARENTS

T = 40


@pytest.fixture(scope="module")
def target():
    return free_body_target()


def motion(target, seed=0):
    poses = smooth_poses(T, seed)
    trans = np.stack([np.linspace(0, 1.5, T), 0.05 * np.sin(np.linspace(0, 6, T)), np.linspace(0, -0.4, T)], 1)
    trans[:, 1] += -target.sole + 0.1
    return poses, trans


def angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between the rotations of axis-angle arrays a and b (..., 3)."""
    R = np.swapaxes(axis_angle_to_matrix(a), -1, -2) @ axis_angle_to_matrix(b)
    return np.degrees(np.arccos(np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


def round_trip(tmp_path, target, **kwargs) -> tuple[Retargeted, np.ndarray, np.ndarray]:
    poses, trans = motion(target)
    path = smpl_bvh(tmp_path / "clip.bvh", poses, trans, target.joints, **kwargs)
    back, _ = retarget_bvh(path, target, RetargetConfig(ground=False))
    return back, poses, trans


def test_smpl_motion_through_our_bvh_comes_back_within_half_a_degree(tmp_path, target):
    back, poses, trans = round_trip(tmp_path, target)
    assert back.convention == "smpl" and back.unmapped == () and back.units == "cm"
    assert back.scale == pytest.approx(0.01, rel=1e-6)  # offsets written to 1e-6 cm
    assert angle_error(back.poses, poses).max() < 0.5
    assert np.abs(back.trans - trans).max() < 1e-4


A_POSE = np.eye(3)[None].repeat(24, 0)
for _k, _sign in ((16, -1), (18, -1), (20, -1), (22, -1), (17, 1), (19, 1), (21, 1), (23, 1)):
    A_POSE[_k] = axis_rotation(2, np.array(_sign * np.pi / 4))  # arms 45° down
for _k, _sign in ((1, 1), (4, 1), (2, -1), (5, -1)):
    A_POSE[_k] = axis_rotation(2, np.array(_sign * 0.2))         # legs spread at rest, like CMU's
# Rest rotations that are a swing of the bone (about an axis across it): a twist about a bone at rest cannot be seen
# in a skeleton's joint positions, so no retargeter can undo it.


@pytest.mark.parametrize("case", ["a-pose rest", "z-up world, inches", "mixamo names"])
def test_rest_pose_world_units_and_names_do_not_change_the_motion(tmp_path, target, case):
    kwargs = {"a-pose rest": dict(rest=A_POSE),
              "z-up world, inches": dict(world=axis_rotation(0, np.array(np.pi / 2)), metres_per_unit=0.0254),
              "mixamo names": dict(names=MIXAMO, rest=A_POSE)}[case]
    back, poses, trans = round_trip(tmp_path, target, **kwargs)
    assert angle_error(back.poses, poses).max() < 0.5, case
    assert np.abs(back.trans - trans).max() < 1e-4
    if case == "mixamo names":
        assert back.convention == "mixamo" and back.bones[13] == "mixamorig:LeftShoulder"
    if case == "z-up world, inches":
        assert back.units == "inch"


MIXAMO = tuple("mixamorig:" + n for n in (
    "Hips", "LeftUpLeg", "RightUpLeg", "Spine", "LeftLeg", "RightLeg", "Spine1", "LeftFoot", "RightFoot", "Spine2",
    "LeftToeBase", "RightToeBase", "Neck", "LeftShoulder", "RightShoulder", "Head", "LeftArm", "RightArm",
    "LeftForeArm", "RightForeArm", "LeftHand", "RightHand", "LeftHandMiddle1", "RightHandMiddle1"))


def test_cmu_clip_follows_the_source_within_ten_degrees_with_feet_on_the_floor(tmp_path, target):
    path = cmu_clip(tmp_path)
    back, source = retarget_bvh(path, target)
    assert back.convention == "cmu" and back.unmapped == () and back.units == "cmu"
    metrics = measure(source, back, target)
    print(f"\n{path.name}\n{metrics.table()}")
    assert metrics.angle_mean <= 10.0
    per = dict(metrics.per_segment)
    limbs = [s for s in per if not s.startswith(("pelvis", "spine3"))]  # one-segment joints are laid exactly
    assert max(per[s] for s in limbs) < 0.01
    assert metrics.penetration_mean < 2.0 and metrics.penetration_max < 30.0
    assert metrics.slide <= metrics.source_slide + 0.5
    assert abs(back.ground_shift) < 0.03  # the leg ratio alone nearly keeps the feet on the floor
    # the character keeps its own size: SMPL's leg over the source's (CMU's unit is 1/0.45 inch)
    assert 0.045 < back.scale < 0.065
    if path.parent in CMU_PLACES:
        assert metrics.frames == 2752 and back.fps == pytest.approx(120, rel=1e-3)


def test_motionbuilder_style_clip_from_assimp(target):
    """assimp's Boxing_Toes.bvh: plain names (Ab, Chest, LeftCollar, LeftShoulder = the upper arm, ...), cm, 100 fps,
    one row more than it declares."""
    path = next((p / "Boxing_Toes.bvh" for p in CMU_PLACES if (p / "Boxing_Toes.bvh").is_file()), None)
    if path is None:
        pytest.skip(f"Boxing_Toes.bvh is not in {', '.join(map(str, CMU_PLACES))}: run `make test` to unpack "
                    "Debian's assimp-testmodels")
    back, source = retarget_bvh(path, target)
    assert (back.convention, back.units, back.fps) == ("plain", "cm", 100.0)
    assert back.bones[JOINT_NAMES.index("left_collar")] == "LeftCollar"
    assert back.bones[JOINT_NAMES.index("left_shoulder")] == "LeftShoulder"
    assert back.unmapped == ("spine2", "left_hand", "right_hand")
    metrics = measure(source, back, target)
    assert metrics.angle_mean < 5.0 and metrics.penetration_mean < 2.0


def test_canonical_names_and_a_user_map():
    for name in ("mixamorig:LeftUpLeg", "L_UpLeg", "UpLeg.L", "upleg_l", "Armature|LeftUpLeg", "LeftUpLeg"):
        assert canonical(name) == "leftupleg", name
    assert canonical("Spine_01") == "spine01" and canonical("m_avg_R_Knee") == "rightknee"
    names = ("Hips", "LeftThigh", "RightThigh", "LeftShin", "RightShin", "LeftFoot", "RightFoot", "Torso", "Head")
    convention, mapping = match_bones(names, parse_bone_map("spine2=Torso; head="))
    assert convention == "plain" and mapping[JOINT_NAMES.index("left_knee")] == 3
    assert mapping[JOINT_NAMES.index("spine2")] == 7 and mapping[JOINT_NAMES.index("head")] is None
    with pytest.raises(ValueError, match="bone map names SMPL joint 'chest'; SMPL's joints are pelvis, left_hip"):
        parse_bone_map("chest=Torso")
    with pytest.raises(ValueError, match="'spine2 Torso' has no '='"):
        parse_bone_map("spine2 Torso")
    with pytest.raises(ValueError, match="spine2=Chest: the skeleton has no bone 'Chest'; its bones are Hips, "):
        match_bones(names, (("spine2", "Chest"),))


def _source(names, T=2, positions=None):
    rng = np.random.default_rng(0)
    rest = rng.normal(size=(len(names), 3))
    return SourceMotion(names=names, parents=(-1,) + (0,) * (len(names) - 1), rest=rest,
                        positions=np.repeat(rest[None], T, 0) if positions is None else positions,
                        rotations=np.broadcast_to(np.eye(3), (T, len(names), 3, 3)), fps=30.0, label="rig 'Robot'")


def test_a_skeleton_without_legs_or_spine_is_refused_naming_the_joints(target):
    with pytest.raises(ValueError, match=r"rig 'Robot' has no recognisable legs or spine: no bone plays the SMPL "
                                         r"joint\(s\) left_knee, right_knee, left_ankle, right_ankle, "
                                         r"spine1\|spine2\|spine3 .*its bones are Hips, LeftHip, RightHip, Tail"):
        retarget(_source(("Hips", "LeftHip", "RightHip", "Tail")), target)


def test_nan_and_empty_clips_are_refused_naming_frame_and_bone(tmp_path, target):
    poses, trans = motion(target)
    source = source_from_bvh(read_bvh(smpl_bvh(tmp_path / "c.bvh", poses, trans, target.joints)))
    positions = source.positions.copy()
    positions[3, source.names.index("left_elbow")] = np.nan
    bad = SourceMotion(**{**source.__dict__, "positions": positions})
    with pytest.raises(ValueError, match=r"c\.bvh: positions are NaN or inf at frame 3, bone 'left_elbow'"):
        retarget(bad, target)
    empty = SourceMotion(**{**source.__dict__, "positions": positions[:0], "rotations": source.rotations[:0]})
    with pytest.raises(ValueError, match=r"c\.bvh has no frames"):
        retarget(empty, target)
    with pytest.raises(ValueError, match="units 'feet'; expected auto or one of m, cm"):
        RetargetConfig(units="feet")


def test_skeleton_fk_matches_the_body_model(target):
    """smpl_joints (used by the metrics and the ground shift) against neural.body's own forward kinematics."""
    import torch

    from neural.body import PARENTS as BODY_PARENTS, BodyModel, free_body_path
    from neural.skeleton import JOINT_NAMES as BODY_NAMES

    assert (JOINT_NAMES, PARENTS) == (BODY_NAMES, tuple(BODY_PARENTS))
    poses, trans = motion(target)
    body = BodyModel.load(free_body_path(), dtype=torch.float64)
    with torch.no_grad():
        oracle = body(pose=torch.as_tensor(poses[:5]), transl=torch.as_tensor(trans[:5])).joints.numpy()
    assert np.abs(smpl_joints(poses[:5], trans[:5], target.joints) - oracle).max() < 1e-6


def test_resample_to_the_scene_rate():
    poses = np.zeros((5, 24, 3))
    poses[:, 3, 2] = np.linspace(0, 1.0, 5)   # 4 steps at 120 fps: 1/30 s
    poses_30, trans_30 = resample(poses, np.arange(15.0).reshape(5, 3), 120.0, 60.0)
    assert len(poses_30) == 3 and np.abs(poses_30[:, 3, 2] - [0, 0.5, 1.0]).max() < 1e-9
    assert np.abs(trans_30[1] - [6, 7, 8]).max() < 1e-12


def test_bvh_pose_files_read_like_amass_ones(tmp_path, target):
    """neural.amass.read_amass on a .bvh: the retarget onto the free body, in AMASS's Z-up world, so that
    `python -m neural render --pose clip.bvh` turns it back to the body frame like any AMASS file."""
    from commands.render import Z_UP_TO_Y_UP

    poses, trans = motion(target)
    path = smpl_bvh(tmp_path / "walk.bvh", poses, trans, target.joints)
    read = read_amass(path)
    assert read.poses.shape == (T, 24, 3) and read.has_trans and read.fps == pytest.approx(30)
    assert read.joints == 24 and read.betas.shape == (0,)
    y_up = read.poses.copy()
    y_up[:, 0] = matrix_to_axis_angle(Z_UP_TO_Y_UP @ axis_angle_to_matrix(read.poses[:, 0]))
    assert angle_error(y_up, poses).max() < 0.5
    j0 = target.joints[0]
    grounded, _ = retarget_bvh(path, target)  # the floor shift is the only change to the translation
    assert np.abs((read.trans + j0) @ Z_UP_TO_Y_UP.T - j0 - grounded.trans).max() < 1e-6


def test_retarget_command_prints_the_metrics_and_saves_an_amass_file(tmp_path, target, capsys):
    from neural.__main__ import main

    poses, trans = motion(target)
    clip = smpl_bvh(tmp_path / "walk.bvh", poses, trans, target.joints)
    out = tmp_path / "walk.npz"
    assert main(["retarget", str(clip), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "40 frames at 30 fps, smpl names, units cm" in printed
    assert "| segment angle, mean / max (°) | 0.00 /" in printed
    saved = read_amass(out, require_trans=True, require_fps=True)
    assert np.abs(saved.poses - read_amass(clip).poses).max() < 1e-9 and saved.fps == pytest.approx(30)
    assert main(["retarget", str(clip), "--out", str(clip)]) == 1
    assert "the output" in capsys.readouterr().err and clip.read_text().startswith("HIERARCHY")
    clip.write_text(clip.read_text().replace("left_knee", "left_wing"))
    assert main(["retarget", str(clip)]) == 1
    assert "walk.bvh has no recognisable legs or spine" in capsys.readouterr().err


def test_importing_the_retargeter_does_not_import_torch():
    """addon/motion.py imports it at module level; the add-on registers without torch."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; import neural.bvh, neural.retarget, neural.retarget_metrics; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_render_command_takes_a_bvh_pose_file(tmp_path, target):
    """`python -m neural render --pose clip.bvh`: one RGBA PNG per selected frame, the person drawn."""
    from PIL import Image
    from tiny_body import write_tiny_model

    from neural.__main__ import main

    model, body = write_tiny_model(tmp_path)
    poses, trans = motion(target)
    clip = smpl_bvh(tmp_path / "walk.bvh", poses, trans, target.joints)
    out = tmp_path / "out"
    assert main(["render", "--model", str(model), "--body", str(body), "--pose", str(clip), "--frames", "3:5",
                 "--size", "32x24", "--device", "cpu", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["frame_00003_yaw+0.png", "frame_00004_yaw+0.png"]
    alpha = np.asarray(Image.open(out / "frame_00004_yaw+0.png"))[..., 3]
    assert alpha.max() == 255 and alpha.min() == 0

"""neural/bvh.py: a real CMU clip parsed (skeleton, frame count, rate, a T-pose first frame), written and read back
exactly for every rotation order, Euler angles that rebuild their matrices, and broken files refused with the file,
line, frame, bone and channel named."""

from itertools import permutations

import numpy as np
import pytest
from mocap_fixture import CMU_PLACES, cmu_clip, smooth_poses, smpl_bvh

from neural.bvh import BvhError, axis_rotation, matrix_to_euler, read_bvh, write_bvh
from neural.retarget import free_body_target
from neural.rotations import axis_angle_to_matrix
from neural.skeleton import JOINT_NAMES


def test_cmu_clip_is_read_with_its_skeleton_rate_and_t_pose(tmp_path):
    path = cmu_clip(tmp_path)
    motion = read_bvh(path)
    sk = motion.skeleton
    assert sk.names[0] == "Hips" and {"LeftUpLeg", "LeftForeArm", "Neck1", "RightToeBase"} <= set(sk.names)
    assert motion.fps == 120 and motion.values.shape[1] == sk.channel_count  # 'Frame Time: .0083333'

    positions, rotations = motion.forward_kinematics()
    index = {n: j for j, n in enumerate(sk.names)}
    arm = positions[0, index["LeftHand"]] - positions[0, index["LeftArm"]]
    assert abs(arm[1]) < 0.1 * np.linalg.norm(arm) and arm[0] > 0  # frame 0: the left arm straight out to the side
    assert np.allclose(rotations @ np.swapaxes(rotations, -1, -2), np.eye(3), atol=1e-9)
    if path.parent in CMU_PLACES:
        assert len(sk.names) == 31 and len(motion.values) == 2752


@pytest.mark.parametrize("order", ["".join(p) for p in permutations("XYZ")])
def test_written_clip_reads_back_with_the_same_motion(tmp_path, order):
    target = free_body_target()
    poses = smooth_poses(6, seed=1)
    trans = np.random.default_rng(2).normal(scale=0.3, size=(6, 3))
    path = smpl_bvh(tmp_path / "m.bvh", poses, trans, target.joints, order=order)
    motion = read_bvh(path)
    smpl_order = [motion.skeleton.names.index(n) for n in JOINT_NAMES]  # the file lists joints depth first
    assert motion.skeleton.names[:3] == ("pelvis", "left_hip", "left_knee")
    local = motion.local_rotations()[:, smpl_order]
    assert np.abs(local - axis_angle_to_matrix(poses)).max() < 1e-6
    positions, _ = motion.forward_kinematics()
    assert np.abs(positions[:, 0] * 0.01 - (target.joints[0] + trans)).max() < 1e-7
    again = write_bvh(tmp_path / "again.bvh", motion)
    assert np.abs(read_bvh(again).values - motion.values).max() < 1e-6


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_euler_angles_rebuild_their_rotation_even_at_gimbal_lock(order):
    R = axis_angle_to_matrix(np.random.default_rng(0).normal(size=(200, 3)))
    locked = axis_rotation(order[0], np.array(0.3)) @ axis_rotation(order[1], np.array(np.pi / 2)) \
        @ axis_rotation(order[2], np.array(-0.7))
    R = np.concatenate([R, locked[None]])
    a = matrix_to_euler(R, order)
    rebuilt = axis_rotation(order[0], a[:, 0]) @ axis_rotation(order[1], a[:, 1]) @ axis_rotation(order[2], a[:, 2])
    assert np.abs(rebuilt - R).max() < 1e-9


@pytest.fixture
def small(tmp_path):
    """A two-frame, two-joint clip and where its values start."""
    target = free_body_target()
    path = smpl_bvh(tmp_path / "ok.bvh", smooth_poses(2, seed=3), np.zeros((2, 3)), target.joints)
    lines = path.read_text().splitlines()
    return path, lines, lines.index("MOTION")


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_truncated_motion_block_names_file_line_and_the_missing_frame(small, tmp_path):
    _, lines, motion = small
    bad = _write(tmp_path / "cut.bvh", lines[:-1] + [" ".join(lines[-1].split()[:10])])
    with pytest.raises(BvhError, match=r"cut\.bvh, line %d: .*declares 2 frames of 75 channels.*after 1 whole "
                                       r"frames.*frame 1 \(counted from 0\), bone 'left_knee'.*truncated"
                                       % len(lines)):
        read_bvh(bad)


def test_non_numeric_channel_names_line_frame_bone_and_channel(small, tmp_path):
    _, lines, motion = small
    row = lines[motion + 3].split()
    row[7] = "abc"  # root: 3 positions + 3 rotations, then left_hip's second channel
    bad = _write(tmp_path / "word.bvh", lines[:motion + 3] + [" ".join(row)] + lines[motion + 4:])
    with pytest.raises(BvhError, match=r"word\.bvh, line %d: 'abc' is not a number \(frame 0 \(counted from 0\), "
                                       r"bone 'left_hip', channel Xrotation\)" % (motion + 4)):
        read_bvh(bad)


def test_nan_names_the_frame_bone_and_channel(small, tmp_path):
    _, lines, motion = small
    row = lines[motion + 4].split()
    row[1] = "nan"
    bad = _write(tmp_path / "nan.bvh", lines[:motion + 4] + [" ".join(row)])
    with pytest.raises(BvhError, match=r"nan\.bvh, line %d: nan in frame 1 .*bone 'pelvis', channel Yposition"
                                       % (motion + 5)):
        read_bvh(bad)


def test_zero_frames_and_bad_frame_time_are_refused(small, tmp_path):
    _, lines, motion = small
    zero = _write(tmp_path / "zero.bvh", lines[:motion + 1] + ["Frames: 0"] + [lines[motion + 2]])
    with pytest.raises(BvhError, match=r"zero\.bvh, line .*declares 0 frames; a clip needs at least one frame"):
        read_bvh(zero)
    still = _write(tmp_path / "still.bvh", lines[:motion + 2] + ["Frame Time: 0"] + lines[motion + 3:])
    with pytest.raises(BvhError, match=r"'Frame Time:' is 0 s; it must be > 0"):
        read_bvh(still)


def test_broken_hierarchy_is_refused_by_line(small, tmp_path):
    path, lines, _ = small
    text = path.read_text()
    bad = tmp_path / "channel.bvh"
    bad.write_text(text.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 3 Zrotation Xrotation Wiggle", 1))
    with pytest.raises(BvhError, match=r"channel\.bvh, line \d+: joint 'left_hip' has channel 'Wiggle'"):
        read_bvh(bad)
    cut = tmp_path / "hier.bvh"
    cut.write_text("\n".join(lines[:12]))
    with pytest.raises(BvhError, match=r"hier\.bvh, line 12: the file ends where .* was expected"):
        read_bvh(cut)
    with pytest.raises(FileNotFoundError, match="missing.bvh does not exist"):
        read_bvh(tmp_path / "missing.bvh")


def test_an_extra_whole_row_is_ignored_with_a_note_but_a_partial_one_is_refused(small, tmp_path):
    _, lines, _ = small
    extra = read_bvh(_write(tmp_path / "extra.bvh", lines + [lines[-1]]))
    assert len(extra.values) == 2 and "1 frame(s) after the 2" in extra.notes[0]
    with pytest.raises(BvhError, match=r"partial\.bvh, line %d: 3 values after the 2 frames" % (len(lines) + 1)):
        read_bvh(_write(tmp_path / "partial.bvh", lines + ["1 2 3"]))

"""addon/motion.py + ui.py mocap: File > Import > Motion onto HumanGAN Character keys a CMU clip on an SMPL rig, the
armature Blender's own BVH importer makes from the same clip retargets to the same pose (our reader against
Blender's), and unusable clips are refused by name with nothing keyed."""

import bpy
import numpy as np
import pytest
from addon_fixtures import blank, registered, write_body
from mocap_fixture import cmu_clip

from addon import motion, rig, ui
from neural.bvh import BvhMotion, read_bvh, write_bvh
from neural.retarget import RetargetConfig, retarget, source_from_bvh
from neural.rotations import axis_angle_to_matrix

__all__ = ["blank", "registered"]
FRAMES = 150  # 1.25 s of the real clip keeps Blender's importer and the sampling fast


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The first FRAMES frames of a real CMU clip (frame 0 is its T-pose), written back by our writer."""
    folder = tmp_path_factory.mktemp("mocap")
    full = read_bvh(cmu_clip(folder))
    short = BvhMotion(path=None, skeleton=full.skeleton, values=full.values[:FRAMES], frame_time=full.frame_time)
    return write_bvh(folder / "cmu_walk.bvh", short)


def character(scene, tmp_path):
    bpy.ops.object.humangan_human_add(body_file=str(write_body(tmp_path / "body.npz")))
    arm = bpy.context.active_object
    bpy.data.actions.remove(arm.animation_data.action)  # its default A-pose key: the tests check what an import keys
    arm.animation_data_clear()
    return arm


def local_poses(arm, scene, frames):
    info = rig.read_rig(arm)
    out = []
    for f in frames:
        scene.frame_set(f)
        out.append(rig.read_pose(arm, info).pose)
    return np.stack(out)


def degrees_between(a, b):
    R = np.swapaxes(axis_angle_to_matrix(a), -1, -2) @ axis_angle_to_matrix(b)
    return np.degrees(np.arccos(np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


def test_bvh_import_keys_the_retargeted_clip_and_blenders_importer_agrees(blank, tmp_path, clip):
    blank.render.fps, blank.frame_start = 120, 1
    arm = character(blank, tmp_path)
    assert bpy.ops.humangan.import_mocap(filepath=str(clip)) == {"FINISHED"}
    assert blank.frame_end == FRAMES and arm.animation_data.action.name == "Human_cmu_walk"
    fcurves = arm.animation_data.action.fcurves if hasattr(arm.animation_data.action, "fcurves") else None
    if fcurves is not None:
        assert len(fcurves) == 24 * 4 + 3
    # the keys hold the retarget of neural.retarget onto this rig's skeleton
    info = rig.read_rig(arm)
    target = motion._target(arm, info)
    expected = retarget(source_from_bvh(read_bvh(clip)), target, RetargetConfig())
    frames = [1, 40, FRAMES]
    keyed = local_poses(arm, blank, frames)
    assert degrees_between(keyed[:, 1:], expected.poses[[f - 1 for f in frames], 1:]).max() < 0.05

    # Blender's own BVH importer (bpy.ops.import_anim.bvh) on the same file, then our armature operator
    bpy.ops.import_anim.bvh(filepath=str(clip), global_scale=0.0254 / 0.45, use_fps_scale=False,
                            update_scene_fps=False, update_scene_duration=False)  # CMU's unit → metres
    source = bpy.context.active_object
    assert source.type == "ARMATURE" and source != arm
    second = character(blank, tmp_path)
    second.location.x += 1.0
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj in (source, second))
    bpy.context.view_layer.objects.active = second
    assert bpy.ops.humangan.retarget_armature(source=source.name) == {"FINISHED"}
    assert second.animation_data.action.name == f"{second.name}_{source.name}"
    from_blender = local_poses(second, blank, frames)
    assert degrees_between(from_blender[:, 1:], keyed[:, 1:]).max() < 1.0
    # and, the source being a person's size, the character walks where it walks
    blank.frame_set(FRAMES)
    hips = np.array(source.matrix_world @ source.pose.bones["Hips"].head)
    pelvis = np.array(second.matrix_world @ second.pose.bones[rig.read_rig(second).bones[0]].head)
    assert np.abs((hips - pelvis)[:2]).max() < 0.1


@pytest.mark.parametrize("damage", ["nan", "no legs"])
def test_unusable_clip_is_refused_by_name_and_nothing_is_keyed(blank, tmp_path, clip, damage):
    arm = character(blank, tmp_path)
    lines = clip.read_text().splitlines()
    if damage == "nan":
        row = lines[-3].split()
        row[4] = "nan"
        lines[-3] = " ".join(row)
        expected = r"bad\.bvh, line %d: nan in frame %d .*bone 'Hips', channel Yrotation" % (len(lines) - 2, FRAMES - 3)
    else:
        lines = [ln.replace("LeftLeg", "LeftWing").replace("RightLeg", "RightWing") for ln in lines]
        expected = r"bad\.bvh has no recognisable legs or spine: no bone plays the SMPL joint\(s\) left_knee, "
    (tmp_path / "bad.bvh").write_text("\n".join(lines) + "\n")
    with pytest.raises(RuntimeError, match=expected):
        bpy.ops.humangan.import_mocap(filepath=str(tmp_path / "bad.bvh"))
    assert arm.animation_data is None or arm.animation_data.action is None
    assert not [a for a in bpy.data.actions if a.name.startswith(arm.name)]


def test_menu_entry_and_bone_map_reach_the_retarget(blank, tmp_path, clip):
    assert ui._import_menu in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    arm = character(blank, tmp_path)
    with pytest.raises(RuntimeError, match="bone map entry spine2=Chest: BVH file .*cmu_walk.bvh has no bone 'Chest'"):
        bpy.ops.humangan.import_mocap(filepath=str(clip), bone_map="spine2=Chest")
    assert bpy.ops.humangan.import_mocap(filepath=str(clip), bone_map="left_elbow=") == {"FINISHED"}
    blank.frame_set(40)
    pose = rig.read_pose(arm, rig.read_rig(arm)).pose
    assert np.linalg.norm(pose[18]) < 1e-5 and np.linalg.norm(pose[19]) > 1e-3  # unmapped left elbow stays at rest


def test_long_clips_report_progress_by_stage(blank, tmp_path, clip):
    blank.render.fps = 120
    arm = character(blank, tmp_path)
    calls = []
    report = motion.import_bvh(blank, arm, clip, RetargetConfig(), lambda done, total, stage: calls.append(
        (stage, done, total)))
    stages = [c[0] for c in calls]
    assert stages[0] == "retargeting" and stages.count("keying") == 3  # frames 0, 50, 100 of 150
    assert all(0 <= done < total for _, done, total in calls) and report.frames == calls[-1][2]

"""Shared set-up of the add-on tests (tests/test_addon_*.py): the add-on registered in this bpy process, a
factory-fresh scene per test, small SMPL-format bodies, a tiny random-weight checkpoint, and rigs built the
way the public SMPL add-ons build them (docs/conventions.md §Public SMPL add-ons), written from their described
conventions."""

from __future__ import annotations

import math
from pathlib import Path

import bpy
import numpy as np
import pytest
from mathutils import Quaternion
from tiny_body import box_body_arrays

import addon
from neural.body import BodyModel
from neural.skeleton import JOINT_NAMES, PARENTS

SMPLX_EXTRA = ("jaw", "left_eye", "right_eye",
               *(f"{side}_{finger}{i}" for side in ("left", "right")
                 for finger in ("index", "middle", "pinky", "ring", "thumb") for i in (1, 2, 3)))


@pytest.fixture(scope="module")
def registered():
    addon.register()
    yield
    addon.unregister()


@pytest.fixture
def blank(registered):
    """An empty factory scene with the add-on registered, Film > Transparent on (straight alpha, what most tests
    compare against neural.Renderer; the opaque film is tested on its own)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.film_transparent = True
    yield bpy.context.scene


def blended_body_arrays() -> dict[str, np.ndarray]:
    """The 216-vertex box body with each box vertex skinned 60/40 to its joint and that joint's parent (so the
    Armature modifier must blend), and two shape components."""
    arrays = box_body_arrays(num_betas=2)
    owner = np.concatenate([np.arange(24), np.repeat(np.arange(24), 8)])
    weights = np.zeros((len(owner), 24))
    for v, k in enumerate(owner):
        if v < 24 or PARENTS[k] < 0:
            weights[v, k] = 1.0
        else:
            weights[v, k], weights[v, PARENTS[k]] = 0.6, 0.4
    arrays["weights"] = weights
    return arrays


def write_body(path: Path, arrays: dict[str, np.ndarray] | None = None) -> Path:
    np.savez(path, **(arrays if arrays is not None else blended_body_arrays()))
    return path


def write_tiny_model(path: Path, body_path: Path, seed: int = 0) -> Path:
    """A random-weight `tiny` generator saved for this body (its fingerprint)."""
    import torch

    from neural import checkpoint
    from neural.config import preset
    from neural.generator import Generator

    torch.manual_seed(seed)
    generator = Generator(preset("tiny")).eval()
    try:
        from commands.bench import realistic_weights_

        realistic_weights_(generator)
    except ImportError:
        pass
    checkpoint.save(path, generator, body_fingerprint=BodyModel.load(body_path).fingerprint, step=0)
    return path


def random_pose(seed: int, scale: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=scale, size=(24, 3))


def add_camera(scene, location=(0.0, -4.0, 1.0), rotation=(math.radians(90), 0.0, 0.0), lens=50.0):
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = location, rotation
    cam.data.lens = lens
    scene.camera = cam
    return cam


def build_rig(scene, joints: np.ndarray, style: str, name: str = "Rig") -> bpy.types.Object:
    """An SMPL armature the way one of the public add-ons builds it, from rest joints (24, 3) in the body frame.

    "meshcapade": `root` bone + smplx names, Y-up centimetres, bones along +Y (tail +10), object rotation 90° X
    and scale 0.01, SMPL-X extra bones. "mpi": smplx names, Z-up metres (x, −z, y), bones along +Z (tail +0.1),
    no object rotation, SMPL-X extra bones. "fbx": `m_avg_` names, Y-up metres, tails at the first child with a
    roll, object rotation 90° X (an FBX import).
    """
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    bones = data.edit_bones
    body_joints = list(joints[:22]) if style != "fbx" else list(joints)
    names = list(JOINT_NAMES[:22]) if style != "fbx" else [
        "m_avg_" + n for n in ("Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle",
                               "R_Ankle", "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head",
                               "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand",
                               "R_Hand")]
    parents = list(PARENTS[: len(names)])
    if style != "fbx":  # SMPL-X extras hang off the head and the wrists
        for extra in SMPLX_EXTRA:
            parent = 15 if extra in ("jaw", "left_eye", "right_eye") else (20 if extra.startswith("left") else 21)
            names.append(extra)
            parents.append(parent)
            body_joints.append(joints[parent] + np.array([0.02, 0.03, 0.01]))
    for k, (bone_name, joint) in enumerate(zip(names, body_joints)):
        bone = bones.new(bone_name)
        if style == "meshcapade":
            head = np.asarray(joint) * 100
            bone.head, bone.tail = tuple(head), tuple(head + (0, 10, 0))
        elif style == "mpi":
            head = np.array([joint[0], -joint[2], joint[1]])
            bone.head, bone.tail = tuple(head), tuple(head + (0, 0, 0.1))
        else:
            children = [c for c in range(len(names)) if parents[c] == k]
            tail = body_joints[children[0]] if children else np.asarray(joint) + (0, 0.05, 0.02)
            if np.linalg.norm(np.asarray(tail) - joint) < 1e-3:
                tail = np.asarray(joint) + (0, 0.05, 0.0)
            bone.head, bone.tail = tuple(joint), tuple(tail)
            bone.roll = 0.3 * k
        if parents[k] >= 0:
            bone.parent = bones[names[parents[k]]]
    if style == "meshcapade":
        root = bones.new("root")
        root.head, root.tail = (0, 0, 0), (0, 10, 0)
        bones[names[0]].parent = root
    bpy.ops.object.mode_set(mode="OBJECT")
    if style in ("meshcapade", "fbx"):
        obj.rotation_euler = (math.radians(90), 0, 0)
    if style == "meshcapade":
        obj.scale = (0.01, 0.01, 0.01)
    for pb in obj.pose.bones:
        pb.rotation_mode = "QUATERNION"
    return obj


def set_addon_pose(obj, pose: np.ndarray, transl: np.ndarray, style: str) -> None:
    """Pose a "meshcapade" or "mpi" rig as those add-ons do: Quaternion(axis, angle) of each SMPL joint straight
    into rotation_quaternion, translation on the pelvis (cm for meshcapade) or the object (mpi: (x, −z, y))."""
    for k in range(22):
        aa = pose[k]
        angle = float(np.linalg.norm(aa))
        axis = aa / angle if angle > 0 else np.array([1.0, 0, 0])
        obj.pose.bones[JOINT_NAMES[k]].rotation_quaternion = Quaternion(axis, angle)
    if style == "meshcapade":
        obj.pose.bones["pelvis"].location = tuple(np.asarray(transl) * 100)
    else:
        obj.location = (transl[0], -transl[2], transl[1])


def box_joints() -> np.ndarray:
    return BodyModel(arrays=blended_body_arrays())().joints[0].double().numpy()

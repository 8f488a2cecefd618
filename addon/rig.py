"""SMPL rigs in Blender: build a rigged, skinned human from a body file, and read or write the SMPL pose of any
armature whose bones carry SMPL joint names.

The generator is conditioned on an SMPL pose (paper §3.1); this file is the only place that knows how Blender
armatures spell it (docs/conventions.md §Blender rig):
- our rig (Add > HumanGAN Human): armature data in the body frame (metres, Y up), bones along armature +Y with
  roll 0, the 90° X rotation on the armature object. Rest frames are then the identity, so
  `pose_bone.rotation_quaternion` is exactly the SMPL local rotation.
- the public SMPL / SMPL-X add-ons (docs/conventions.md §Public SMPL add-ons): the same joint names (smplx spelling), an
  optional `root` bone above `pelvis`, data in centimetres with a 0.01 object scale, bones along +Y (Meshcapade) or +Z
  with the Z-up frame baked into the bones (the 2021 MPI add-on). Extra SMPL-X bones (jaw, eyes, fingers) are ignored.
- SMPL FBX exports (`m_avg_Pelvis`, `f_avg_L_Hip`, ..., or bare `Pelvis`, `L_Hip`, ...).

All of them are read the same way, without a case per add-on: the body frame is found from the rest skeleton
(left = right hip → left hip, up = pelvis → neck, units from its size), and each bone's posed-versus-rest
transform is carried into that frame. A rest pose other than SMPL's T-pose (an A-pose applied as rest pose) is
composed in from rest.rest_rotations when the body's T-pose joints are known (the render then shows what the bones
show).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import bpy
import numpy as np
from mathutils import Matrix

from neural.rotations import axis_angle_to_matrix, matrix_to_axis_angle  # numpy only: registration stays torch-free
from neural.skeleton import JOINT_NAMES, PARENTS, snap_to_axis  # the same

if TYPE_CHECKING:
    from neural.body import BodyModel


REQUIRED = 22  # joints 0..21; SMPL-X / SMPL-H rigs have no "left_hand" / "right_hand" (22, 23): identity there
_FBX_NAMES = ("Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle", "Spine3",
              "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow",
              "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand")
NAMINGS: dict[str, tuple[str, ...]] = {
    "smplx": JOINT_NAMES,
    "smpl-fbx-m": tuple("m_avg_" + n for n in _FBX_NAMES),
    "smpl-fbx-f": tuple("f_avg_" + n for n in _FBX_NAMES),
    "smpl-fbx": _FBX_NAMES,  # FBX exports whose importer dropped the m_avg_ / f_avg_ prefix
}
BONE_LENGTH = 0.1  # metres; cosmetic (bones of our rig all point along +Y)


class RigError(ValueError):
    """The armature cannot be read as an SMPL rig; the message names the armature and says what is wrong."""


@dataclass(frozen=True)
class RigInfo:
    """How an armature spells the SMPL skeleton.

    bones: the Blender bone name per SMPL joint (24; None for a missing hand joint).
    body_to_armature: (4, 4) body frame (metres, Y up) → armature space: an axis change times a unit scale.
    rest_joints: (24, 3) rest joint positions in the body frame; missing hands sit at their wrist.
    naming: the key of NAMINGS that matched.
    """

    bones: tuple[str | None, ...]
    body_to_armature: np.ndarray
    rest_joints: np.ndarray
    naming: str


def _short(name: str) -> str:
    # FBX and glTF importers prefix bones with the armature's name ("Armature:pelvis", "rig|pelvis")
    return name.replace("|", ":").rsplit(":", 1)[-1]


def read_rig(obj: bpy.types.Object) -> RigInfo:
    """Recognise an armature object as an SMPL rig by its bone names (RigError naming what is missing)."""
    if obj.type != "ARMATURE":
        raise RigError(f"object '{obj.name}' is a {obj.type.lower()}, not an armature; HumanGAN characters are "
                       "SMPL armatures (Add > HumanGAN Human)")
    by_short = {_short(b.name): b.name for b in obj.data.bones}
    best, found = "smplx", []
    for naming, names in NAMINGS.items():
        hits = [by_short.get(n) for n in names]
        if sum(h is not None for h in hits[:REQUIRED]) > sum(h is not None for h in found[:REQUIRED]):
            best, found = naming, hits
    missing = [JOINT_NAMES[k] for k in range(REQUIRED) if not found or found[k] is None]
    if missing:
        raise RigError(f"armature '{obj.name}' is not an SMPL rig: it lacks the bones {missing[:6]}"
                       f"{' …' if len(missing) > 6 else ''} (SMPL joint names, e.g. 'pelvis', 'left_hip'); "
                       "use Add > HumanGAN Human or a rig from the SMPL / SMPL-X add-ons, or untick "
                       "'HumanGAN character'")
    heads = np.zeros((24, 3))
    for k, name in enumerate(found):
        if name is not None:
            heads[k] = obj.data.bones[name].head_local
        else:  # a missing hand joint sits at its wrist: its rotation stays the identity
            heads[k] = heads[PARENTS[k]]
    M = _body_frame(heads, obj.name)
    rest = heads @ _inverse(M)[:3, :3].T
    return RigInfo(bones=tuple(found), body_to_armature=M, rest_joints=rest, naming=best)


def _body_frame(heads: np.ndarray, name: str) -> np.ndarray:
    """(4, 4) body → armature from rest joint positions (24, 3) in armature space."""
    left = heads[1] - heads[2]  # right hip → left hip: body +X
    up = heads[12] - heads[0]   # pelvis → neck: body +Y
    height = np.linalg.norm(up)
    if height < 1e-6 or np.linalg.norm(left) < 1e-6:
        raise RigError(f"armature '{name}': the hips or the pelvis and neck coincide in the rest pose; "
                       "an SMPL rig's rest pose is the T-pose")
    x = snap_to_axis(left)
    y = snap_to_axis(up - x * (up @ x))
    C = np.stack([x, y, np.cross(x, y)], 1)  # columns: body axes in armature space
    # SMPL's pelvis → neck is about 0.5 m for adults, 0.3 m for small children; the add-ons store centimetres
    scale = 100.0 if height > 5.0 else 1.0
    M = np.eye(4)
    M[:3, :3] = scale * C
    return M


def _rigid_inverse(m: np.ndarray) -> np.ndarray:
    """Inverse of rigid (..., 4, 4) transforms (bone rest matrices have no scale)."""
    out = np.zeros_like(m)
    r_t = np.swapaxes(m[..., :3, :3], -1, -2)
    out[..., :3, :3] = r_t
    out[..., :3, 3] = -(r_t @ m[..., :3, 3:])[..., 0]
    out[..., 3, 3] = 1
    return out


def _inverse(M: np.ndarray) -> np.ndarray:
    """Inverse of body_to_armature (scale · rotation)."""
    scale = np.linalg.norm(M[:3, 0])
    out = np.eye(4)
    out[:3, :3] = M[:3, :3].T / scale**2
    out[:3, 3] = -out[:3, :3] @ M[:3, 3]
    return out


def _orthonormal(m: np.ndarray) -> np.ndarray:
    """Nearest rotation to (..., 3, 3) (interpolated quaternions are not unit length)."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ (vt * np.stack([np.ones_like(d), np.ones_like(d), d], -1)[..., :, None])


@dataclass(frozen=True)
class RigPose:
    """An armature's SMPL pose at one frame: pose (24, 3) local axis-angle (root first, body frame), pelvis (3,)
    the posed pelvis in the body frame, joints (24, 3) posed joints in world, body_to_world (4, 4)."""

    pose: np.ndarray
    pelvis: np.ndarray
    joints_world: np.ndarray
    body_to_world: np.ndarray


def read_pose(obj: bpy.types.Object, rig: RigInfo, rest_rotations: np.ndarray | None = None) -> RigPose:
    """The SMPL pose of an (evaluated) armature object: posed-versus-rest transform of each bone in the body frame,
    times the bone's rest orientation relative to SMPL's T-pose (rest_rotations (24, 3, 3), body frame, from
    rest.rest_rotations; None: the rig's rest pose is the T-pose).

    Reads `pose_bone.matrix` (so constraints and drivers count), not the raw quaternions.
    """
    M = rig.body_to_armature
    M_inv = _inverse(M)
    present = [k for k, name in enumerate(rig.bones) if name is not None]
    P = np.array([obj.pose.bones[rig.bones[k]].matrix for k in present])        # (n, 4, 4) armature, posed
    B = np.array([obj.data.bones[rig.bones[k]].matrix_local for k in present])  # (n, 4, 4) armature, rest
    T = M_inv @ P @ _rigid_inverse(B) @ M                                         # deformation, body frame
    global_rot = np.zeros((24, 3, 3))
    posed = np.zeros((24, 3))
    global_rot[present] = T[:, :3, :3]
    posed[present] = (P[:, :, 3] @ M_inv.T)[:, :3]
    for k in range(24):  # missing hand joints follow their wrist (local rotation = identity)
        if rig.bones[k] is None:
            global_rot[k], posed[k] = global_rot[PARENTS[k]], posed[PARENTS[k]]
    if rest_rotations is not None:
        global_rot = global_rot @ rest_rotations
    global_rot = _orthonormal(global_rot)
    local = global_rot.copy()
    local[1:] = np.swapaxes(global_rot[list(PARENTS[1:])], -1, -2) @ global_rot[1:]
    body_to_world = np.array(obj.matrix_world) @ M
    linear = body_to_world[:3, :3]
    if np.abs(linear.T @ linear - np.eye(3)).max() > 2e-3:
        scale = np.linalg.norm(linear, axis=0)
        raise RigError(f"armature '{obj.name}' is scaled by {np.round(scale, 4).tolist()} (object and parents); "
                       "HumanGAN renders people at their real size: apply the scale (Ctrl+A) or change betas")
    joints_world = posed @ body_to_world[:3, :3].T + body_to_world[:3, 3]
    return RigPose(pose=matrix_to_axis_angle(local), pelvis=posed[0], joints_world=joints_world,
                   body_to_world=body_to_world)


def pose_bases(obj: bpy.types.Object, rig: RigInfo, pose: np.ndarray, transl: np.ndarray,
               rest_pelvis: np.ndarray) -> dict[str, np.ndarray]:
    """Bone-local `matrix_basis` (4, 4) per bone name that gives the SMPL pose (24, 3) and transl (3,).

    The inverse of read_pose for a rig whose other bones (e.g. `root`) are at rest: bone k's rest frame B_k
    conjugates the body-frame rotation into bone space; the pelvis also carries the translation
    (posed pelvis = rest_pelvis + transl, body frame).
    """
    M = rig.body_to_armature
    C = M[:3, :3] / np.linalg.norm(M[:3, 0])
    R = axis_angle_to_matrix(pose)
    out = {}
    for k, name in enumerate(rig.bones):
        if name is None:
            continue
        B = np.array(obj.data.bones[name].matrix_local)
        basis = np.eye(4)
        basis[:3, :3] = B[:3, :3].T @ C @ R[k] @ C.T @ B[:3, :3]
        out[name] = basis
    T0 = np.eye(4)
    T0[:3, :3] = R[0]
    T0[:3, 3] = rest_pelvis + transl - R[0] @ rest_pelvis
    B0 = np.array(obj.data.bones[rig.bones[0]].matrix_local)
    out[rig.bones[0]] = np.linalg.inv(B0) @ M @ T0 @ np.linalg.inv(M) @ B0
    return out


def set_pose(obj: bpy.types.Object, rig: RigInfo, pose: np.ndarray, transl: np.ndarray) -> None:
    """Pose an armature (no keyframes): SMPL pose (24, 3) and transl (3,) relative to the rig's rest pelvis."""
    for name, basis in pose_bases(obj, rig, pose, transl, rig.rest_joints[0]).items():
        obj.pose.bones[name].matrix_basis = Matrix(basis.tolist())


def relaxed_pose() -> np.ndarray:
    """A relaxed A-pose (24, 3): arms about 57° down from the T-pose, elbows a little bent. The default pose of a
    new character: a T-pose's horizontal arms are the pose photos (and so the generator) show least."""
    pose = np.zeros((24, 3))
    pose[16, 2], pose[17, 2] = -1.0, 1.0    # shoulders (left, right) about the body's forward axis
    pose[18, 1], pose[19, 1] = -0.15, 0.15  # elbows
    return pose


def key_pose(obj: bpy.types.Object, rig: RigInfo, pose: np.ndarray, frame: int) -> None:
    """Pose the armature (zero root translation) and key every SMPL bone's rotation and the root's location."""
    set_pose(obj, rig, pose, np.zeros(3))
    for name in rig.bones:
        obj.keyframe_insert(f'pose.bones["{name}"].rotation_quaternion', frame=frame, group=name)
    obj.keyframe_insert(f'pose.bones["{rig.bones[0]}"].location', frame=frame, group=rig.bones[0])


def create_human(context: bpy.types.Context, body: BodyModel, *, betas: np.ndarray | None = None,
                 name: str = "Human", body_file: str = "") -> bpy.types.Object:
    """An armature (our rig convention) with a skinned mesh of the body, feet on the ground at the 3D cursor.

    The mesh holds the shaped rest vertices and the body's skinning weights as vertex groups, so Blender's
    Armature modifier deforms it by the same LBS as neural.body (pose blend shapes are not shown in Blender;
    the render uses the full body model).
    """
    joints, vertices, rest = _rest_shape(body, betas)
    faces = rest.faces.numpy()
    weights = rest.weights.double().numpy()

    data = bpy.data.armatures.new(name)
    arm = bpy.data.objects.new(name, data)
    context.collection.objects.link(arm)
    arm.rotation_mode = "XYZ"
    arm.rotation_euler = (np.pi / 2, 0.0, 0.0)
    arm.location = tuple(np.array(context.scene.cursor.location) + (0.0, 0.0, -vertices[:, 1].min()))
    _build_bones(context, arm, joints)
    for pb in arm.pose.bones:
        pb.rotation_mode = "QUATERNION"

    mesh = bpy.data.meshes.new(name + "Body")
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update()
    mesh.validate()
    mesh.shade_smooth()
    skin = bpy.data.objects.new(name + "Body", mesh)
    context.collection.objects.link(skin)
    skin.parent = arm
    for k, joint in enumerate(JOINT_NAMES):
        group = skin.vertex_groups.new(name=joint)
        column = weights[:, k]
        ones = np.flatnonzero(column == 1.0)
        if len(ones):
            group.add(ones.tolist(), 1.0, "REPLACE")
        for v in np.flatnonzero((column > 0) & (column != 1.0)):
            group.add([int(v)], float(column[v]), "REPLACE")
    modifier = skin.modifiers.new("Armature", "ARMATURE")
    modifier.object = arm
    modifier.use_vertex_groups = True

    settings = arm.humangan
    settings.enabled = True
    settings.body_file = body_file
    if betas is not None:
        count = min(len(betas), len(settings.betas))
        settings.betas[:count] = [float(x) for x in betas[:count]]
    return arm


def _rest_shape(body: BodyModel, betas: np.ndarray | None):
    """Rest joints (24, 3) and shaped vertices (V, 3) of a body for betas (cut to its shape components)."""
    import torch

    b = torch.zeros(1, 1) if betas is None else torch.as_tensor(np.asarray(betas, np.float32))[None]
    with torch.no_grad():
        rest = body(betas=b[:, :body.num_betas])
    return rest.joints[0].double().numpy(), rest.shaped[0].double().numpy(), rest


def apply_shape(context: bpy.types.Context, arm: bpy.types.Object, body: BodyModel, betas: np.ndarray) -> int:
    """Move the rest skeleton and the skinned mesh of a rig made by create_human to a body's shape for betas, so
    the viewport shows the shape the render uses; the pose is kept. Returns the number of meshes updated."""
    info = read_rig(arm)
    if info.naming != "smplx" or np.abs(info.body_to_armature - np.eye(4)).max() > 1e-9:
        raise RigError(f"armature '{arm.name}' was not made by Add > HumanGAN Human; its shape comes from the add-on "
                       "that made it")
    joints, vertices, _ = _rest_shape(body, betas)
    meshes = [c for c in arm.children if c.type == "MESH" and len(c.data.vertices) == len(vertices)]
    _build_bones(context, arm, joints, existing=True)
    for skin in meshes:
        skin.data.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
        skin.data.update()
    return len(meshes)


def _build_bones(context: bpy.types.Context, arm: bpy.types.Object, joints: np.ndarray,
                 existing: bool = False) -> None:
    """Edit bones: head = joint (body frame), tail = head + BONE_LENGTH·Y, roll 0, SMPL parents (or move the
    existing ones)."""
    view_layer = context.view_layer
    previous = view_layer.objects.active
    view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        bones = arm.data.edit_bones
        for k, joint in enumerate(JOINT_NAMES):
            bone = bones[joint] if existing else bones.new(joint)
            bone.head = tuple(joints[k])
            bone.tail = tuple(joints[k] + (0.0, BONE_LENGTH, 0.0))
            bone.roll = 0.0
            if PARENTS[k] >= 0 and not existing:
                bone.parent = bones[JOINT_NAMES[PARENTS[k]]]
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous if previous is not None else arm

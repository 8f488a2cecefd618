"""Which bone of a mocap skeleton plays which SMPL joint: name maps for the common conventions (CMU, Mixamo,
MotionBuilder-style plain names, SMPL's own), matched after normalising how a side and a prefix are spelt, plus the
user's own entries for the rest (neural/retarget.py uses the result).

A map names, per SMPL joint, the bone whose *joint* sits where the SMPL joint does and whose bone runs along the
same body segment (SMPL's left_hip rotates the thigh: CMU's LeftUpLeg, not LHipJoint). Names are compared in a
canonical form: importer prefixes dropped ("mixamorig:Hips", "Armature|Hips", "m_avg_L_Hip"), case and separators
ignored, and the side written as a `left`/`right` prefix whether the file says LeftArm, L_Arm, Arm.L, arm_l or
Arm_L. The convention that maps most joints wins; user entries `smpl_joint=Bone` then replace or add
(`smpl_joint=` unmaps one).
"""

from __future__ import annotations

import re

from .skeleton import JOINT_NAMES

# Without these the body cannot stand or bend: a clip missing one is refused, by name.
REQUIRED = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
SPINE = ("spine1", "spine2", "spine3")  # at least one of them is required too


def _sided(table: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Expand `side_` entries (candidates written with `side`) into left_ and right_ ones."""
    out = {}
    for joint, names in table.items():
        if joint.startswith("side_"):
            for side in ("left", "right"):
                out[side + joint[4:]] = tuple(n.replace("side", side) for n in names)
        else:
            out[joint] = names
    return out


# Canonical candidates per SMPL joint, first found wins. Only joints whose bone is the same segment are listed.
CONVENTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "cmu": _sided({  # the cgspeed BVH conversion of the CMU database (31 joints, Neck at Spine1's joint)
        "pelvis": ("hips",), "side_hip": ("sideupleg",), "side_knee": ("sideleg",), "side_ankle": ("sidefoot",),
        "side_foot": ("sidetoebase",), "spine1": ("lowerback",), "spine2": ("spine",), "spine3": ("spine1",),
        "neck": ("neck1",), "head": ("head",), "side_collar": ("sideshoulder",), "side_shoulder": ("sidearm",),
        "side_elbow": ("sideforearm",), "side_wrist": ("sidehand",), "side_hand": ("sidefingerbase",)}),
    "mixamo": _sided({  # Mixamo, and Unity-humanoid exports that follow it
        "pelvis": ("hips",), "side_hip": ("sideupleg",), "side_knee": ("sideleg",), "side_ankle": ("sidefoot",),
        "side_foot": ("sidetoebase",), "spine1": ("spine",), "spine2": ("spine1",), "spine3": ("spine2",),
        "neck": ("neck",), "head": ("head",), "side_collar": ("sideshoulder",), "side_shoulder": ("sidearm",),
        "side_elbow": ("sideforearm",), "side_wrist": ("sidehand",), "side_hand": ("sidehandmiddle1",)}),
    "plain": _sided({  # MotionBuilder / Vicon-style and Unreal-style names (Hips, Ab, Chest, LeftCollar, ...)
        "pelvis": ("hips", "pelvis", "hip", "root"),
        "side_hip": ("sidehip", "sidethigh", "sideupleg", "sideupperleg"),
        "side_knee": ("sideknee", "sideshin", "sidecalf", "sidelowerleg", "sideleg"),
        "side_ankle": ("sideankle", "sidefoot"), "side_foot": ("sidetoes", "sidetoe", "sideball", "sidetoebase"),
        "spine1": ("ab", "abdomen", "spine", "spine01", "lowerback"), "spine2": ("spine02", "spine1", "midback"),
        "spine3": ("chest", "spine03", "spine2", "upperchest", "upperback"), "neck": ("neck", "neck01"),
        "head": ("head",), "side_collar": ("sidecollar", "sideclavicle"),
        "side_shoulder": ("sideshoulder", "sideupperarm", "sideuparm"),
        "side_elbow": ("sideelbow", "sideforearm", "sidelowerarm"), "side_wrist": ("sidewrist", "sidehand")}),
    "smpl": {name: (name.replace("_", ""),) for name in JOINT_NAMES},  # SMPL's names, e.g. a BVH we wrote
}

_PREFIX = re.compile(r"^[mf]_avg_")
_SIDES = tuple(re.compile(p, re.I) for p in (
    r"^(?P<side>left|right)(?P<rest>.+)$", r"^(?P<rest>.+)(?P<side>left|right)$",   # LeftArm, ArmRight
    r"^(?P<side>[lr])[._\- ](?P<rest>.+)$", r"^(?P<rest>.+)[._\- ](?P<side>[lr])$"))  # L_Arm, Arm.L, arm_l


def canonical(name: str) -> str:
    """'mixamorig:LeftUpLeg', 'L_UpLeg', 'upleg.L', 'UpLeg_l' → 'leftupleg'; sideless names just lose case and
    separators ('Spine_01' → 'spine01')."""
    short = _PREFIX.sub("", name.replace("|", ":").rsplit(":", 1)[-1])
    for pattern in _SIDES:
        match = pattern.match(short)
        if match:
            side = "left" if match["side"][0].lower() == "l" else "right"
            return side + re.sub(r"[._\- ]", "", match["rest"]).lower()
    return re.sub(r"[._\- ]", "", short).lower()


def parse_bone_map(text: str) -> tuple[tuple[str, str], ...]:
    """'spine2=Chest, left_hand=' → (('spine2', 'Chest'), ('left_hand', '')): entries separated by commas,
    semicolons or new lines; ValueError naming an entry without '=' or an unknown SMPL joint."""
    entries = []
    for item in re.split(r"[,;\n]", text):
        if not item.strip():
            continue
        joint, eq, bone = (part.strip() for part in item.partition("="))
        if not eq:
            raise ValueError(f"bone map entry {item.strip()!r} has no '='; write smpl_joint=SourceBone, e.g. "
                             "spine2=Chest (an empty bone unmaps the joint)")
        entries.append((joint, bone))
    return check_bone_map(tuple(entries))


def check_bone_map(entries: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    for joint, _ in entries:
        if joint not in JOINT_NAMES:
            raise ValueError(f"bone map names SMPL joint {joint!r}; SMPL's joints are {', '.join(JOINT_NAMES)}")
    return entries


def match_bones(names: tuple[str, ...], overrides: tuple[tuple[str, str], ...] = (), *,
                source: str = "the skeleton") -> tuple[str, tuple[int | None, ...]]:
    """(convention, index into `names` or None per SMPL joint (24)). overrides: (smpl_joint, bone) entries that
    replace the convention's choice (bone '' unmaps); ValueError naming a bone that `names` lacks."""
    lookup: dict[str, int] = {}
    for index, name in enumerate(names):
        lookup.setdefault(canonical(name), index)
    best, best_map = "", (None,) * len(JOINT_NAMES)
    for convention, table in CONVENTIONS.items():
        found = tuple(next((lookup[c] for c in table.get(j, ()) if c in lookup), None) for j in JOINT_NAMES)
        if sum(f is not None for f in found) > sum(f is not None for f in best_map):
            best, best_map = convention, found
    mapping = list(best_map)
    for joint, bone in check_bone_map(overrides):
        if bone and bone not in names:
            raise ValueError(f"bone map entry {joint}={bone}: {source} has no bone {bone!r}; its bones are "
                             f"{', '.join(names)}")
        mapping[JOINT_NAMES.index(joint)] = names.index(bone) if bone else None
    return best or "none", tuple(mapping)


def require_body(names: tuple[str, ...], mapping: tuple[int | None, ...], *, source: str) -> None:
    """ValueError naming the SMPL joints a usable clip needs (legs, pelvis, one spine joint) that have no bone."""
    missing = [j for j in REQUIRED if mapping[JOINT_NAMES.index(j)] is None]
    if all(mapping[JOINT_NAMES.index(j)] is None for j in SPINE):
        missing.append("spine1|spine2|spine3")
    if missing:
        looked = {j: CONVENTIONS["plain"].get(j.split("|")[0], ())[:3] for j in missing}
        raise ValueError(f"{source} has no recognisable legs or spine: no bone plays the SMPL joint(s) "
                         f"{', '.join(missing)} (looked for names like {looked}); its bones are {', '.join(names)}. "
                         "Map them by hand, e.g. bone map 'left_hip=MyThigh_L, spine2=MyChest'")

"""Blender scene → frame requests for `neural.Renderer` (docs/overview.md §Data flow): the scene camera as OpenCV K and
world_to_camera, and every enabled SMPL armature the camera sees as a `Character`. Plain numpy; all bpy reads go
through the depsgraph of the frame being rendered (never `bpy.context`), so animation, drivers and constraints
count.

Camera (docs/conventions.md §Blender camera, checked against `world_to_camera_view`): W, H = resolution × percentage;
the sensor fit decides whether the focal length is measured against W or H (`f = lens / sensor · W|H`); lens shift moves
the principal point by shift × that fitted size; pixel (0, 0) is the centre of the top-left pixel, so
cx = W/2 − shift_x·fit − 0.5 and cy = H/2 + shift_y·fit − 0.5. world_to_camera = diag(1, −1, −1) ·
inverse(camera.matrix_world) (Blender cameras look down −Z with +Y up; OpenCV looks down +Z with +Y down).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import bpy
import numpy as np

from . import rest
from .rig import JOINT_NAMES, RigError, read_pose, read_rig

if TYPE_CHECKING:  # torch is imported on the first render, not when Blender starts
    from neural.frame import Character, FrameRequest

FLIP = np.diag([1.0, -1.0, -1.0, 1.0])  # Blender camera axes ↔ OpenCV camera axes
CULL_MARGIN = 0.35  # metres around the joints that still count as "seen" (hands, hair, feet beyond the joints)


class SceneError(ValueError):
    """The frame cannot be rendered at all (no camera, unsupported camera); the message says how to fix it."""


@dataclass(frozen=True)
class CharacterJob:
    """One character to draw: its object name, absolute body file ('' = the free body) and renderer input."""

    name: str
    body_file: str
    character: Character


@dataclass(frozen=True)
class SceneFrame:
    """A frame to render: OpenCV camera K (3, 3) and world_to_camera (4, 4), size, characters, the problems (one
    message per skipped character, naming it) and warnings (rendered, but not quite as the rig shows)."""

    K: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int
    jobs: tuple[CharacterJob, ...]
    problems: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    detail: int | None = None  # FrameRequest.detail (Render Properties > HumanGAN > Detail)

    def requests(self) -> list[tuple[str, tuple[str, ...], FrameRequest]]:
        """One FrameRequest per body file (a Renderer holds one body): (body_file, character names, request)."""
        from neural.frame import FrameRequest

        groups: dict[str, list[CharacterJob]] = {}
        for job in self.jobs:
            groups.setdefault(job.body_file, []).append(job)
        return [(body, tuple(j.name for j in jobs),
                 FrameRequest(K=self.K, world_to_camera=self.world_to_camera, width=self.width, height=self.height,
                              characters=tuple(j.character for j in jobs), detail=self.detail))
                for body, jobs in groups.items()]


def render_size(scene: bpy.types.Scene) -> tuple[int, int]:
    """Output size in pixels (W, H): resolution × percentage, as Blender computes it."""
    r = scene.render
    return int(r.resolution_x * r.resolution_percentage / 100), int(r.resolution_y * r.resolution_percentage / 100)


def camera_intrinsics(camera: bpy.types.Camera, width: int, height: int) -> np.ndarray:
    """OpenCV K (3, 3) in pixels of a perspective Blender camera datablock for a W × H image (square pixels)."""
    if camera.type != "PERSP":
        raise SceneError(f"camera '{camera.name}' is {camera.type.lower()}; HumanGAN needs a perspective camera "
                         "(Camera properties > Lens > Type: Perspective)")
    fit = camera.sensor_fit
    horizontal = fit == "HORIZONTAL" or (fit == "AUTO" and width >= height)
    sensor = camera.sensor_height if fit == "VERTICAL" else camera.sensor_width
    fitted = width if horizontal else height
    f = camera.lens / sensor * fitted
    return np.array([[f, 0.0, width / 2 - camera.shift_x * fitted - 0.5],
                     [0.0, f, height / 2 + camera.shift_y * fitted - 0.5],
                     [0.0, 0.0, 1.0]])


def world_to_camera(matrix_world) -> np.ndarray:
    """(4, 4) world → OpenCV camera from a camera object's matrix_world (its scale is ignored, as Blender does)."""
    m = np.array(matrix_world, dtype=np.float64)
    rotation = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    camera_to_world = np.eye(4)
    camera_to_world[:3, :3] = rotation
    camera_to_world[:3, 3] = m[:3, 3]
    inverse = np.eye(4)
    inverse[:3, :3] = rotation.T
    inverse[:3, 3] = -rotation.T @ m[:3, 3]
    return FLIP @ inverse


def intrinsics_from_projection(projection, width: int, height: int) -> np.ndarray:
    """OpenCV K (3, 3) from an OpenGL projection matrix (a viewport's window_matrix) for a W × H image."""
    P = np.array(projection, dtype=np.float64)
    if abs(P[3, 3]) > 1e-9:
        raise SceneError("the viewport is orthographic; HumanGAN previews need a perspective view (numpad 5)")
    return np.array([[P[0, 0] * width / 2, 0.0, (1 - P[0, 2]) * width / 2 - 0.5],
                     [0.0, P[1, 1] * height / 2, (1 + P[1, 2]) * height / 2 - 0.5],
                     [0.0, 0.0, 1.0]])


def sees(K: np.ndarray, w2c: np.ndarray, width: int, height: int, points_world: np.ndarray) -> bool:
    """Whether any of the points (N, 3), grown by CULL_MARGIN metres, falls inside the image."""
    cam = points_world @ w2c[:3, :3].T + w2c[:3, 3]
    front = cam[:, 2] > 1e-3
    if not front.any():
        return False
    cam = cam[front]
    xy = cam[:, :2] / cam[:, 2:] * np.diag(K)[:2] + K[:2, 2]
    grow = CULL_MARGIN * K[0, 0] / cam[:, 2]
    return bool(((xy[:, 0] + grow >= -0.5) & (xy[:, 0] - grow <= width - 0.5) &
                 (xy[:, 1] + grow >= -0.5) & (xy[:, 1] - grow <= height - 0.5)).any())


RestJoints = Callable[[str, np.ndarray], np.ndarray]  # (body_file, betas) → T-pose joints (24, 3), body frame


def body_file_path(obj: bpy.types.Object) -> str:
    """The character's absolute body file ('' = the free body); "//" is relative to the saved .blend."""
    text = obj.humangan.body_file
    if not text:
        return ""
    if text.startswith("//") and not bpy.data.filepath:
        raise ValueError(f"its Body File is {text}, relative to the .blend file, but this file is not saved yet: "
                         "save it next to the body file, or choose the body file again with an absolute path")
    return bpy.path.abspath(text)


def read_characters(depsgraph, K: np.ndarray, w2c: np.ndarray, width: int, height: int,
                    rest_joints: RestJoints | None = None) -> tuple[list[CharacterJob], list[str], list[str]]:
    """Every enabled armature of the depsgraph that the camera sees, as Character jobs, plus one problem
    message per character that cannot be read (named, so the others still render) and warnings.

    rest_joints gives the body model's T-pose joints for a body file and betas: the pose is read relative to
    them (rest.py: a rig whose rest pose is not the T-pose renders as its bones show), the character's transl puts
    the model's pelvis where the armature's pelvis is, and a rig whose joints are more than
    rest.PROPORTION_TOLERANCE from them gets a warning. Without it, the rig's own rest skeleton is used.
    """
    from neural.frame import Character

    jobs, problems, warnings = [], [], []
    # The depsgraph iterator reuses its items: keep the originals and evaluate each one afterwards. Settings
    # come from the original: editing an ID property does not re-evaluate the object.
    armatures = [o.original for o in depsgraph.objects if o.type == "ARMATURE" and o.original.humangan.enabled]
    for original in sorted(armatures, key=lambda o: o.name):
        obj = original.evaluated_get(depsgraph)
        settings = original.humangan
        try:
            rig = read_rig(obj)
            betas = np.array(settings.betas, dtype=np.float64)
            body_file = body_file_path(original)
            tpose = None if rest_joints is None else rest_joints(body_file, betas)
            present = np.array([b is not None for b in rig.bones])
            rotations = None if tpose is None else rest.rest_rotations(rig.rest_joints, tpose, present)
            posed = read_pose(obj, rig, rotations)
            if not sees(K, w2c, width, height, posed.joints_world):
                continue
            pelvis = rig.rest_joints[0] if tpose is None else tpose[0]
            if tpose is not None:
                offset, k = rest.largest_offset(rest.unposed(rig.rest_joints, rotations), tpose, present)
                if offset > rest.PROPORTION_TOLERANCE:
                    warnings.append(f"HumanGAN: character '{obj.name}': the rig's {JOINT_NAMES[k]} is "
                                    f"{offset * 100:.1f} cm from the body's; the render follows the body file and "
                                    "betas: use Fit Shape to Rig (Object Data Properties > HumanGAN Character) to "
                                    "fit the betas to the rig")
            character = Character(pose=posed.pose, betas=betas, transl=posed.pelvis - pelvis, seed=int(settings.seed),
                                  psi=float(settings.psi), body_to_world=posed.body_to_world, name=obj.name)
        except (RigError, ValueError, FileNotFoundError) as error:
            problems.append(f"HumanGAN: character '{obj.name}' skipped: {error}")
            continue
        jobs.append(CharacterJob(name=obj.name, body_file=body_file, character=character))
    return jobs, problems, warnings


def read_frame(depsgraph, *, rest_joints: RestJoints | None = None) -> SceneFrame:
    """The scene camera and characters of the depsgraph's current frame (SceneError without a usable camera)."""
    scene = depsgraph.scene
    if scene.camera is None:
        raise SceneError(f"scene '{scene.name}' has no camera; add one (Add > Camera) and make it the scene camera")
    if scene.render.pixel_aspect_x != scene.render.pixel_aspect_y:
        raise SceneError("HumanGAN needs square pixels: set Output > Format > Aspect X and Y equal")
    camera = scene.camera.evaluated_get(depsgraph)
    width, height = render_size(scene)
    K = camera_intrinsics(camera.data, width, height)
    w2c = world_to_camera(camera.matrix_world)
    jobs, problems, warnings = read_characters(depsgraph, K, w2c, width, height, rest_joints)
    return SceneFrame(K=K, world_to_camera=w2c, width=width, height=height, jobs=tuple(jobs),
                      problems=tuple(problems), warnings=tuple(warnings),
                      detail=detail_bound(scene.humangan.detail))


def detail_bound(setting: str) -> int | None:
    """Render Properties > HumanGAN > Detail → FrameRequest.detail (None: as fine as the frame needs)."""
    return {"MODEL": 1, "2": 2, "4": 4, "FRAME": None}[setting]


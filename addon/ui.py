"""Settings, preferences, panels and operators of the HumanGAN extension (docs/overview.md §Data flow: the user's side
of the frame request).

- Preferences: an extra Python path searched first, where a user keeps a CUDA build of torch (`pip install
  --target DIR torch --index-url https://download.pytorch.org/whl/cu124`); the extension ships torch for the CPU.
- Scene settings (`scene.humangan`): model file (empty: the default model), device, viewport preview scale.
- Character settings (`object.humangan`, armatures): enabled, appearance seed, truncation ψ, body file (empty:
  the free body), betas.
- Operators: Add > HumanGAN Human, Apply Shape to Rig (betas → rest skeleton and mesh), Fit Shape to Rig (rest
  skeleton → betas, for rigs of other add-ons), Import Motion (AMASS), File > Import > Motion onto HumanGAN
  Character (.bvh) and Retarget Motion from Armature (mocap, addon/motion.py).

File settings take Blender's relative paths ("//" = the .blend's folder, PATH_SUPPORTS_BLEND_RELATIVE), so a
project folder moved with its model and body files still renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, PointerProperty
from bpy.props import StringProperty
from bpy_extras.io_utils import ImportHelper

from .passes import ENGINE_ID

NUM_BETAS = 10
RELATIVE = {"PATH_SUPPORTS_BLEND_RELATIVE"}  # Blender 4.5+: "//" paths are allowed (and shown relative)


def apply_torch_path(path: str) -> str | None:
    """Put the preference's folder first on sys.path; a message when torch was imported already (restart)."""
    if not path:
        return None
    folder = str(Path(bpy.path.abspath(path)).resolve())
    if not Path(folder).is_dir():
        return f"HumanGAN: the torch path {folder} is not a folder"
    if folder not in sys.path:
        sys.path.insert(0, folder)
    torch = sys.modules.get("torch")
    if torch is not None and not str(getattr(torch, "__file__", "")).startswith(folder):
        return f"HumanGAN: torch was already loaded from {Path(torch.__file__).parent}; restart Blender to use {folder}"
    return None


def _torch_path_changed(self, context) -> None:
    message = apply_torch_path(self.torch_path)
    if message:
        print(message)


class HumanGanPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    torch_path: StringProperty(
        name="Extra Python path", subtype="DIR_PATH", update=_torch_path_changed,
        description="Folder searched before the bundled CPU torch, e.g. one where a CUDA build of torch was "
                    "installed with pip install --target. Takes effect when torch is first loaded")

    def draw(self, context):
        self.layout.prop(self, "torch_path")
        torch = sys.modules.get("torch")
        if torch is not None:
            cuda = "CUDA available" if torch.cuda.is_available() else "no CUDA"
            self.layout.label(text=f"torch {torch.__version__} loaded ({cuda})")


class SceneSettings(bpy.types.PropertyGroup):
    model_file: StringProperty(name="Model", subtype="FILE_PATH", options=RELATIVE,
                               description="Generator checkpoint (.safetensors); empty: the default model")
    device: EnumProperty(name="Device", default="AUTO", items=[
        ("AUTO", "Auto", "CUDA when torch sees a GPU, else the CPU"),
        ("CPU", "CPU", "Always the CPU"),
        ("CUDA", "CUDA", "An NVIDIA GPU (needs a CUDA build of torch, see the preferences)")])
    preview_scale: FloatProperty(name="Preview Scale", default=0.5, min=0.05, max=1.0,
                                 description="Viewport preview resolution as a fraction of the viewport's pixels")
    detail: EnumProperty(name="Detail", default="FRAME", items=[
        ("MODEL", "Model", "Each person at the model's own resolution, stretched into the frame (fastest)"),
        ("2", "2×", "Up to twice the model's resolution"),
        ("4", "4×", "Up to four times the model's resolution"),
        ("FRAME", "Frame", "As fine as the person covers in the frame: one generated pixel per frame pixel")],
        description="How finely each person is generated: the model's backbone and pose field are evaluated at "
                    "the resolution the person covers, up to this bound")


class CharacterSettings(bpy.types.PropertyGroup):
    enabled: BoolProperty(name="HumanGAN Character", default=False,
                          description="Render this SMPL armature with HumanGAN")
    seed: IntProperty(name="Appearance Seed", default=0, min=0, description="The person's look (the latent z)")
    psi: FloatProperty(name="Truncation ψ", default=0.7, min=0.0, max=1.0,
                       description="1: the full variety of the model; lower: closer to the average person")
    body_file: StringProperty(name="Body File", subtype="FILE_PATH", options=RELATIVE,
                              description="SMPL-format body (.npz) the model was trained with; empty: the free body")
    betas: FloatVectorProperty(name="Betas", size=NUM_BETAS, default=(0.0,) * NUM_BETAS, soft_min=-3, soft_max=3,
                               description="Body shape coefficients")


def _body_path(settings_path: str):
    from neural.body import free_body_path

    return Path(bpy.path.abspath(settings_path)) if settings_path else free_body_path()


class _OnArmature:
    """An undoable operator on the active object, which must be an armature (a character's rig)."""

    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return context.active_object is not None and context.active_object.type == "ARMATURE"


class OBJECT_OT_humangan_human_add(bpy.types.Operator):
    """Add a rigged SMPL human (armature + skinned body) that HumanGAN renders"""

    bl_idname = "object.humangan_human_add"
    bl_label = "HumanGAN Human"
    bl_options = {"REGISTER", "UNDO"}

    body_file: StringProperty(name="Body File", subtype="FILE_PATH", options=RELATIVE,
                              description="SMPL-format body (.npz); empty: the free body")
    seed: IntProperty(name="Appearance Seed", default=0, min=0)

    def execute(self, context):
        from . import preload, rig

        path = _body_path(self.body_file)
        try:
            body = preload.load_body(path)
        except (ValueError, FileNotFoundError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if context.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        arm = rig.create_human(context, body, name="Human", body_file=self.body_file)
        arm.humangan.seed = self.seed
        # the rest pose stays SMPL's T-pose; the character starts keyed in a relaxed A-pose
        rig.key_pose(arm, rig.read_rig(arm), rig.relaxed_pose(), context.scene.frame_current)
        for other in context.view_layer.objects:
            other.select_set(False)
        arm.select_set(True)
        context.view_layer.objects.active = arm
        return {"FINISHED"}


class OBJECT_OT_humangan_apply_shape(_OnArmature, bpy.types.Operator):
    """Move the rig's rest skeleton and body mesh to the character's body file and betas (the render uses them
    either way; this makes the viewport show them)"""

    bl_idname = "object.humangan_apply_shape"
    bl_label = "Apply Shape to Rig"

    def execute(self, context):
        import numpy as np
        from neural.body import BodyModel

        from . import rig

        arm = context.active_object
        try:
            body = BodyModel.load(_body_path(arm.humangan.body_file))
            count = rig.apply_shape(context, arm, body, np.array(arm.humangan.betas))
        except (ValueError, FileNotFoundError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"'{arm.name}': rest skeleton and {count} body mesh(es) reshaped")
        return {"FINISHED"}


class OBJECT_OT_humangan_fit_shape(_OnArmature, bpy.types.Operator):
    """Set the character's betas to those whose body joints best match the rig's rest skeleton (least squares), so
    the render has the rig's proportions; for rigs made by other add-ons or exports"""

    bl_idname = "object.humangan_fit_shape"
    bl_label = "Fit Shape to Rig"

    def execute(self, context):
        import numpy as np

        from . import frames, rest, rig
        from .scene import body_file_path

        arm = context.active_object
        try:
            info = rig.read_rig(arm)
            joints = frames.joint_model(body_file_path(arm))
            present = np.array([b is not None for b in info.bones])
            before = joints.joints(np.array(arm.humangan.betas))
            rotations = rest.rest_rotations(info.rest_joints, before, present)
            target = rest.unposed(info.rest_joints, rotations)
            was, _ = rest.largest_offset(target, before, present)
            betas, residual = joints.fit(target, present)
        except (ValueError, FileNotFoundError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        count = min(len(betas), NUM_BETAS)
        arm.humangan.betas = [float(b) for b in betas[:count]] + [0.0] * (NUM_BETAS - count)
        self.report({"INFO"}, f"'{arm.name}': {count} betas fitted; joints within {residual * 100:.1f} cm of the rig "
                              f"(were {was * 100:.1f} cm)")
        return {"FINISHED"}


class HUMANGAN_OT_import_motion(_OnArmature, bpy.types.Operator, ImportHelper):
    """Import an AMASS-style motion (.npz: poses, trans, betas, mocap_framerate; Z up) onto the active SMPL
    armature as keyframes at the scene's frame rate"""

    bl_idname = "humangan.import_motion"
    bl_label = "Import Motion"

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    set_betas: BoolProperty(name="Use Betas", default=True, description="Copy the file's betas to the character")
    set_range: BoolProperty(name="Set Frame Range", default=True, description="End the scene with the motion")

    def execute(self, context):
        from . import motion, rig

        arm = context.active_object
        try:
            frames = motion.import_motion(context.scene, arm, Path(self.filepath), set_betas=self.set_betas)
        except (ValueError, FileNotFoundError, rig.RigError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if self.set_range:
            context.scene.frame_end = context.scene.frame_start + frames - 1
        self.report({"INFO"}, f"imported {frames} frames onto '{arm.name}'")
        return {"FINISHED"}


_UNITS = [("auto", "Auto", "From the skeleton's leg length"), ("cm", "Centimetres", ""), ("m", "Metres", ""),
          ("mm", "Millimetres", ""), ("inch", "Inches", ""), ("cmu", "CMU (1/0.45 inch)", "CMU's BVH conversion")]
_BONE_MAP_HELP = ("Matches the name maps miss or get wrong: smpl_joint=SourceBone, separated by commas, e.g. "
                  "'spine2=Chest, left_hand=' (nothing after '=' leaves that joint at rest)")


def _progress(context):
    """A motion.Progress callback on the window manager's progress bar (and the console for long clips)."""
    wm = context.window_manager
    started = []

    def update(done: int, total: int, stage: str) -> None:
        if not started:
            wm.progress_begin(0, 1)
            started.append(True)
        wm.progress_update(done / max(total, 1))  # one bar, refilled per stage (sampling, retargeting, keying)
        if total >= 500 and done % 500 == 0:
            print(f"HumanGAN: {stage} {done}/{total}")

    return update


class _MocapOperator(_OnArmature):
    """What the two mocap operators share: the bone map, the run with progress and the report."""

    bone_map: StringProperty(name="Bone Map", description=_BONE_MAP_HELP)
    set_range: BoolProperty(name="Set Frame Range", default=True, description="End the scene with the motion")

    def retarget(self, context, run) -> set[str]:
        from neural.retarget import RetargetConfig
        from neural.retarget_names import parse_bone_map

        from . import rig

        arm = context.active_object
        try:
            config = RetargetConfig(bone_map=parse_bone_map(self.bone_map), units=getattr(self, "units", "auto"))
            report = run(arm, config, _progress(context))
        except (ValueError, FileNotFoundError, rig.RigError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        finally:
            context.window_manager.progress_end()
        if self.set_range:
            context.scene.frame_end = context.scene.frame_start + report.frames - 1
        self.report({"INFO"}, f"'{arm.name}': {report.summary()}")
        return {"FINISHED"}


class HUMANGAN_OT_import_mocap(_MocapOperator, bpy.types.Operator, ImportHelper):
    """Retarget a BVH motion capture clip (CMU, Mixamo, MotionBuilder-style or SMPL bone names) onto the active
    HumanGAN character as keyframes at the scene's frame rate"""

    bl_idname = "humangan.import_mocap"
    bl_label = "Motion onto HumanGAN Character"

    filename_ext = ".bvh"
    filter_glob: StringProperty(default="*.bvh", options={"HIDDEN"})
    units: EnumProperty(name="Units", items=_UNITS, default="auto", description="Units of the file's lengths")

    def execute(self, context):
        from . import motion

        return self.retarget(context, lambda arm, config, progress: motion.import_bvh(
            context.scene, arm, Path(self.filepath), config, progress))


class HUMANGAN_OT_retarget_armature(_MocapOperator, bpy.types.Operator):
    """Retarget the animation of another armature in the scene (e.g. from Blender's BVH or FBX import) onto the
    active HumanGAN character as keyframes"""

    bl_idname = "humangan.retarget_armature"
    bl_label = "Retarget Motion from Armature"

    source: StringProperty(name="Source Armature", description="The armature whose motion to copy")

    def invoke(self, context, event):
        others = [o for o in context.selected_objects if o.type == "ARMATURE" and o != context.active_object]
        if others and not self.source:
            self.source = others[0].name
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context):
        self.layout.prop_search(self, "source", bpy.data, "objects")
        self.layout.prop(self, "bone_map")
        self.layout.prop(self, "set_range")

    def execute(self, context):
        from . import motion

        source = bpy.data.objects.get(self.source)
        if source is None:
            self.report({"ERROR"}, f"no object named '{self.source}'; choose the source armature")
            return {"CANCELLED"}
        return self.retarget(context, lambda arm, config, progress: motion.import_from_armature(
            context.scene, source, arm, config, progress))


class RENDER_PT_humangan(bpy.types.Panel):
    bl_label = "HumanGAN"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    COMPAT_ENGINES = {ENGINE_ID}

    @classmethod
    def poll(cls, context):
        return context.engine in cls.COMPAT_ENGINES

    def draw(self, context):
        settings = context.scene.humangan
        layout = self.layout
        layout.use_property_split = True
        layout.prop(settings, "model_file")
        layout.prop(settings, "device")
        layout.prop(settings, "detail")
        layout.prop(settings, "preview_scale")
        from . import engine

        for line in engine.LAST_REPORTS[-4:]:
            layout.label(text=line, icon="ERROR")


class OBJECT_PT_humangan_character(bpy.types.Panel):
    bl_label = "HumanGAN Character"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "data"

    @classmethod
    def poll(cls, context):
        return context.object is not None and context.object.type == "ARMATURE"

    def draw_header(self, context):
        self.layout.prop(context.object.humangan, "enabled", text="")

    def draw(self, context):
        from . import rig

        settings = context.object.humangan
        layout = self.layout
        layout.use_property_split = True
        layout.active = settings.enabled
        try:
            info = rig.read_rig(context.object)
            layout.label(text=f"SMPL rig ({info.naming} names)", icon="CHECKMARK")
        except rig.RigError as error:
            layout.label(text=str(error)[:90], icon="ERROR")
        layout.prop(settings, "seed")
        layout.prop(settings, "psi")
        layout.prop(settings, "body_file")
        layout.prop(settings, "betas")
        layout.operator(OBJECT_OT_humangan_apply_shape.bl_idname, icon="MOD_ARMATURE")
        layout.operator(OBJECT_OT_humangan_fit_shape.bl_idname, icon="ARMATURE_DATA")
        layout.operator(HUMANGAN_OT_import_motion.bl_idname, icon="IMPORT")
        layout.operator(HUMANGAN_OT_import_mocap.bl_idname, icon="ARMATURE_DATA")
        layout.operator(HUMANGAN_OT_retarget_armature.bl_idname, icon="CON_ARMATURE")


def _add_menu(self, context):
    self.layout.operator(OBJECT_OT_humangan_human_add.bl_idname, icon="OUTLINER_OB_ARMATURE")


def _import_menu(self, context):
    self.layout.operator(HUMANGAN_OT_import_mocap.bl_idname, text="Motion onto HumanGAN Character (.bvh)")


CLASSES = (HumanGanPreferences, SceneSettings, CharacterSettings, OBJECT_OT_humangan_human_add,
           OBJECT_OT_humangan_apply_shape, OBJECT_OT_humangan_fit_shape, HUMANGAN_OT_import_motion,
           HUMANGAN_OT_import_mocap, HUMANGAN_OT_retarget_armature, RENDER_PT_humangan, OBJECT_PT_humangan_character)


def _compatible_panels():
    """Blender's own panels (camera lens, output, dimensions, ...) that Eevee / Workbench show; ours too."""
    for panel in bpy.types.Panel.__subclasses__():
        engines = getattr(panel, "COMPAT_ENGINES", None)
        if isinstance(engines, set) and "BLENDER_RENDER" in engines:
            yield panel


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.humangan = PointerProperty(type=SceneSettings)
    bpy.types.Object.humangan = PointerProperty(type=CharacterSettings)
    bpy.types.VIEW3D_MT_add.append(_add_menu)
    bpy.types.TOPBAR_MT_file_import.append(_import_menu)
    for panel in _compatible_panels():
        panel.COMPAT_ENGINES.add(ENGINE_ID)
    prefs = bpy.context.preferences.addons.get(__package__)
    if prefs is not None and prefs.preferences is not None:
        message = apply_torch_path(prefs.preferences.torch_path)
        if message:
            print(message)


def unregister() -> None:
    for panel in _compatible_panels():
        panel.COMPAT_ENGINES.discard(ENGINE_ID)
    bpy.types.TOPBAR_MT_file_import.remove(_import_menu)
    bpy.types.VIEW3D_MT_add.remove(_add_menu)
    del bpy.types.Object.humangan
    del bpy.types.Scene.humangan
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

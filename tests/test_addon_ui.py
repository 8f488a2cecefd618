"""addon/ui.py (and addon/__init__.py): registration adds the engine, settings, operators, menu entry and Blender's
own camera/output panels for the engine, and removes them again; the preference's extra Python path puts a user's
torch build first (checked in a fresh process with a stand-in torch package)."""

import os
import subprocess
import sys
from pathlib import Path

import bpy
import pytest
from addon_fixtures import blank, registered

import addon
from addon import ui

__all__ = ["blank", "registered"]

ROOT = Path(__file__).resolve().parent.parent


def test_settings_defaults(blank):
    settings = blank.humangan
    assert (settings.model_file, settings.device, settings.preview_scale) == ("", "AUTO", 0.5)
    obj = bpy.data.objects.new("A", bpy.data.armatures.new("A"))
    character = obj.humangan
    assert (character.enabled, character.seed, character.body_file) == (False, 0, "")
    assert character.psi == pytest.approx(0.7) and len(character.betas) == ui.NUM_BETAS


def selectable(scene) -> bool:
    """Whether the render engine list offers HumanGAN."""
    try:
        scene.render.engine = "HUMANGAN"
    except TypeError:
        return False
    scene.render.engine = "BLENDER_WORKBENCH"  # (EEVEE is BLENDER_EEVEE_NEXT in 4.x)
    return True


def test_register_and_unregister_leave_blender_as_it_was(blank):
    assert "HUMANGAN" in bpy.types.DATA_PT_lens.COMPAT_ENGINES       # camera lens panel shown for our engine
    assert "HUMANGAN" in bpy.types.RENDER_PT_format.COMPAT_ENGINES
    assert selectable(blank) and hasattr(bpy.ops.object, "humangan_human_add")
    assert ui._add_menu in bpy.types.VIEW3D_MT_add._dyn_ui_initialize()
    addon.unregister()
    try:
        assert not hasattr(bpy.types.Scene, "humangan") and not selectable(blank)
        assert "HUMANGAN" not in bpy.types.DATA_PT_lens.COMPAT_ENGINES
        assert ui._add_menu not in bpy.types.VIEW3D_MT_add._dyn_ui_initialize()
    finally:
        addon.register()
    assert selectable(blank)


def test_apply_torch_path_explains_a_restart_when_torch_is_loaded(tmp_path):
    import torch  # loaded from the venv in this process

    message = ui.apply_torch_path(str(tmp_path))
    try:
        assert sys.path[0] == str(tmp_path.resolve())
        assert "restart Blender" in message and str(Path(torch.__file__).parent) in message
    finally:
        sys.path.remove(str(tmp_path.resolve()))
    assert "not a folder" in ui.apply_torch_path(str(tmp_path / "missing"))
    assert ui.apply_torch_path("") is None


PREFERENCE = r"""
import sys
import bpy
import addon_utils
sys.path.insert(0, sys.argv[1])
addon_utils.enable("addon", default_set=True)
assert "torch" not in sys.modules, "registering must not import torch"
bpy.context.preferences.addons["addon"].preferences.torch_path = sys.argv[2]
import torch
print("TORCH", torch.__version__, torch.__file__)
"""


def test_preference_path_wins_over_the_bundled_torch(tmp_path):
    fake = tmp_path / "cuda_torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "2.13.0+cu128"\n')
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    done = subprocess.run([sys.executable, "-c", PREFERENCE, str(ROOT), str(fake.parent)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"TORCH 2.13.0+cu128 {fake / '__init__.py'}" in done.stdout


def test_file_settings_take_blend_relative_paths_and_an_unsaved_file_says_so(blank, recwarn):
    from addon import frames, scene

    blank.humangan.model_file = "//models/tiny.safetensors"
    obj = bpy.data.objects.new("Human", bpy.data.armatures.new("Human"))
    obj.humangan.body_file = "//body.npz"
    assert not [w for w in recwarn if "relative" in str(w.message)]  # Blender's '"//" not supported' warning
    assert bpy.data.filepath == ""
    with pytest.raises(ValueError, match=r"Render Properties > HumanGAN > Model is //models/tiny.safetensors, "
                                         r"relative to the .blend file, but this file is not saved yet"):
        frames.model_path(blank)
    with pytest.raises(ValueError, match="Body File is //body.npz, relative to the .blend file"):
        scene.body_file_path(obj)

"""commands/build.py: `python -m addon build --no-wheels` makes a zip that bpy's blender_ext.py accepts, holding the
add-on and the vendored `neural`; a fresh Blender process (temporary user folder, repository not on sys.path)
installs it as an extension and renders a frame with the vendored code. The wheel path is checked with stand-in
wheel files (no 200 MB download in CI)."""

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from addon_fixtures import write_body, write_tiny_model

from commands import build

ROOT = Path(__file__).resolve().parent.parent

INSTALL_AND_RENDER = r"""
import json, math, sys
import bpy
zip_path, body, model, out = sys.argv[1:]
assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                 enable_on_install=True) == {"FINISHED"}
import neural.renderer
scene = bpy.context.scene
bpy.ops.object.humangan_human_add(body_file=body)
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
camera.location, camera.rotation_euler = (0, -3.2, 0.9), (math.radians(90), 0, 0)
scene.camera = camera
scene.render.engine = "HUMANGAN"
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
scene.humangan.model_file, scene.humangan.device = model, "CPU"
scene.render.filepath = out
assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
engine = sys.modules[type(scene.humangan).__module__.rsplit(".", 1)[0] + ".engine"]
print("RESULT " + json.dumps({"neural": neural.renderer.__file__, "addon": type(scene.humangan).__module__,
                              "reports": engine.LAST_REPORTS}))
"""


@pytest.mark.slow
def test_build_install_in_a_fresh_blender_and_render(tmp_path):
    done = subprocess.run([sys.executable, "-m", "addon", "build", "--out", str(tmp_path / "dist"), "--no-wheels"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    zip_path = Path(done.stdout.strip().splitlines()[-1])
    assert zip_path == tmp_path / "dist" / "humangan-0.1.0.zip"
    names = set(zipfile.ZipFile(zip_path).namelist())
    assert {"blender_manifest.toml", "__init__.py", "engine.py", "rig.py", "scene.py", "ui.py", "motion.py",
            "_vendor/neural/renderer.py", "_vendor/neural/body.py", "_vendor/neural/assets/free_body.npz",
            "_vendor/neural/amass.py", "_vendor/neural/rotations.py"} <= names
    assert {"signals.py", "rest.py", "_vendor/neural/cli.py", "_vendor/neural/files.py"} <= names
    dev_tools = {"build.py", "__main__.py", "bench.py", "demo.py", "demo_sheet.py", "_vendor/neural/__main__.py",
                 "_vendor/neural/bench.py", "_vendor/neural/bench_raster.py", "_vendor/neural/demo.py",
                 "_vendor/neural/render_cli.py", "_vendor/neural/official.py"}
    assert not dev_tools & names and not any("__pycache__" in n for n in names)
    assert not any("commands/" in n for n in names), "the command lines, benchmarks and demos (commands/) are not shipped"
    assert {"frames.py", "passes.py", "_vendor/neural/frame.py", "_vendor/neural/skeleton.py"} <= names
    manifest = tomllib.loads(zipfile.ZipFile(zip_path).read("blender_manifest.toml").decode())
    assert manifest["id"] == "humangan" and manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert "wheels" not in manifest and manifest["tagline"][-1].isalnum()

    body = write_body(tmp_path / "body.npz")
    model = write_tiny_model(tmp_path / "tiny.safetensors", body)
    user = tmp_path / "user"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
    env.pop("PYTHONPATH", None)
    run = subprocess.run([sys.executable, "-c", INSTALL_AND_RENDER, str(zip_path), str(body), str(model),
                          str(tmp_path / "frame.png")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result["addon"].startswith("bl_ext.user_default.humangan")
    assert Path(result["neural"]).is_relative_to(user) and "_vendor" in result["neural"]  # the vendored copy ran
    assert result["reports"] == []
    from PIL import Image
    import numpy as np

    image = np.asarray(Image.open(tmp_path / "frame.png"))
    assert image.shape == (48, 64, 4) and (image[..., 3] > 0).sum() > 100


def test_only_the_wheels_rendering_loads_are_shipped():
    downloaded = ["torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "setuptools-80.9.0-py3-none-any.whl",
                  "safetensors-0.8.0-cp310-abi3-manylinux_2_17_x86_64.whl", "sympy-1.14.0-py3-none-any.whl",
                  "typing_extensions-4.15.0-py3-none-any.whl", "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl",
                  "networkx-3.5-py3-none-any.whl", "jinja2-3.1.6-py3-none-any.whl"]
    assert [p.name for p in build.runtime_wheels(downloaded)] == [
        "safetensors-0.8.0-cp310-abi3-manylinux_2_17_x86_64.whl",
        "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "typing_extensions-4.15.0-py3-none-any.whl"]


def test_wheels_are_listed_for_linux_and_validated(tmp_path):
    wheels = []
    for name in ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "safetensors-0.8.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 "sympy-1.14.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"stand-in")
        wheels.append(tmp_path / name)
    source = build.stage(tmp_path / "humangan", wheels=wheels)
    manifest = tomllib.loads((source / "blender_manifest.toml").read_text())
    assert manifest["platforms"] == ["linux-x64"]
    assert manifest["wheels"] == [f"./wheels/{w.name}" for w in wheels]
    assert all((source / "wheels" / w.name).is_file() for w in wheels)
    done = subprocess.run([sys.executable, str(build.blender_ext_script()), "validate", str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_bad_manifest_is_refused_by_blender_ext(tmp_path, monkeypatch):
    bad = tmp_path / "blender_manifest.toml"
    text = build.MANIFEST.read_text()
    tagline = tomllib.loads(text)["tagline"]
    bad.write_text(text.replace(f'"{tagline}"', f'"{tagline}."'))
    monkeypatch.setattr(build, "MANIFEST", bad)
    with pytest.raises(RuntimeError, match="(?i)tagline"):
        build.build(tmp_path / "dist", wheels=False)

"""Build the installable extension zip (docs/overview.md §Packages): `python -m addon build --out dist/`.

The zip holds only what the extension runs: the manifest (repo root `blender_manifest.toml`), the add-on modules
(`addon/`, minus its `__main__.py` dispatcher), the `neural` package vendored as `_vendor/neural` (minus its
`__main__.py` and the one-off official-weights importer; the add-on puts `_vendor` first on sys.path); nothing of
`commands/`, where the tools live, and the run-time wheels for linux-x64 on the CPU: torch 2.13.0+cpu and safetensors, with the one
dependency `import torch` needs (typing_extensions). Blender installs listed wheels itself but resolves nothing;
torch's other declared dependencies (sympy, mpmath, networkx, jinja2, markupsafe, fsspec, filelock, setuptools)
serve torch.compile, the exporters and C++ extensions, which rendering never touches, and are left out — setuptools
in particular would drop `distutils-precedence.pth` and `_distutils_hack` into the site-packages that every
extension shares. numpy is Blender's own. `--no-wheels` leaves the wheels out (tests, users with their own torch).
The staged folder is validated and zipped by the `blender_ext.py` that ships in bpy.

Where the CPU wheel is not found by plain `pip download` (it is not on PyPI), pass
`--torch-index https://download.pytorch.org/whl/cpu`.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDON_DIR = ROOT / "addon"
NEURAL_DIR = ROOT / "neural"
MANIFEST = ROOT / "blender_manifest.toml"
DEV_ONLY = {"__main__.py"}  # the add-on's command line (`python -m addon`): Blender never runs it
NEURAL_DEV_ONLY = ("__main__.py", "official.py")  # the command line, and the one-off import of the official weights
RUNTIME_DEPENDENCIES = ("typing_extensions",)  # of torch's declared ones, what `import torch` + rendering load
WHEEL_REQUIREMENTS = ("torch==2.13.0+cpu", "safetensors>=0.4")
BLENDER_PLATFORM = "linux-x64"
PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")  # what it runs


def blender_ext_script() -> Path:
    """`blender_ext.py`, the extension CLI inside the bpy package (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("bpy is not installed; `pip install bpy==5.0.1` provides blender_ext.py")
    for base in spec.submodule_search_locations:
        found = sorted(Path(base).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    raise FileNotFoundError(f"no blender_ext.py under {list(spec.submodule_search_locations)}")


def _toml_value(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def dump_toml(data: dict) -> str:
    """A flat TOML writer for the manifest: top-level values, then one level of tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for table, values in data.items():
        if isinstance(values, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def download_wheels(folder: Path, torch_index: str | None = None) -> list[Path]:
    """pip-download the run-time wheels (cp311, manylinux x86_64) with all their dependencies into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(folder),
               "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
               *(arg for tag in PIP_PLATFORMS for arg in ("--platform", tag)), *WHEEL_REQUIREMENTS]
    if torch_index:
        command += ["--extra-index-url", torch_index]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip download of {list(WHEEL_REQUIREMENTS)} failed:\n{done.stderr[-2000:]}\n"
                           "The CPU build of torch is on https://download.pytorch.org/whl/cpu: pass "
                           "--torch-index https://download.pytorch.org/whl/cpu (or --no-wheels)")
    wheels = runtime_wheels(folder.glob("*.whl"))
    if not any(p.name.startswith("torch-") for p in wheels):
        raise RuntimeError(f"pip download left no torch wheel in {folder}")
    return wheels


def runtime_wheels(files) -> list[Path]:
    """The downloaded wheels the extension ships: torch, safetensors and RUNTIME_DEPENDENCIES (numpy is Blender's)."""
    wanted = ("torch-", "safetensors-") + tuple(f"{name}-" for name in RUNTIME_DEPENDENCIES)
    return sorted(Path(p) for p in files if Path(p).name.startswith(wanted))


def stage(target: Path, *, wheels: list[Path] | None) -> Path:
    """Lay out the extension source folder: manifest, add-on modules, _vendor/neural, wheels/."""
    target.mkdir(parents=True)
    for source in sorted(ADDON_DIR.glob("*.py")):
        if source.name not in DEV_ONLY:
            shutil.copy2(source, target / source.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", *NEURAL_DEV_ONLY)
    shutil.copytree(NEURAL_DIR, target / "_vendor" / "neural", ignore=ignore)
    manifest = tomllib.loads(MANIFEST.read_text())
    if wheels:
        (target / "wheels").mkdir()
        for wheel in wheels:
            shutil.copy2(wheel, target / "wheels" / wheel.name)
        manifest["platforms"] = [BLENDER_PLATFORM]  # the torch wheel is platform-specific
        manifest["wheels"] = [f"./wheels/{w.name}" for w in wheels]
    (target / "blender_manifest.toml").write_text(dump_toml(manifest))
    licence = ROOT / "LICENSE"
    if licence.is_file():
        shutil.copy2(licence, target / "LICENSE")
    return target


def build(out: Path, *, wheels: bool = True, torch_index: str | None = None,
          wheel_cache: Path | None = None) -> Path:
    """Build `out/humangan-<version>.zip`, validated by blender_ext.py; returns its path."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    script = blender_ext_script()
    with tempfile.TemporaryDirectory(prefix="humangan-build-") as tmp:
        wheel_files = None
        if wheels:
            wheel_files = download_wheels(wheel_cache or Path(tmp) / "download", torch_index)
        source = stage(Path(tmp) / "humangan", wheels=wheel_files)
        for command in (["validate", str(source)], ["build", "--source-dir", str(source), "--output-dir", str(out)]):
            done = subprocess.run([sys.executable, str(script), *command], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"blender_ext.py {command[0]} refused the extension:\n{done.stdout}{done.stderr}")
    manifest = tomllib.loads(MANIFEST.read_text())
    zip_path = out / f"{manifest['id']}-{manifest['version']}.zip"
    if not zip_path.is_file():
        raise RuntimeError(f"blender_ext.py reported success but {zip_path} is missing")
    return zip_path

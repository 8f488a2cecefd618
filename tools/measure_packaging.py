"""Install, disable and enable times of the extension zip, torch shipped as wheels (the build) or unpacked into the
extension's `_vendor/` (the alternative docs/blender.md §Install compares): `python tools/measure_packaging.py OUT`.

Each zip is installed in fresh Blender user folders (bpy module, one process per trial); prints one JSON line per
trial and writes OUT/packaging.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from commands import build  # noqa: E402

MEASURE = r"""
import bpy, json, sys, time
t = time.perf_counter()
assert bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default",
                                                 enable_on_install=True) == {"FINISHED"}
install = time.perf_counter() - t
module = "bl_ext.user_default.humangan"
t = time.perf_counter()
bpy.ops.preferences.addon_disable(module=module)
disable = time.perf_counter() - t
t = time.perf_counter()
bpy.ops.preferences.addon_enable(module=module)
enable = time.perf_counter() - t
print("RESULT " + json.dumps({"install": install, "disable": disable, "enable": enable}))
"""


def unpacked_zip(out: Path, wheels: list[Path]) -> Path:
    """The build's staged folder with the wheels' contents in _vendor/ and no wheels in the manifest."""
    with tempfile.TemporaryDirectory() as tmp:
        source = build.stage(Path(tmp) / "humangan", wheels=None)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                z.extractall(source / "_vendor")
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(build.blender_ext_script()), "build", "--source-dir", str(source),
                        "--output-dir", str(out)], check=True, capture_output=True)
    return next(out.glob("*.zip"))


def trial(zip_path: Path) -> dict:
    user = Path(tempfile.mkdtemp(prefix="humangan-user-"))
    try:
        env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
        env.pop("PYTHONPATH", None)
        done = subprocess.run([sys.executable, "-c", MEASURE, str(zip_path)], env=env, cwd=user,
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
        row["zip_mb"] = zip_path.stat().st_size / 1e6
        row["installed_mb"] = sum(p.stat().st_size for p in user.rglob("*") if p.is_file()) / 1e6
        return row
    finally:
        shutil.rmtree(user, ignore_errors=True)


def main(out: Path, trials: int = 2) -> None:
    wheels = build.download_wheels(out / "wheels")
    zips = {"wheels": build.build(out / "wheels_zip", wheels=True, wheel_cache=out / "wheels"),
            "unpacked": unpacked_zip(out / "unpacked_zip", wheels)}
    rows = {name: [] for name in zips}
    for name, zip_path in zips.items():
        for _ in range(trials):
            rows[name].append(trial(zip_path))
            print(name, json.dumps(rows[name][-1]), flush=True)
    (out / "packaging.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

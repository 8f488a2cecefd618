"""The HumanGAN Blender extension: a render engine that draws SMPL-rigged people with 3DHumanGAN.

Only registration lives here (docs/overview.md §Packages). Installed from the built zip, the `neural` package is
vendored in `_vendor/` next to this file and put first on sys.path; in a source checkout it comes from the environment.
Blender imports this package as `bl_ext.<repo>.humangan`; `python -m addon build|render` as `addon`.
"""

import sys
from pathlib import Path

_VENDOR = Path(__file__).resolve().parent / "_vendor"
if _VENDOR.is_dir() and str(_VENDOR) not in sys.path:
    sys.path.insert(0, str(_VENDOR))


def register() -> None:
    from . import ui  # first: its preferences may put a CUDA torch on sys.path before anything imports torch

    ui.register()
    from . import engine

    engine.register()
    import bpy

    if not bpy.app.background:  # in the UI: torch loads in a thread, not on the first click (preload.py)
        from . import preload

        preload.start()


def unregister() -> None:
    from . import engine, ui

    engine.unregister()
    ui.unregister()

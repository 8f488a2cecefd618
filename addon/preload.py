"""Load torch and the renderer off Blender's main thread once the add-on is enabled in the UI.

Importing torch takes seconds; done on the first *Add > HumanGAN Human* or the first viewport preview it would
freeze Blender for that long (and reading the free body's file another 0.2 s). A daemon thread does both right after
registration (after the preferences put a user's CUDA build first on sys.path), so by the time a user clicks, the
work is done; a click during the load waits only for the rest of it (Python's import lock). Headless processes
(background mode) skip it: they render at once anyway.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

_thread: threading.Thread | None = None
_LOCK = threading.Lock()
_BODIES: dict[tuple[str, float], object] = {}  # (path, mtime) → BodyModel: the free body, loaded in the thread


def load_body(path: Path):
    """BodyModel.load(path), cached by path and modification time (the free body's npz takes ~0.4 s to read)."""
    from neural.body import BodyModel

    key = (str(path), os.path.getmtime(path)) if Path(path).is_file() else None
    with _LOCK:
        if key is None or key not in _BODIES:
            body = BodyModel.load(path)  # raises, naming the file, when it is missing or bad
            if key is None:
                return body
            _BODIES.clear()
            _BODIES[key] = body
        return _BODIES[key]


def _load() -> None:
    try:
        import torch

        import neural.renderer  # noqa: F401  (torch, the generator)
        from neural.body import free_body_path

        with torch.no_grad():  # cached: view_update reads the rigs against this body's rest joints
            load_body(free_body_path())()  # the first forward pass warms torch's kernels up too
    except Exception:  # the first render imports again on the main thread and reports the real error
        pass


def start() -> threading.Thread | None:
    """Start the background import once (None when torch is already loaded and nothing needs doing)."""
    global _thread
    if _thread is None and "neural.renderer" not in sys.modules:
        _thread = threading.Thread(target=_load, name="humangan-preload", daemon=True)
        _thread.start()
    return _thread

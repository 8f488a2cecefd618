"""Ctrl+C (SIGINT) and SIGTERM in headless renders: stop within one frame, keep the frames already written.

In the Blender UI, Esc reaches the engine through `RenderEngine.test_break`. A headless process (the bpy module,
`python -m addon render`, a render-farm script) has no Esc, and Python's own Ctrl+C (a KeyboardInterrupt raised
inside `RenderEngine.render`) is swallowed by Blender, which renders on. So while a headless render runs the
engine watches both signals itself: a caught signal makes its `should_stop` true, the frame in progress is
cancelled before Blender writes it, and then

- under `python -m addon render` (which calls `watch(exit_process=False)` around its own frame loop), the command
  sees `caught()` after the frame and exits 130 (SIGINT) or 143 (SIGTERM) through neural.cli;
- in any other script, the engine itself ends the process with that exit code, as Blender's own `-b` renders stop
  on Ctrl+C: Blender writes each frame after `render` returns, so no file is half-written when it exits.

The handlers are installed only on the main thread of a background process and put back when the render ends.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from neural.cli import EXIT_SIGINT, EXIT_SIGTERM

EXIT_CODES = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}
_caught: int | None = None
_previous: dict[int, object] = {}
_exit_process = False


def _record(signum, frame) -> None:
    global _caught
    _caught = signum


def watch(*, exit_process: bool) -> bool:
    """Catch SIGINT and SIGTERM from now on (main thread only; False elsewhere). exit_process: the engine ends
    the process after the cancelled frame (a plain script); False: the caller checks `caught()` (the CLI)."""
    global _exit_process
    if threading.current_thread() is not threading.main_thread():
        return False
    if not _previous:
        for signum in EXIT_CODES:
            _previous[signum] = signal.signal(signum, _record)
        _exit_process = exit_process
    return True


def unwatch() -> None:
    """Put the previous handlers back (and forget a caught signal)."""
    global _caught
    for signum, handler in _previous.items():
        signal.signal(signum, handler)
    _previous.clear()
    _caught = None


def caught() -> int | None:
    """The signal number caught since `watch`, or None."""
    return _caught


def exit_code(signum: int) -> int:
    return EXIT_CODES.get(signum, 128 + signum)


def stop_process_if_caught(frame: int) -> None:
    """In a plain headless script, end the process once a signal was caught (called after a cancelled frame)."""
    if _caught is None or not _exit_process:
        return
    name = signal.Signals(_caught).name
    print(f"HumanGAN: {name} during frame {frame}: render stopped; frames already written are complete",
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(exit_code(_caught))


def render_ended(*_args) -> None:
    """bpy.app.handlers.render_complete / render_cancel: a render the engine itself watched is over."""
    if _previous and _exit_process:
        unwatch()

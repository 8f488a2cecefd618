"""The one error-handling block of every command line (`python -m neural`, `-m training`, `-m addon`).

Expected failures (a missing file, a bad value, a refused input) become one line naming the culprit and exit
code 1; Ctrl+C (SIGINT) exits 130 and SIGTERM 143, as shells and render-farm managers expect; anything else is a
real bug and keeps its traceback.
"""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

# What a user can cause and fix: each becomes "prog: error: message", exit 1.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError,
    ModuleNotFoundError, MemoryError)

EXIT_ERROR = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class Terminated(Exception):
    """SIGTERM arrived; raised in the main thread by `signals_as_exceptions` so `finally` blocks run."""


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated` (SIGINT already raises KeyboardInterrupt), so a command stops
    at the next Python instruction and its atomic writes leave every finished file intact."""
    def terminate(signum, frame):
        raise Terminated(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(prog: str, command: Callable[[], int | None]) -> int:
    """Run `command()` and turn its outcome into an exit code (its own return value, or 0 for None)."""
    try:
        with signals_as_exceptions():
            code = command()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (Ctrl+C); files already written are complete", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); files already written are complete", file=sys.stderr)
        return EXIT_SIGTERM
    except EXPECTED_ERRORS as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return 0 if code is None else int(code)

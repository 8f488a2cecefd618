"""The one error-handling block of every command line (`python -m neural`, `-m training`, `-m addon`).

Expected failures (a missing file, a bad value, a refused input) become one line naming the culprit and exit
code 1; Ctrl+C (SIGINT) exits 130 and SIGTERM 143, as shells and render-farm managers expect; anything else is a
real bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
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


MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed and int64 arrays hold it
PSI_RANGE = (-1.0, 2.0)  # 0: the average person, 1: no truncation; beyond about 2 the styles leave what G learnt


def seed_argument(text: str) -> int:
    """argparse type of an appearance seed: a whole number 0 .. 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not a whole number (0 .. {MAX_SEED})") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {value} is outside 0 .. {MAX_SEED} (2**63 - 1)")
    return value


def psi_argument(text: str) -> float:
    """argparse type of the truncation ψ: a finite number in PSI_RANGE."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"ψ {text!r} is not a number") from None
    low, high = PSI_RANGE
    if not low <= value <= high:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"ψ {value:g} is outside {low:g} .. {high:g} (0 = the average person, "
                                         "1 = no truncation; 0.7 is the usual choice)")
    return value


def check_finite_image(image, path) -> None:
    """Refuse to write an image (array) holding NaN or inf to `path`: it would save as garbage with rc 0."""
    import numpy as np

    if not np.isfinite(np.asarray(image)).all():
        raise ValueError(f"the image for {path} holds NaN or inf, so it was not written; the model or its inputs "
                         "(ψ, pose) produce non-finite values")


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


def run_command(prog: str, command: Callable[[], int | None], *,
                expected: tuple[type[BaseException], ...] = EXPECTED_ERRORS) -> int:
    """Run `command()` and turn its outcome into an exit code (its own return value, or 0 for None). `expected`:
    the errors a user causes and fixes, each reported in one line (a command may add its own)."""
    try:
        with signals_as_exceptions():
            code = command()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (Ctrl+C); files already written are complete", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); files already written are complete", file=sys.stderr)
        return EXIT_SIGTERM
    except expected as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return 0 if code is None else int(code)

"""Writing outputs safely: one atomic write for every file the project produces, and the guard that keeps a
command from writing over its own input.

An output appears whole or not at all: the content goes to a hidden temporary file in the same folder, is
flushed to disk (fsync), then renamed over the target (`os.replace` is atomic within one file system). A crash,
SIGKILL or Ctrl+C mid-write leaves the previous file (or none), never half of one.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without an exception, the file written there is
    fsynced and renamed over `path`. On an exception the temporary file is removed and `path` is untouched.

        with atomic_path(out) as tmp:
            image.save(tmp, format="PNG")   # give writers that guess the format from the suffix an explicit one
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written for {path} (the writer left no file at {tmp})")
        with open(tmp, "rb+") as f:  # on disk before the rename, so a crash leaves the old file or the new one
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` writes the content to the temporary path `tmp`; it then replaces `path` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        write(tmp)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def refuse_overwriting_input(output: str | Path, *inputs: str | Path) -> None:
    """Raise ValueError when `output` is one of `inputs`: the same path, or the same file reached through a link
    (symlink or hard link). Call it before anything is written, so a command never destroys what it reads."""
    output = Path(output)
    for source in inputs:
        source = Path(source)
        same = output.resolve() == source.resolve()
        if not same and output.exists() and source.exists():
            same = os.path.samefile(output, source)
        if same:
            raise ValueError(f"the output {output} is the input {source}: choose another output path, "
                             "the command would overwrite the file it reads")

"""neural.files and neural.cli: atomic writes, the output-is-input guard, exit codes of the shared CLI block."""
import os
import signal

import pytest

from neural.cli import EXIT_ERROR, EXIT_SIGINT, EXIT_SIGTERM, run_command
from neural.files import atomic_path, refuse_overwriting_input, write_bytes_atomic


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    out = tmp_path / "a.bin"
    write_bytes_atomic(out, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # no temporary left behind
    write_bytes_atomic(out, b"new")
    assert out.read_bytes() == b"new"


def test_output_that_is_the_input_is_refused_also_through_links(tmp_path):
    src = tmp_path / "x.pkl"
    src.write_bytes(b"data")
    (tmp_path / "link.pkl").symlink_to(src)
    os.link(src, tmp_path / "hard.pkl")
    for out in (src, tmp_path / "link.pkl", tmp_path / "hard.pkl", tmp_path / "sub" / ".." / "x.pkl"):
        with pytest.raises(ValueError, match="is the input"):
            refuse_overwriting_input(out, src)
    refuse_overwriting_input(tmp_path / "y.safetensors", src)


def test_run_command_exit_codes(capsys):
    assert run_command("prog", lambda: None) == 0
    assert run_command("prog", lambda: 3) == 3

    def missing():
        raise FileNotFoundError("model missing.safetensors not found")
    assert run_command("prog", missing) == EXIT_ERROR
    assert "prog: error: model missing.safetensors not found" in capsys.readouterr().err

    def ctrl_c():
        raise KeyboardInterrupt
    assert run_command("prog", ctrl_c) == EXIT_SIGINT

    def sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
    assert run_command("prog", sigterm) == EXIT_SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))

    def bug():
        raise KeyError("a real bug")
    with pytest.raises(KeyError):
        run_command("prog", bug)

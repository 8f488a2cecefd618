"""training/__main__.py: the three commands as a user types them, and their errors."""

import json

import numpy as np
import pytest

from tiny_body import write_box_body
from training.__main__ import main, parser


def test_synth_then_train_from_the_command_line(tmp_path, capsys):
    body = write_box_body(tmp_path / "box.npz")
    assert main(["synth", "--out", str(tmp_path / "d"), "--count", "4", "--size", "32x16", "--body", body]) == 0
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["count"] == 4
    assert main(["train", "--preset", "tiny", "--data", str(tmp_path / "d"), "--run", str(tmp_path / "r"),
                 "--steps", "2", "--threads", "1"]) == 0
    assert (tmp_path / "r" / "generator-0000002.safetensors").exists()
    # the dataset's body is found through its manifest; another body is refused by fingerprint
    other = write_box_body(tmp_path / "other.npz", scale=1.1)
    assert main(["train", "--preset", "tiny", "--data", str(tmp_path / "d"), "--run", str(tmp_path / "r2"),
                 "--body", other]) == 1
    assert "fingerprint" in capsys.readouterr().err


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["train", "--preset", "paper-1024", "--data", str(tmp_path), "--run", str(tmp_path / "r")]) == 1
    assert "valid presets" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--data", str(tmp_path), "--run", str(tmp_path / "r")]) == 1
    assert "not a dataset folder" in capsys.readouterr().err
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"junk")
    np.savez(tmp_path / "a.npz", pose=np.zeros(72), orig_cam=[1, 1, 0, 0])
    body = write_box_body(tmp_path / "box.npz")
    assert main(["prepare", "--images", str(tmp_path / "images"), "--fits", str(tmp_path), "--out",
                 str(tmp_path / "out"), "--body", body, "--strict", "--size", "32x16"]) == 1
    assert "a: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser().parse_args(["synth", "--out", "x", "--count", "1", "--size", "100x100"])
    assert "2:1" in capsys.readouterr().err


def test_evaluate_is_wired():
    args = parser().parse_args(["evaluate", "--data", "d", "--out", "o", "--model", "m.safetensors"])
    assert args.command == "evaluate" and str(args.model[0]) == "m.safetensors"


def test_run_dir_alias_for_torchrun():
    args = parser().parse_args(["train", "--preset", "tiny", "--data", "d", "--run-dir", "r"])
    assert str(args.run) == "r"

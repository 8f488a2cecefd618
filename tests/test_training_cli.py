"""training/__main__.py: the three commands as a user types them, and their errors."""

import json

import numpy as np
import pytest

from tiny_body import write_box_body
from training.__main__ import main, parser


def test_synth_then_train_from_the_command_line(tmp_path, capsys):
    body = write_box_body(tmp_path / "box.npz")
    assert main(["synth", "--out", str(tmp_path / "d"), "--count", "4", "--size", "16x32", "--body", body]) == 0
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
                 str(tmp_path / "out"), "--body", body, "--strict", "--size", "16x32"]) == 1
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


def test_sizes_are_width_by_height_and_the_old_order_is_refused(tmp_path, capsys):
    args = parser().parse_args(["synth", "--out", "x", "--count", "1", "--size", "64x128"])
    assert args.size == (64, 128)
    body = write_box_body(tmp_path / "box.npz")
    assert main(["synth", "--out", str(tmp_path / "d"), "--count", "1", "--size", "16x32", "--body", body]) == 0
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert (manifest["width"], manifest["height"]) == (16, 32)
    for command in (["synth", "--out", "x", "--count", "1"], ["prepare", "--images", "i", "--fits", "f", "--out", "o"]):
        with pytest.raises(SystemExit):
            parser().parse_args([*command, "--size", "256x128"])  # HEIGHTxWIDTH before: landscape now
        err = capsys.readouterr().err
        assert "256 wide and 128 high, landscape" in err and "you probably mean 128x256" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("option,value,culprit", [
    ("--count", "0", "argument --count: 0 must be at least 1"),
    ("--threads", "-1", "argument --threads: -1 must be at least 1"),
    ("--count", "abc", "argument --count: 'abc' is not a whole number"),
])
def test_bad_numbers_are_refused_by_option(tmp_path, capsys, option, value, culprit):
    argv = ["synth", "--out", str(tmp_path / "d"), "--count", "1", option, value]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and culprit in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_outputs_that_are_files_are_refused_and_leave_nothing(tmp_path, capsys):
    body = write_box_body(tmp_path / "box.npz")
    file = tmp_path / "taken"
    file.write_text("keep me")
    assert main(["synth", "--out", str(file), "--count", "1", "--size", "16x32", "--body", body]) == 1
    assert f"--out {file} is a file" in capsys.readouterr().err and file.read_text() == "keep me"
    assert main(["synth", "--out", str(tmp_path / "d"), "--count", "2", "--size", "16x32", "--body", body]) == 0
    assert main(["train", "--preset", "tiny", "--data", str(tmp_path / "d"), "--run", str(file)]) == 1
    err = capsys.readouterr().err
    assert f"--run {file} is a file" in err and "Traceback" not in err and file.read_text() == "keep me"


def test_sizes_and_batches_that_cannot_fit_are_refused_with_estimate_and_limit(tmp_path, capsys):
    body = write_box_body(tmp_path / "box.npz")
    assert main(["synth", "--out", str(tmp_path / "big"), "--count", "1", "--size", "20000x40000",
                 "--body", body]) == 1
    err = capsys.readouterr().err
    assert "synth --size 20000x40000 needs about" in err and "GiB of system memory available" in err
    assert not (tmp_path / "big").exists()
    assert main(["synth", "--out", str(tmp_path / "d"), "--count", "2", "--size", "16x32", "--body", body]) == 0
    assert main(["train", "--preset", "tiny", "--data", str(tmp_path / "d"), "--run", str(tmp_path / "r"),
                 "--batch", "10000000"]) == 1
    err = capsys.readouterr().err
    assert "training batch 10000000 at 16×32 needs about" in err and "pass --batch" in err
    assert not (tmp_path / "r").exists()

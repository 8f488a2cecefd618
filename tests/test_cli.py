"""neural/cli.py: the one error block's exit codes, and the value checks of seeds and ψ that every command shares;
`neural render` refuses bad ψ and seeds by option and never writes a non-finite image."""

import argparse
import math

import numpy as np
import pytest
from tiny_body import write_tiny_model

from neural.__main__ import main
from neural.cli import check_finite_image, psi_argument, run_command, seed_argument


@pytest.mark.parametrize("text,culprit", [
    ("abc", "seed 'abc' is not a whole number"), ("nan", "seed 'nan' is not a whole number"),
    (str(2**70), f"seed {2**70} is outside 0 .. {2**63 - 1}"), ("-1", "seed -1 is outside"),
])
def test_bad_seeds_are_named(text, culprit):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        seed_argument(text)
    assert culprit in str(error.value)


@pytest.mark.parametrize("text,culprit", [
    ("1e6", "ψ 1e+06 is outside -1 .. 2"), ("nan", "ψ nan is outside"), ("inf", "ψ inf is outside"),
    ("x", "ψ 'x' is not a number"),
])
def test_bad_psi_is_named(text, culprit):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        psi_argument(text)
    assert culprit in str(error.value)


def test_good_values_pass():
    assert seed_argument(str(2**63 - 1)) == 2**63 - 1 and psi_argument("0.7") == 0.7 and psi_argument("1") == 1


def test_render_refuses_bad_psi_and_seed_before_writing(tmp_path, capsys):
    for option, value in (("--psi", "1e6"), ("--psi", "nan"), ("--seed", str(2**70))):
        with pytest.raises(SystemExit) as exit_:
            main(["render", option, value, "--out", str(tmp_path / "o")])
        assert exit_.value.code == 2 and f"argument {option}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_non_finite_image_is_never_written(tmp_path, capsys, monkeypatch):
    from neural import renderer

    model, body = write_tiny_model(tmp_path)
    original = renderer.Renderer.render

    def poisoned(self, request):
        result = original(self, request)
        result.rgba[0, 0, 0] = math.nan
        return result

    monkeypatch.setattr(renderer.Renderer, "render", poisoned)
    out = tmp_path / "out"
    assert main(["render", "--model", str(model), "--body", str(body), "--device", "cpu", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "frame_00000_yaw+0.png holds NaN or inf, so it was not written" in err and "Traceback" not in err
    assert not list(out.glob("*.png"))
    with pytest.raises(ValueError, match="x.png holds NaN"):
        check_finite_image(np.full((2, 2), np.inf), "x.png")


def test_expected_errors_become_one_line_and_exit_1(capsys):
    def fail():
        raise MemoryError("needs 9 GiB")

    assert run_command("prog", fail) == 1 and capsys.readouterr().err == "prog: error: needs 9 GiB\n"


def test_render_refuses_a_size_that_cannot_fit_with_estimate_and_limit(tmp_path, capsys):
    model, body = write_tiny_model(tmp_path)
    out = tmp_path / "out"
    assert main(["render", "--model", str(model), "--body", str(body), "--device", "cpu", "--size", "20000x40000",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "--size 20000x40000 needs about" in err and "GiB of system memory available" in err
    assert "Traceback" not in err and not out.exists()

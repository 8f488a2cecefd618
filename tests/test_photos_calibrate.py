"""training/photos/calibrate.py: a few synthetic people of the tuning seed reproduce landmarks.py's OFFSETS_MM."""

import json

import numpy as np
import pytest

from photos_fixture import needs_mediapipe
from training.photos.calibrate import calibrate, main
from training.photos.landmarks import OFFSETS_MM
from training.synth import synth

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_few_people_reproduce_the_committed_offsets(tmp_path):
    needs_mediapipe()
    synth(out=tmp_path / "synth", count=6, height=256, width=128, seed=0, progress=False)
    lines = []
    offsets = calibrate(tmp_path / "synth", steps=600, log=lines.append)
    assert list(offsets) == list(OFFSETS_MM), "one offset per OFFSETS_MM key, in its order"
    far = {k: np.round(np.subtract(v, OFFSETS_MM[k]), 1) for k, v in offsets.items()
           if np.abs(np.subtract(v, OFFSETS_MM[k])).max() > 20}
    assert not far, f"6 images disagree with the 64 of OFFSETS_MM by over 20 mm: {far}"
    assert offsets["left_ear"][2] > 20, "BlazePose's ear sits forward of the head's widest point"
    assert offsets["nose"][0] == 0, "the mid-line moves in no side"
    before, after = (float(x) for x in lines[-1].split("median ")[1].removesuffix(" px").split(" → "))
    assert after < 0.85 * before, lines[-1]


def test_calibration_needs_exact_bodies(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "manifest.json").write_text(json.dumps({"format": "humangan-dataset", "version": 1,
                                                                 "source": "prepare"}))
    assert main(["--data", str(tmp_path / "mine")]) == 1
    assert "'prepare' dataset; calibration needs exact bodies" in capsys.readouterr().err

"""training/photos/measure.py: the synthetic measurement runs end to end and refuses a dataset without truth."""

import json
import shutil

import numpy as np
import pytest

from photos_fixture import needs_mediapipe
from training.photos.measure import main, procrustes
from training.synth import synth

pytestmark = pytest.mark.usefixtures("one_thread")


def test_procrustes_undoes_a_similarity():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(24, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = 1.7 * points @ q.T + (0.3, -2.0, 5.0)
    np.testing.assert_allclose(procrustes(moved, points), points, atol=1e-10)


@pytest.mark.slow
def test_measure_writes_the_table_and_refuses_data_without_truth(tmp_path, capsys):
    needs_mediapipe()
    synth(out=tmp_path / "synth", count=1, height=256, width=128, seed=3, progress=False)
    assert main(["--data", str(tmp_path / "synth"), "--out", str(tmp_path / "m")]) == 0
    result = json.loads((tmp_path / "m" / "measure.json").read_text())
    assert result["items"] == 1 and set(result["summary"]) == {"blazepose", "true_keypoints"}
    for kind in ("blazepose", "true_keypoints"):
        summary = result["summary"][kind]
        assert 0 < summary["mean"]["pa_mpjpe_mm"] < 200 and 0.5 < summary["mean"]["silhouette_iou"] <= 1
        assert 0 < summary["part_miou"] <= 1
    assert "| true keypoints |" in (tmp_path / "m" / "measure.md").read_text()
    shutil.copytree(tmp_path / "synth", tmp_path / "mine")
    manifest = json.loads((tmp_path / "mine" / "manifest.json").read_text())
    (tmp_path / "mine" / "manifest.json").write_text(json.dumps({**manifest, "source": "prepare"}))
    assert main(["--data", str(tmp_path / "mine"), "--out", str(tmp_path / "m2")]) == 1
    assert "'prepare' dataset; the measurement needs exact truth" in capsys.readouterr().err

"""training/validate.py through `train`: a dataset's bad items are found before the first step, each named with
its reason; the run refuses them, or with skip_bad trains on the rest; a file damaged later names its item."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiny_body import write_box_body
from training.__main__ import main
from training.data import PhotoDataset
from training.synth import synth

pytestmark = pytest.mark.usefixtures("one_thread")


def _damage(root: Path) -> dict[str, str]:
    """Damage five of eight items in five ways; returns name → a fragment its reason must contain."""
    image = root / "images" / "000001.png"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    Image.open(root / "images" / "000002.png").convert("L").save(root / "images" / "000002.png")
    parts = np.asarray(Image.open(root / "parts" / "000003.png")).copy()
    parts[0, 0] = 200
    Image.fromarray(parts).save(root / "parts" / "000003.png")
    (root / "masks" / "000004.png").unlink()
    with np.load(root / "fits.npz") as f:
        fits = {k: f[k] for k in f.files}
    fits["pose"][5, 3, 1] = np.nan
    np.savez(root / "fits.npz", **fits)
    return {"000001": "images/000001.png is damaged", "000002": "images/000002.png is L; expected RGB or RGBA",
            "000003": "parts/000003.png holds part labels 1..200", "000004": "masks/000004.png is missing",
            "000005": "fit's pose hold NaN or inf"}


@pytest.fixture()
def damaged(tmp_path):
    body = write_box_body(tmp_path / "box_body.npz")
    synth(out=tmp_path / "data", count=8, height=32, width=16, seed=0, body_path=Path(body), progress=False)
    return tmp_path / "data", _damage(tmp_path / "data")


def test_bad_items_are_listed_by_name_and_the_run_refused(damaged, tmp_path, capsys):
    data, culprits = damaged
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--data", str(data), "--run", str(run), "--steps", "2"]) == 1
    err = capsys.readouterr().err
    assert "5 of 8 items are bad" in err and "--skip-bad" in err and "Traceback" not in err
    for name, reason in culprits.items():
        assert f"  {name}: " in err and reason in err, (name, err)
    assert "000000" not in err and not run.exists()  # refused before anything was written


def test_skip_bad_trains_on_the_good_items(damaged, tmp_path, capsys):
    data, culprits = damaged
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--data", str(data), "--run", str(run), "--steps", "6",
                 "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "--skip-bad: training without 5 of 8 items" in err and all(f"  {n}: " in err for n in culprits)
    assert (run / "generator-0000006.safetensors").exists()
    kept = PhotoDataset(data, exclude=culprits)
    assert kept.names == ["000000", "000006", "000007"] and [kept[i]["index"].item() for i in range(3)] == [0, 1, 2]


def test_a_file_damaged_after_the_check_names_its_item(tmp_path):
    body = write_box_body(tmp_path / "box_body.npz")
    synth(out=tmp_path / "data", count=2, height=32, width=16, seed=0, body_path=Path(body), progress=False)
    dataset = PhotoDataset(tmp_path / "data")
    assert dataset.bad_items() == {}
    image = tmp_path / "data" / "images" / "000001.png"
    image.write_bytes(image.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"dataset item 000001 of .* is unreadable .*--skip-bad"):
        dataset[1]
    dataset[0]

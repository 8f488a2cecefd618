"""commands/raster_demo.py through `python -m neural demo`: files written, the body drawn in every pose, part colours present."""
import numpy as np
import pytest
from PIL import Image

from neural.__main__ import main
from commands.raster_demo import POSES, pose_tensor
from neural.raster import part_palette


@pytest.mark.slow
def test_demo_writes_contact_sheet_and_pose_images(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    sheet = np.asarray(Image.open(tmp_path / "demo" / "contact_sheet.png").convert("RGB"))
    assert sheet.shape == (2 * 512, 4 * 2 * 256, 3)
    poses = sorted((tmp_path / "demo").glob("pose_*.png"))
    assert len(poses) == len(POSES) == 8
    palette = {tuple(c) for c in part_palette()[2:].tolist()}
    tiles = []
    for path in poses:
        tile = np.asarray(Image.open(path).convert("RGB"))
        assert tile.shape == (512, 512, 3)
        grey, colour = tile[:, :256], tile[:, 256:]
        body = (grey < 250).any(-1)
        body[:20, :120] = False                                                      # the pose's name
        assert body.mean() > 0.05, f"{path.name}: too few body pixels"
        # the grey panel is grey, the part panel shows ≥ 12 of the 24 part colours over the same silhouette
        assert (np.ptp(grey[body].astype(int), axis=-1) == 0).all()
        colours, counts = np.unique(colour.reshape(-1, 3), axis=0, return_counts=True)
        parts = {tuple(c) for c, n in zip(colours.tolist(), counts) if n >= 20} & palette
        assert len(parts) >= 12, f"{path.name}: {len(parts)} part colours"
        assert abs(int((colour != 255).any(-1).sum()) - int(body.sum())) < 0.02 * body.sum() + 200
        tiles.append(body)
    # eight different silhouettes
    for a in range(8):
        for b in range(a + 1, 8):
            assert (tiles[a] != tiles[b]).mean() > 0.01, (poses[a].name, poses[b].name)


def test_pose_names_are_checked():
    with pytest.raises(ValueError, match="left_elbow"):
        pose_tensor({"left_elbw": (0, 0, 10)})

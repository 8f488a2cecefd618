"""commands/addon_bench.py: the overhead measurement renders real frames through Blender and splits each frame's time into
the generator's part and the engine's part (small frames and the box body here; the real table is
`python -m commands.addon_bench`)."""

import pytest
from addon_fixtures import blank, registered, write_body

from addon import engine
from commands import addon_bench as bench

__all__ = ["blank", "registered"]


@pytest.mark.slow
def test_measure_splits_frame_time_into_generator_and_engine(blank, tmp_path):
    body = write_body(tmp_path / "body.npz")
    rows = [(name, bench.measure(frames=2, width=128, height=64, body_file=str(body), png=png))
            for name, png in (("still", False), ("png", True))]
    for _, r in rows:
        assert r["total_ms"] > r["generator_ms"] > 0
        assert r["overhead_ms"] == pytest.approx(r["total_ms"] - r["generator_ms"])
    assert engine.LAST_REPORTS == []
    text = bench.table(rows, 128, 64)
    assert "128×64" in text and text.count("\n| ") == 3

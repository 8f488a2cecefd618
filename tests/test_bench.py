"""neural/bench.py: `python -m neural.bench` on the tiny preset with one repeat writes the table and the JSON a
reader checks (naive vs fast, their difference, FLOPs, memory, targets, the official anchors)."""

import json

import pytest
import torch
from tiny_body import write_box_body

from neural.bench import main, realistic_weights_
from neural.config import preset
from neural.generator import Generator


def test_bench_tiny_writes_table_and_json(tmp_path, capsys):
    body = write_box_body(tmp_path / "box_body.npz")
    out = tmp_path / "bench.json"
    assert main(["--presets", "tiny", "--repeats", "1", "--device", "cpu", "--body", body, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| tiny | cpu" in text and "official paper-512" in text and "rasteriser ≤ 100 ms" in text
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    for key in ("naive_ms", "fast_ms", "speedup", "max_abs_diff", "naive_gflop", "fast_gflop", "backbone_gflops",
                "backbone_fraction", "matmul_gflops", "renderer_ms", "rss_fast_mib", "rss_peak_mib"):
        assert row[key] > 0 or key == "max_abs_diff", key
    assert row["max_abs_diff"] < 1e-4                       # the naive and fast paths compute the same image
    assert row["naive_gflop"] > row["fast_gflop"]          # constant-style SPADEs run once per image, not per pixel
    assert 100 < row["rss_peak_mib"] < 4000 and row["speedup"] == pytest.approx(row["naive_ms"] / row["fast_ms"])
    assert data["raster"]["raster_ms"] > 0 and data["official"]["paper-512"]["ms"] == 48030.0


def test_realistic_weights_set_batch_norm_statistics_and_converge_spectral_norms():
    torch.manual_seed(0)
    generator = Generator(preset("tiny")).eval()
    realistic_weights_(generator)
    norm = generator.backbone.blocks[0].spade_0.norm
    assert norm.running_mean.abs().max() > 0.05 and (norm.running_var - 1).abs().max() > 0.05
    conv = generator.backbone.blocks[0].conv_0
    w = conv.weight_orig.reshape(conv.weight_orig.shape[0], -1)
    sigma = (conv.weight_u @ w @ conv.weight_v).item()
    assert sigma == pytest.approx(torch.linalg.matrix_norm(w.detach(), ord=2).item(), rel=1e-3)


def test_bench_measures_a_model_file_with_its_own_weights(tmp_path, capsys):
    """`--model FILE` (e.g. the imported official weights) is measured instead of the random-weight presets, and a
    body file the model was not made for is refused."""
    from neural import checkpoint
    from neural.body import BodyModel, free_body_path

    body = write_box_body(tmp_path / "box_body.npz")
    torch.manual_seed(0)
    generator = Generator(preset("tiny")).eval()
    realistic_weights_(generator)
    model = checkpoint.save(tmp_path / "tiny_model.safetensors", generator,
                            body_fingerprint=BodyModel.load(body).fingerprint)
    out = tmp_path / "bench.json"
    assert main(["--model", str(model), "--repeats", "1", "--device", "cpu", "--body", body, "--no-raster",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| tiny (tiny_model.safetensors) | cpu" in text and "official paper-512" in text
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "tiny_model.safetensors" and row["preset"] == "tiny" and row["max_abs_diff"] < 1e-4
    assert main(["--model", str(model), "--device", "cpu", "--body", str(free_body_path()), "--no-raster"]) == 1
    assert "pass --body with the model's body file" in capsys.readouterr().err

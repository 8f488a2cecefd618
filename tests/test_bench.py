"""commands/bench.py: `python -m commands.bench` on the tiny preset with one repeat writes the table and the JSON a
reader checks (naive vs fast, their difference, FLOPs, memory, targets, the official anchors)."""

import json
import re
from pathlib import Path

import pytest
import torch
from tiny_body import write_box_body

from commands.bench import main, realistic_weights_
from neural.config import preset
from neural.generator import Generator


@pytest.mark.slow
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
    assert data["raster"]["raster_ms"] > 0
    assert data["official"] == official_anchors_from_docs()


def official_anchors_from_docs() -> dict:
    """The official run's numbers read from the page that records them, independently of commands/bench.py's table:
    docs/official_conventions.md §Timings (the median rows at yaw 0), §FLOPs (whole frame), §Memory (peak, MiB)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "official_conventions.md").read_text(encoding="utf-8")
    anchors = {}
    for name, config in (("paper-512", "MAP3DBN512L"), ("paper-256", "MAP3DBN ")):
        (row,) = [line.split("|")[1:-1] for line in text.splitlines()
                  if line.startswith(f"| {config}") and "zero pose, yaw 0 | 3 |" in line]
        total, field, backbone = (round(float(row[i]) * 1000, 3) for i in (3, 4, 8))
        anchors[name] = {"ms": total, "field_ms": field, "backbone_ms": backbone}
    (flops,) = re.findall(r"\| whole frame \| \| ≈ (\d+) GFLOP \| ≈ (\d+) GFLOP \|", text)
    (memory,) = re.findall(r"Peak resident memory.*?: ([\d.]+) GiB \(MAP3DBN\), [\d.]+–([\d.]+) GiB", text, re.S)
    for name, gflop, gib in (("paper-256", flops[0], memory[0]), ("paper-512", flops[1], memory[1])):
        anchors[name]["gflop"] = float(gflop)
        anchors[name]["rss_mib"] = pytest.approx(float(gib) * 1024, abs=0.005 * 1024)
    return anchors


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


@pytest.mark.slow
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

"""neural/official.py: the importer of the released official weights. The official golden fixture's state dict,
written to a .pth and imported by the real importer (weights_only load, key mapping, truncation means, checkpoint),
reproduces the official image, style map and opacity from our own body, camera and ray code; the official key
manifests of both released configs map exactly onto our presets; bad files are refused with the key or file named."""

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_body import write_box_body

import official_fixture
from neural import checkpoint, official
from neural.__main__ import main
from neural.body import BodyModel
from neural.config import PRESETS
from neural.generator import Generator
from neural.skeleton import PARENTS

SOURCE_NAME = "00000006_generator_ema_state_dict.pth"  # the released file's naming: step in the first 8 digits


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fx():
    return official_fixture.load()


def _official_state(fx) -> OrderedDict:
    return OrderedDict((k[3:], torch.from_numpy(np.asarray(v))) for k, v in fx.items() if k.startswith("sd/"))


def _write_pth(path: Path, state) -> Path:
    torch.save(state, path)
    return path


def _smpl_like_body(fx, path: Path) -> Path:
    """A 6890-vertex SMPL-format body file from the fixture's stand-in SMPL: its mean template and skinning
    weights (the arrays the generator reads); no shape or pose blend shapes."""
    V = fx["in/tpose_vertices"].shape[1]
    regressor = np.zeros((24, V))
    regressor[np.arange(24), np.arange(24) * 100] = 1.0
    np.savez_compressed(
        path, v_template=fx["in/tpose_vertices"][0] - np.array([0.0, 0.35, 0.0], dtype=np.float32),
        f=np.array([[0, 1, 2]]), weights=fx["in/lbs_weights"][0], J_regressor=regressor,
        kintree_table=np.array([[-1, *PARENTS[1:]], range(24)]), shapedirs=np.zeros((V, 3, 10)),
        posedirs=np.zeros((V, 3, 207), dtype=np.float32))
    return path


@pytest.fixture(scope="module")
def imported(fx, tmp_path_factory):
    """The fixture imported once: truncation seed 123 is the official draw the fixture's means came from."""
    folder = tmp_path_factory.mktemp("official")
    source = _write_pth(folder / SOURCE_NAME, _official_state(fx))
    body = _smpl_like_body(fx, folder / "smpl.npz")
    destination = folder / "model.safetensors"
    summary = official.import_official(source, destination, body=body, config=official_fixture.CONFIG,
                                       truncation_seed=123)
    return source, body, destination, summary


def test_imported_fixture_reproduces_the_official_forward_pass(fx, imported):
    source, body_path, destination, _ = imported
    generator, meta = checkpoint.load(destination, body_fingerprint=BodyModel.load(body_path).fingerprint)
    # The truncation means, computed at import from 10,000 latents of seed 123, are the official ones.
    for ours, theirs in (("appearance.w_avg", "in/avg_w"), ("pose_mapping.freq_avg", "in/avg_freq"),
                         ("pose_mapping.phase_avg", "in/avg_phase")):
        assert (generator.state_dict()[ours] - torch.from_numpy(fx[theirs]).reshape(-1)).abs().max() < 1e-6
    body, camera = official_fixture.posed_body_and_camera(fx, torch.tensor([[0.2, 0.9, -0.1], [-1.0, 0.0, 3.0]]))
    jitter = torch.from_numpy(fx["in/ray_jitter_u"])[..., 0]
    with torch.no_grad():
        out = generator(torch.from_numpy(fx["in/z"]), body, camera, psi=0.7, jitter=jitter, last_back=True)
        default = generator(torch.from_numpy(fx["in/z"]), body, camera, psi=0.7)
    assert (out.image - torch.from_numpy(fx["out/rgbs"])).abs().max() < 1e-4
    assert (out.style_map - torch.from_numpy(fx["out/feature_map_lowres"])).abs().max() < 1e-4
    assert (out.opacity.reshape(2, -1) - torch.from_numpy(fx["out/opacity"])).abs().max() < 1e-4
    # Without the official jitter and fill the model makes its deterministic choices: a different sampling.
    assert (default.image - out.image).abs().max() > 1e-3
    assert meta.step == 6 and meta.config == official_fixture.CONFIG
    assert meta.extra["source_file"] == SOURCE_NAME and meta.extra["truncation_seed"] == 123
    assert meta.extra["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert meta.extra["body_file"] == "smpl.npz" and meta.body_fingerprint.startswith("V6890-")


def test_summary_lists_what_was_dropped_and_computed(imported):
    *_, summary = imported
    text = summary.text()
    for group in ("latent_pool", "synthesis_style_input", "implicit0", "to_rgbs m3d_0..2"):
        assert group in text
    assert {g.name: (g.tensors, g.numel) for g in summary.dropped} == {
        "latent_pool": (1, 4 * 32), "synthesis_style_input": (6, 32 + 32 + 32 * 64 + 32 + 32 * 32 + 32),
        "implicit0": (2, 33), "to_rgbs m3d_0..2": (6, 3 * 99)}
    assert summary.kept_tensors == 343 - 15 and "seed 123" in text and "step 6" in text


@pytest.mark.parametrize(("name", "preset", "pool"), [("MAP3DBN512L", "paper-512", 219047 * 420),
                                                     ("MAP3DBN", "paper-256", 10 * 384)])
def test_official_manifests_map_exactly_onto_our_presets(name, preset, pool):
    """Every key of the released configs' state dicts (docs/official_conventions.md §State-dict layout) has its place
    and shape in ours."""
    shapes = official_fixture.manifest(name)
    assert official.infer_config(shapes) == (name, preset)
    state = {k: torch.empty(s, device="meta", dtype=torch.int64 if k.endswith("num_batches_tracked")
                            else torch.float32) for k, s in shapes.items()}
    ours, dropped = official.map_state_dict(state, Generator(PRESETS[preset]))
    assert len(ours) == 328 and dict((g.name, g.numel) for g in dropped)["latent_pool"] == pool
    width = PRESETS[preset].feature_dim
    assert ours["backbone.blocks.3.spade_1.norm.running_var"].shape == (width,)


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_bad_state_dicts_name_the_key(fx, tmp_path, change):
    state = _official_state(fx)
    key = "synthesis_network.network.m3d_4.spade_0.mlp_gamma.weight"
    if change == "missing":
        del state[key]
    elif change == "unexpected":
        key = "synthesis_network.network.m3d_9.conv_0.bias"
        state[key] = torch.zeros(32)
    else:
        state[key] = torch.zeros(32, 64, 1, 1)
    source = _write_pth(tmp_path / "bad.pth", state)
    with pytest.raises(official.OfficialImportError) as error:
        official.import_official(source, tmp_path / "out.safetensors", body=_smpl_like_body(fx, tmp_path / "b.npz"),
                                 config=official_fixture.CONFIG)
    expected = {"missing": f"missing tensor {key}", "unexpected": f"unexpected tensor {key}",
                "shape": f"tensor {key} has shape (32, 64, 1, 1); the width-32 generator expects (32, 128, 1, 1)"}
    assert "bad.pth" in str(error.value) and expected[change] in str(error.value)
    assert not (tmp_path / "out.safetensors").exists()


def _touch(path):  # what a malicious pickle would run on a full load
    Path(path).write_text("unpickled")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return _touch, (self.marker,)


def test_a_pickle_needing_full_unpickling_is_refused_unrun(fx, tmp_path):
    marker = tmp_path / "marker"
    source = _write_pth(tmp_path / "whole_module_generator.pth", {"generator": _Payload(str(marker))})
    with pytest.raises(official.OfficialImportError, match="whole_module_generator.pth was refused: loading it "
                                                           "would run code .*_touch") as refused:
        official.import_official(source, tmp_path / "out.safetensors", body=_smpl_like_body(fx, tmp_path / "b.npz"))
    assert not marker.exists() and "weights_only" not in str(refused.value)
    not_torch = tmp_path / "notes.pth"
    not_torch.write_text("not a checkpoint")
    with pytest.raises(official.OfficialImportError, match="notes.pth is not a readable PyTorch file"):
        official.read_state_dict(not_torch)
    optimiser = _write_pth(tmp_path / "00000006_optimizer_G.pth", {"state": {}, "param_groups": []})
    with pytest.raises(official.OfficialImportError, match="optimizer_G.pth is an optimiser state"):
        official.read_state_dict(optimiser)


def test_optimiser_state_and_counters_beside_the_weights_are_dropped(fx, tmp_path):
    state = _official_state(fx)
    state["optimizer_G"] = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4}]}
    state["step"] = 1234
    source = _write_pth(tmp_path / "wrapped.pth", state)
    body = _smpl_like_body(fx, tmp_path / "b.npz")
    summary = official.import_official(source, tmp_path / "out.safetensors", body=body,
                                       config=official_fixture.CONFIG)
    names = [g.name for g in summary.dropped]
    assert "optimiser state" in names and "training counters" in names and "optimiser state" in summary.text()
    assert summary.step == 1234 and checkpoint.read_metadata(tmp_path / "out.safetensors").step == 1234


def test_the_body_must_be_an_smpl_file(fx, tmp_path, capsys):
    source = _write_pth(tmp_path / SOURCE_NAME, _official_state(fx))
    assert main(["import-official", str(source), str(tmp_path / "out.safetensors")]) == 1
    assert "python -m neural body convert SMPL_NEUTRAL.pkl smpl.npz" in capsys.readouterr().err
    box = write_box_body(tmp_path / "box.npz")
    with pytest.raises(official.OfficialImportError, match="box.npz has 216 vertices.*SMPL.*6890.*neural body convert"):
        official.import_official(source, tmp_path / "out.safetensors", body=box, config=official_fixture.CONFIG)
    # The reduced fixture is neither released config: the command names both widths.
    assert main(["import-official", str(source), str(tmp_path / "out.safetensors"), "--body",
                 str(_smpl_like_body(fx, tmp_path / "smpl.npz"))]) == 1
    assert "width 32" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


def test_command_imports_a_map3dbn_state_dict_by_its_shapes(fx, tmp_path, capsys):
    """`python -m neural import-official` on a full-size MAP3DBN (256×128) state dict with random weights."""
    g = torch.Generator().manual_seed(0)
    state = OrderedDict((k, torch.tensor(6) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g))
                        for k, s in official_fixture.manifest("MAP3DBN").items())
    source = _write_pth(tmp_path / "00001000_generator_ema_state_dict.pth", state)
    body = _smpl_like_body(fx, tmp_path / "smpl.npz")
    destination = tmp_path / "paper256.safetensors"
    assert main(["import-official", str(source), str(destination), "--body", str(body)]) == 0
    text = capsys.readouterr().out
    assert "as paper-256 (official MAP3DBN)" in text and "step 1,000" in text and "latent_pool" in text
    meta = checkpoint.read_metadata(destination)
    assert meta.config == PRESETS["paper-256"] and meta.step == 1000
    assert meta.extra["official_config"] == "MAP3DBN" and meta.extra["truncation_seed"] == 0
    assert json.loads(json.dumps(meta.extra))["dropped"]["latent_pool"] == 3840


class _SystemPayload:  # the most common malicious payload; torch 2.13 words its refusal "module posix is blocked"
    def __reduce__(self):
        import os

        return os.system, ("echo owned",)


def test_an_os_system_payload_is_refused_as_code_without_torchs_advice(fx, tmp_path, capsys):
    source = _write_pth(tmp_path / "evil.pth", {"w": _SystemPayload()})
    body = _smpl_like_body(fx, tmp_path / "b.npz")
    assert main(["import-official", str(source), str(tmp_path / "out.safetensors"), "--body", str(body)]) == 1
    err = capsys.readouterr().err
    assert "evil.pth was refused: loading it would run code" in err and "system" in err
    assert "weights_only" not in err and "re-download" not in err and "Traceback" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_the_output_may_not_be_the_input(fx, tmp_path, capsys):
    source = _write_pth(tmp_path / SOURCE_NAME, _official_state(fx))
    before = source.read_bytes()
    body = _smpl_like_body(fx, tmp_path / "b.npz")
    link = tmp_path / "link.pth"
    link.symlink_to(source)
    for destination in (source, link):
        assert main(["import-official", str(source), str(destination), "--body", str(body)]) == 1
        assert f"the output {destination} is the input {source}" in capsys.readouterr().err
    assert source.read_bytes() == before

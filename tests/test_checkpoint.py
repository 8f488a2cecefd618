"""Checkpoints (docs/conventions.md §Checkpoints): .safetensors round trip with identical outputs, metadata, and every
bad file refused with a message that names the file and the problem."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from neural import checkpoint
from neural.body import BodyModel
from neural.camera import Camera, crop_camera
from neural.config import PRESETS
from neural.generator import Generator
from tiny_body import box_body_arrays

TINY = PRESETS["tiny"]
FINGERPRINT = "V216-0123456789ab"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene():
    body = BodyModel(arrays=box_body_arrays())(pose=torch.zeros(1, 24, 3))
    camera = Camera.orbit(torch.zeros(3), 4.0, 20.0, fov_y_deg=30, width=64, height=64)
    crop, _ = crop_camera(camera, body.vertices, width=TINY.width, height=TINY.height)
    return body, crop


@pytest.fixture(scope="module")
def trained(scene):
    """A tiny generator with non-trivial BN statistics (a few training-mode passes), in eval mode."""
    body, crop = scene
    torch.manual_seed(0)
    g = Generator(TINY).train()
    with torch.no_grad():
        for i in range(2):
            g(g.sample_z(i, 1), body, crop, rng=torch.Generator().manual_seed(i))
    return g.eval()


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    checkpoint.save(path, trained, body_fingerprint=FINGERPRINT, step=1234, extra={"body_file": "box.npz"})
    return path


def _rewrite(src, dst, *, tensors=None, metadata=None):
    """Copy a checkpoint with changed tensors/metadata (content hash recomputed, so only the change is wrong)."""
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    data = load_file(str(src)) if tensors is None else tensors(load_file(str(src)))
    meta.update(metadata or {})
    meta["content_sha256"] = checkpoint.content_hash(data)
    save_file(data, str(dst), metadata=meta)
    return dst


def test_round_trip_gives_identical_outputs(saved, trained, scene):
    body, crop = scene
    loaded, meta = checkpoint.load(saved, body_fingerprint=FINGERPRINT)
    assert not loaded.training
    assert meta.config == TINY and meta.step == 1234 and meta.body_fingerprint == FINGERPRINT
    assert meta.format == "humangan-checkpoint/1" and meta.extra == {"body_file": "box.npz"}
    assert checkpoint.read_metadata(saved) == meta
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    z = trained.sample_z(9, 1)
    with torch.no_grad():
        assert torch.equal(loaded(z, body, crop, psi=0.7).image, trained(z, body, crop, psi=0.7).image)
    # save refreshed the truncation means from the saved weights (fixed seed, 10,000 latents)
    assert trained.appearance.w_avg.abs().sum() > 0
    fresh = Generator(TINY)
    fresh.load_state_dict(loaded.state_dict())
    fresh.compute_truncation_means()
    assert torch.equal(fresh.appearance.w_avg, loaded.appearance.w_avg)


def test_save_is_atomic_and_overwrites(trained, tmp_path):
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, trained, body_fingerprint=FINGERPRINT, step=1)
    checkpoint.save(path, trained, body_fingerprint=FINGERPRINT, step=2, truncation="keep")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    assert checkpoint.read_metadata(path).step == 2


def test_save_keeps_imported_means_when_asked(trained, tmp_path):
    g = Generator(TINY)
    g.load_state_dict(trained.state_dict())
    g.appearance.w_avg.fill_(0.25)
    path = checkpoint.save(tmp_path / "m.safetensors", g, body_fingerprint=FINGERPRINT, truncation="keep")
    assert torch.all(load_file(str(path))["appearance.w_avg"] == 0.25)


def test_other_body_is_refused(saved):
    with pytest.raises(ValueError) as error:
        checkpoint.load(saved, body_fingerprint="V6890-fedcba987654")
    message = str(error.value)
    assert str(saved) in message and FINGERPRINT in message and "V6890-fedcba987654" in message
    assert "--body" in message and "box.npz" in message


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.safetensors")


def test_not_a_safetensors_file(tmp_path, trained):
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, this is not a model\n")
    with pytest.raises(ValueError, match=f"{text} is not a safetensors checkpoint"):
        checkpoint.load(text)
    pickle = tmp_path / "model.pth"  # a torch pickle is refused without being unpickled
    torch.save(trained.state_dict(), pickle)
    with pytest.raises(ValueError, match="is not a safetensors checkpoint"):
        checkpoint.load(pickle)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="only 2 bytes"):
        checkpoint.load(tiny)


def test_truncated_file(saved, tmp_path):
    data = saved.read_bytes()
    for keep in (len(data) - 100, 40):
        cut = tmp_path / f"cut{keep}.safetensors"
        cut.write_bytes(data[:keep])
        with pytest.raises(ValueError, match=f"checkpoint {cut} is truncated"):
            checkpoint.load(cut)


def test_corrupt_tensor_bytes(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"checkpoint {bad} is corrupt"):
        checkpoint.load(bad)


def test_other_format_version(saved, tmp_path):
    other = _rewrite(saved, tmp_path / "v2.safetensors", metadata={"format": "humangan-checkpoint/2"})
    with pytest.raises(ValueError, match="format 'humangan-checkpoint/2'; this version reads 'humangan-checkpoint/1'"):
        checkpoint.load(other)
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="no format field"):
        checkpoint.load(plain)


def test_invalid_config_metadata(saved, tmp_path):
    bad = _rewrite(saved, tmp_path / "cfg.safetensors", metadata={"config": json.dumps({"height": 32, "colour": 1})})
    with pytest.raises(ValueError, match=r"invalid metadata .*unknown generator config keys \['colour'\]"):
        checkpoint.load(bad)


def test_missing_and_unexpected_tensors(saved, tmp_path):
    def drop(t):
        del t["backbone.blocks.0.conv_0.weight_u"]
        return t

    def add(t):
        t["latent_pool.latents"] = torch.zeros(3, 16)
        return t

    missing = _rewrite(saved, tmp_path / "missing.safetensors", tensors=drop)
    with pytest.raises(ValueError, match=r"missing tensors \[backbone\.blocks\.0\.conv_0\.weight_u\]"):
        checkpoint.load(missing)
    extra = _rewrite(saved, tmp_path / "extra.safetensors", tensors=add)
    with pytest.raises(ValueError, match=r"unexpected tensors \[latent_pool\.latents\]"):
        checkpoint.load(extra)


def test_shape_mismatch(saved, tmp_path):
    wider = TINY.replace(spade_hidden=12).to_dict()
    bad = _rewrite(saved, tmp_path / "shape.safetensors", metadata={"config": json.dumps(wider)})
    with pytest.raises(ValueError, match=r"tensor backbone\.blocks\.0\.spade_0\.beta\.weight has shape "
                                         r"\(16, 8, 1, 1\), the generator built from the file's config expects "
                                         r"\(16, 12, 1, 1\) \(and 71 more"):
        checkpoint.load(bad)


def test_a_huge_config_is_refused_before_anything_is_allocated(saved, tmp_path):
    import resource

    huge = TINY.replace(hidden_dim=200_000).to_dict()  # would need ~160 GB of pose-field weights
    bad = _rewrite(saved, tmp_path / "huge.safetensors", metadata={"config": json.dumps(huge)})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the peak so far
    with pytest.raises(ValueError, match=rf"checkpoint {bad} does not fit its own config: .*tensor pose_mapping\.\S+ "
                                         r"has shape \(3, 16\), .*expects \(3, 200000\)"):
        checkpoint.load(bad)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


@pytest.mark.parametrize("field,value,culprit", [
    ("hidden_dim", "32", r"hidden_dim = '32': expected int, got str"),
    ("pose_mode", "bogus", r"pose_mode = 'bogus': expected one of \['mixed', 'isolated'\]"),
    ("backbone", "upsamplin", r"backbone = 'upsamplin': expected one of \['pixelwise', 'upsampling'\]"),
])
def test_config_fields_of_the_wrong_type_or_choice_are_refused(saved, tmp_path, field, value, culprit):
    bad = _rewrite(saved, tmp_path / "typed.safetensors",
                   metadata={"config": json.dumps({**TINY.to_dict(), field: value})})
    with pytest.raises(ValueError, match=rf"checkpoint {bad} has invalid metadata .*{culprit}"):
        checkpoint.load(bad)


def test_deferred_truncation_means_are_computed_at_load_not_at_save(trained, tmp_path):
    g = Generator(TINY)
    g.load_state_dict(trained.state_dict())
    g.appearance.w_avg.fill_(0.25)  # stale: not the mean of these weights
    calls = []
    original = Generator.compute_truncation_means
    Generator.compute_truncation_means = lambda self, **kw: (calls.append(1), original(self, **kw))[1]
    try:
        path = checkpoint.save(tmp_path / "m.safetensors", g, body_fingerprint=FINGERPRINT, truncation="defer")
        assert calls == [] and torch.all(load_file(str(path))["appearance.w_avg"] == 0.25)
        loaded, _ = checkpoint.load(path)
    finally:
        Generator.compute_truncation_means = original
    assert calls == [1]
    fresh = Generator(TINY)
    fresh.load_state_dict(trained.state_dict())
    fresh.compute_truncation_means()
    assert torch.equal(loaded.appearance.w_avg, fresh.appearance.w_avg)
    with pytest.raises(ValueError, match="truncation must be"):
        checkpoint.save(tmp_path / "x.safetensors", g, body_fingerprint=FINGERPRINT, truncation="later")

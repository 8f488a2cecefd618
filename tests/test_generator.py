"""The assembled generator (docs/architecture.md): end to end against the official golden fixture, the official weight
layout, fast == naive, exact pixel subsets, determinism, truncation, frame invariance, ablations, training gradients."""

import math

import pytest
import torch

import official_fixture
from neural.body import BodyModel
from neural.camera import Camera, crop_camera
from neural.config import PRESETS, preset
from neural.generator import Generator
from tiny_body import box_body_arrays

TINY = PRESETS["tiny"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def body_model():
    return BodyModel(arrays=box_body_arrays())


def _scene(body_model, yaw_root=(0.0, 0.8), transl=((0.0, 0.1, 0.0), (0.3, 0.0, -0.2))):
    """Two posed box bodies (the second turned and with a raised arm) and scene cameras looking at them."""
    pose = torch.zeros(2, 24, 3)
    pose[:, 0, 1] = torch.tensor(yaw_root)
    pose[1, 16] = torch.tensor([0.0, 0.0, 0.9])
    body = body_model(pose=pose, transl=torch.tensor(transl))
    scene = Camera.orbit(torch.tensor(transl), 4.0, torch.tensor([0.0, 30.0]), fov_y_deg=30, width=64, height=64)
    return body, scene


def _calibrated(config, body, camera, seed=0):
    """A generator in eval mode with truncation means, non-trivial BN statistics and affines."""
    torch.manual_seed(seed)
    g = Generator(config)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
        g.train()
        for i in range(3):
            g(g.sample_z(100 + i, 2), body, camera, rng=torch.Generator().manual_seed(i))
    g.compute_truncation_means(n=500)
    return g.eval()


@pytest.fixture(scope="module")
def setup(body_model):
    body, scene = _scene(body_model)
    crop, _ = crop_camera(scene, body.vertices, width=TINY.width, height=TINY.height)
    return body, crop, _calibrated(TINY, body, crop)


def test_matches_official_fixture_end_to_end():
    fx = official_fixture.load()
    g = Generator(official_fixture.CONFIG)
    g.load_state_dict(official_fixture.generator_state(fx))
    g.eval()
    # The fixture's bodies and cameras, moved into our body frame with arbitrary root translations.
    body, camera = official_fixture.posed_body_and_camera(fx, torch.tensor([[0.1, -0.2, 0.3], [0.0, 1.0, -2.0]]))
    jitter = torch.from_numpy(fx["in/ray_jitter_u"])[..., 0]
    for fast in (True, False):
        with torch.no_grad():
            out = g(torch.from_numpy(fx["in/z"]), body, camera, psi=0.7, jitter=jitter, last_back=True, fast=fast)
        assert (out.image - torch.from_numpy(fx["out/rgbs"])).abs().max() < 1e-4
        assert (out.style_map - torch.from_numpy(fx["out/feature_map_lowres"])).abs().max() < 1e-4
        assert (out.opacity.reshape(2, -1) - torch.from_numpy(fx["out/opacity"])).abs().max() < 1e-5
        assert (out.depth.reshape(2, -1) - torch.from_numpy(fx["out/depth_raw"])[..., 0]).abs().max() < 1e-4


@pytest.mark.parametrize(("name", "official"), [("paper-512", "MAP3DBN512L"), ("paper-256", "MAP3DBN")])
def test_state_dict_is_a_key_mapping_of_the_official_one(name, official):
    ours = {k: tuple(v.shape) for k, v in Generator(PRESETS[name]).state_dict().items()}
    theirs = {official_fixture.our_key(k): shape for k, shape in official_fixture.manifest(official).items()}
    theirs.pop(None)
    # Our only additions: the stored truncation means (the official code re-draws them at every call).
    assert set(ours) - set(theirs) == {"appearance.w_avg", "pose_mapping.freq_avg", "pose_mapping.phase_avg"}
    assert set(theirs) <= set(ours)
    assert {k: ours[k] for k in theirs} == theirs


def test_output_shapes_and_ranges(setup):
    body, crop, g = setup
    with torch.no_grad():
        out = g(g.sample_z(1, 2), body, crop, psi=0.7)
    assert out.image.shape == (2, 3, 32, 16)
    assert out.style_map.shape == (2, 16, 8, 4)
    assert out.opacity.shape == out.depth.shape == (2, 1, 8, 4)
    assert torch.isfinite(out.image).all() and out.image.std() > 1e-3
    assert out.opacity.min() >= 0 and out.opacity.max() <= 1 + 1e-6
    assert torch.isfinite(out.depth).all() and torch.isfinite(out.style_map).all()


def test_fast_equals_naive(setup):
    body, crop, g = setup
    z = g.sample_z(3, 2)
    with torch.no_grad():
        fast = g(z, body, crop, psi=0.7).image
        naive = g(z, body, crop, psi=0.7, fast=False).image
    assert (fast - naive).abs().max() <= 1e-4


def test_pixel_subsets_are_exact(setup):
    body, crop, g = setup
    z = g.sample_z(4, 2)
    pixels = torch.tensor([[0, 0], [15, 31], [7, 16], [8, 15], [3, 29], [3, 29]])
    with torch.no_grad():
        full = g(z, body, crop).image
        part = g(z, body, crop, pixels=pixels).image
        styles = g.prepare(z, body, crop)
        tiles = torch.cat([g.synthesize(styles, pixels=t) for t in pixels.split(4)], dim=2)
    expected = full[:, :, pixels[:, 1], pixels[:, 0]]
    assert part.shape == (2, 3, 6)
    assert (part - expected).abs().max() <= 1e-5
    assert (tiles - expected).abs().max() <= 1e-5
    assert torch.equal(g.opacity(styles), styles.pose.opacity)


def test_determinism_per_seed(setup):
    body, crop, g = setup
    z = g.sample_z(11, 2)
    assert torch.equal(z, torch.randn(2, 16, generator=torch.Generator().manual_seed(11)))
    assert not torch.equal(z, g.sample_z(12, 2))
    with torch.no_grad():
        a = g(z, body, crop, psi=0.7).image
        assert torch.equal(a, g(z, body, crop, psi=0.7).image)
        assert (a - g(g.sample_z(12, 2), body, crop, psi=0.7).image).abs().max() > 1e-3
        jittered = [g(z, body, crop, rng=torch.Generator().manual_seed(s)).image for s in (1, 1, 2)]
    assert torch.equal(jittered[0], jittered[1]) and not torch.equal(jittered[0], jittered[2])


def test_psi_zero_gives_the_mean_appearance(setup):
    body, crop, g = setup
    with torch.no_grad():
        images = [g(g.sample_z(s, 2), body, crop, psi=0.0).image for s in (1, 2)]
        w = g.appearance(g.sample_z(1, 2), psi=0.0)
    assert (images[0] - images[1]).abs().max() <= 1e-5
    assert torch.allclose(w, g.appearance.w_avg.expand(2, -1))


def test_image_does_not_depend_on_where_the_body_stands(body_model, setup):
    """Turning and moving a body and its camera together (a rigid change of the body frame) changes nothing:
    the generator canonicalises both."""
    _, crop, g = setup
    body, _ = _scene(body_model)
    angle = 0.6
    turn = torch.eye(4)
    turn[[0, 0, 2, 2], [0, 2, 0, 2]] = torch.tensor([math.cos(angle), math.sin(angle), -math.sin(angle),
                                                      math.cos(angle)])
    turn[:3, 3] = torch.tensor([0.4, -0.1, 1.5])
    root = body.joints[:, 0] - body.transl  # the root joint rotates about itself: move transl to compensate
    transl = (body.transl + root) @ turn[:3, :3].T + turn[:3, 3] - root
    moved, _ = _scene(body_model, yaw_root=(angle, 0.8 + angle), transl=transl.tolist())
    assert torch.allclose(moved.vertices, body.vertices @ turn[:3, :3].T + turn[:3, 3], atol=1e-5)
    z = g.sample_z(5, 2)
    with torch.no_grad():
        a = g(z, body, crop).image
        b = g(z, moved, crop.transformed(turn)).image
    assert (a - b).abs().max() <= 1e-4


@pytest.mark.parametrize("ablation", ["instance-norm", "upsampling", "feed-forward"])
def test_ablation_variants(setup, ablation):
    body, crop, _ = setup
    config = preset(f"tiny+{ablation}")
    g = _calibrated(config, body, crop)
    with torch.no_grad():
        out = g(g.sample_z(1, 2), body, crop, psi=0.7)
        naive = g(g.sample_z(1, 2), body, crop, psi=0.7, fast=False)
    assert out.image.shape == (2, 3, 32, 16) and torch.isfinite(out.image).all()
    assert (out.image - naive.image).abs().max() <= 1e-4
    size = (32, 16) if ablation == "feed-forward" else (8, 4)  # feed-forward renders the field at full size
    assert out.style_map.shape == (2, 16, *size) and out.opacity.shape == (2, 1, *size)
    if ablation != "feed-forward":
        with pytest.raises(ValueError, match="pixels"):
            g(g.sample_z(1, 2), body, crop, pixels=torch.tensor([[0, 0]]))


def test_training_gradients_reach_every_trained_group(setup):
    body, crop, _ = setup
    torch.manual_seed(1)
    g = Generator(TINY).train()
    g.compute_truncation_means(n=100)
    out = g(g.sample_z(1, 2), body, crop, rng=torch.Generator().manual_seed(0), noise_std=0.5)
    (out.image.square().mean() + out.style_map.mean()).backward()
    groups = g.parameter_groups()
    assert set(groups) == {"pose_mlp", "pose_field", "appearance", "backbone"}
    assert sum(len(v) for v in groups.values()) == len(list(g.parameters()))
    names = {id(p): n for n, p in g.named_parameters()}
    no_grad = {names[id(p)] for ps in groups.values() for p in ps if p.grad is None or p.grad.abs().sum() == 0}
    # The MLP is fed zeros (its first weight multiplies 0); the field's rgb head only feeds the unused low-res rgb.
    assert no_grad == {"pose_mapping.mlp.network.0.weight", "pose_mapping.field.color_layer_linear.weight",
                       "pose_mapping.field.color_layer_linear.bias"}
    bn = g.backbone.blocks[0].spade_0.norm
    assert bn.num_batches_tracked == 1 and bn.running_var.ne(1).any()


def test_wrong_inputs_are_errors(setup):
    body, crop, g = setup
    with pytest.raises(ValueError, match="this generator renders 16×32 or an integer multiple"):
        g(g.sample_z(1, 2), body, crop.resized(24, 48))
    with pytest.raises(ValueError, match="camera batch 2"):
        g(g.sample_z(1, 3), body, crop)


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.cuda,
                                   pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])])
def test_bf16_autocast(setup, device):
    """The renderer wraps the generator in a bf16 autocast on CUDA: the geometry and pose field stay float32
    inside, the backbone runs in bf16, the image stays close to the float32 one."""
    body, crop, g = setup
    z = g.sample_z(1, 2)
    with torch.no_grad():
        reference = g(z, body, crop, psi=0.7).image
        moved = Generator(TINY).to(device)
        moved.load_state_dict(g.state_dict())
        moved.eval()
        on_device = type(body)(**{k: v.to(device) for k, v in vars(body).items()})
        with torch.autocast(device, dtype=torch.bfloat16):
            out = moved(z.to(device), on_device, crop.to(device), psi=0.7)
    assert out.style_map.dtype == torch.float32
    assert out.image.shape == reference.shape and torch.isfinite(out.image).all()
    assert (out.image.float().cpu() - reference).abs().max() < 0.05 * reference.abs().max()

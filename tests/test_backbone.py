"""Pixel-wise SPADE backbone (docs/architecture.md §Backbone): golden fixture, fast == naive, exact pixel subsets,
training path, ablation variants, FLOP count."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import official_fixture
from neural.backbone import Backbone, all_pixels, backbone_flops, sample_bilinear
from neural.backbone_upsampling import UpsamplingBackbone
from neural.config import PRESETS, preset

TINY = PRESETS["tiny"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(config, batch=2, seed=0, full_res=False):
    g = torch.Generator().manual_seed(seed)
    h, w = (config.height, config.width) if full_res else (config.render_height, config.render_width)
    style_map = 1 + 0.5 * torch.randn(batch, config.feature_dim, h, w, generator=g)
    return style_map, torch.randn(batch, config.feature_dim, generator=g)


def _calibrated(config, seed=0):
    """A backbone in eval mode with non-trivial BN affines, running stats and converged spectral-norm vectors."""
    torch.manual_seed(seed)
    net = Backbone(config) if config.backbone == "pixelwise" else UpsamplingBackbone(config)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
    net.train()
    with torch.no_grad():
        for i in range(3):
            net(*_inputs(config, batch=3, seed=100 + i, full_res=config.conditioning == "feed_forward"))
    return net.eval()


def test_matches_official_fixture_both_paths():
    fx = official_fixture.load()
    net = Backbone(official_fixture.CONFIG)
    net.load_state_dict(official_fixture.backbone_state(fx))
    net.eval()
    style_map = torch.from_numpy(fx["out/feature_map_lowres"])
    w = torch.from_numpy(fx["mid/w_trunc"])[:, 0]
    expected = torch.from_numpy(fx["out/rgbs"])
    with torch.no_grad():
        assert (net(style_map, w, fast=False) - expected).abs().max() < 1e-5
        assert (net(style_map, w, fast=True) - expected).abs().max() < 1e-5


def test_parameter_shapes_follow_the_official_layout():
    net = Backbone(PRESETS["paper-512"])
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["coord_input.weight"] == (420, 2, 1, 1)
    assert shapes["blocks.0.conv_0.weight_orig"] == (420, 420, 1, 1)
    assert shapes["blocks.8.conv_1.weight_u"] == (420,) and shapes["blocks.8.conv_1.weight_v"] == (420,)
    assert shapes["blocks.4.spade_1.shared.weight"] == (128, 420, 1, 1)
    assert shapes["blocks.4.spade_1.gamma.weight"] == (420, 128, 1, 1)
    assert shapes["blocks.4.spade_1.norm.running_var"] == (420,)
    assert shapes["to_rgb.3.weight"] == (3, 420, 1, 1) and "to_rgb.2.weight" not in shapes
    # 343 official keys − 9·2 (latent pool, implicit branch, 3 ToRGB, style input…) is checked by the importer;
    # here: 9 blocks × (2 convs × 4 + 2 SPADEs × 11) + input 2 + 6 ToRGB × 2.
    assert len(shapes) == 9 * (8 + 22) + 2 + 12


@pytest.mark.parametrize("mode", ["isolated", "mixed"])
def test_fast_equals_naive(mode):
    config = TINY.replace(pose_mode=mode)
    net = _calibrated(config)
    style_map, w = _inputs(config)
    with torch.no_grad():
        naive = net(style_map, w, fast=False)
        fast = net(style_map, w, fast=True, tile_pixels=100)
    assert naive.shape == (2, 3, 32, 16)
    assert naive.abs().max() > 0.05  # a non-trivial image
    assert (fast - naive).abs().max() <= 1e-4


def test_pixel_subset_is_exact():
    net = _calibrated(TINY.replace(pose_mode="mixed"))
    style_map, w = _inputs(TINY)
    g = torch.Generator().manual_seed(5)
    pixels = torch.stack([torch.randint(0, 16, (57,), generator=g), torch.randint(0, 32, (57,), generator=g)], 1)
    pixels = torch.cat([pixels, torch.tensor([[0, 0], [15, 31], [15, 0], [0, 31], [3, 7], [3, 7]])])
    with torch.no_grad():
        full = net(style_map, w)
        part = net(style_map, w, pixels=pixels, tile_pixels=13)
        naive_part = net(style_map, w, pixels=pixels, fast=False)
    assert part.shape == (2, 3, len(pixels))
    assert (part - full[:, :, pixels[:, 1], pixels[:, 0]]).abs().max() <= 1e-5
    assert (naive_part - part).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="outside"):
        net(style_map, w, pixels=torch.tensor([[16, 0]]))
    with pytest.raises(ValueError, match="integer"):
        net(style_map, w, pixels=torch.zeros(3, 2))


@pytest.mark.parametrize(("h", "w", "out_h", "out_w"), [(8, 4, 32, 16), (96, 48, 512, 256), (5, 3, 17, 9)])
def test_bilinear_sampling_equals_interpolate(h, w, out_h, out_w):
    maps = torch.randn(2, 3, h, w)
    expected = F.interpolate(maps, (out_h, out_w), mode="bilinear", align_corners=False)
    pixels = all_pixels(out_h, out_w)
    got = sample_bilinear(maps, pixels, out_h, out_w).transpose(1, 2).reshape(2, 3, out_h, out_w)
    assert (got - expected).abs().max() <= 1e-5


def test_training_path_is_the_naive_function_and_trains_everything():
    net = _calibrated(TINY)
    net.train()
    other = copy.deepcopy(net)  # power iteration updates u, v per call: give each path the same start
    style_map, w = _inputs(TINY, batch=3, seed=7)
    style_map.requires_grad_(True)
    fast = net(style_map, w, fast=True)
    naive = other(style_map, w, fast=False)
    assert (fast - naive).abs().max() <= 1e-4
    fast.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert style_map.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="eval mode"):
        net(style_map, w, pixels=torch.tensor([[0, 0]]))


@pytest.mark.parametrize("name", ["tiny", "tiny+instance-norm", "tiny+feed-forward"])
def test_training_path_has_the_naive_gradients_and_buffer_updates(name):
    """In float64, so that rounding (amplified by backpropagation through batch statistics) cannot hide a
    difference: same image, same gradients for every parameter and input, same BN and spectral-norm updates."""
    config = preset(name)
    net = _calibrated(config).train().double()
    other, third = copy.deepcopy(net), copy.deepcopy(net)
    style_map, w = _inputs(config, batch=3, seed=7, full_res=config.conditioning == "feed_forward")
    inputs = [(style_map.double().requires_grad_(True), w.double().requires_grad_(True)) for _ in range(2)]
    fast, naive = net(*inputs[0], fast=True), other(*inputs[1], fast=False)
    assert (fast - naive).abs().max() <= 1e-12
    with torch.no_grad():  # the D step's fakes: same path, writing in place
        assert (third(style_map.double(), w.double(), fast=True) - naive).abs().max() <= 1e-12
    weight = torch.randn(fast.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (fast * weight).sum().backward()
    (naive * weight).sum().backward()
    naive_params = dict(other.named_parameters())
    for key, p in net.named_parameters():
        assert (p.grad - naive_params[key].grad).abs().max() <= 1e-10 * max(1.0, naive_params[key].grad.abs().max())
    for a, b in zip(inputs[0], inputs[1]):
        assert (a.grad - b.grad).abs().max() <= 1e-10 * b.grad.abs().max()
    naive_buffers = dict(other.named_buffers())  # BN running statistics, spectral-norm u and v
    for key, b in net.named_buffers():
        assert (b - naive_buffers[key]).abs().max() <= 1e-12, key


def test_fast_path_is_differentiable_in_eval_mode():
    net = _calibrated(TINY)
    style_map, w = _inputs(TINY)
    w.requires_grad_(True)
    net(style_map, w, pixels=torch.tensor([[1, 2], [3, 4]])).sum().backward()
    assert w.grad.abs().sum() > 0


def test_deterministic():
    net = _calibrated(TINY)
    style_map, w = _inputs(TINY)
    with torch.no_grad():
        assert torch.equal(net(style_map, w), net(style_map, w))


def test_instance_norm_variant():
    config = preset("tiny+instance-norm")
    net = _calibrated(config)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    style_map, w = _inputs(config)
    with torch.no_grad():
        image = net(style_map, w)
        assert image.shape == (2, 3, 32, 16)
        assert (image - net(style_map, w, fast=False)).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="instance norm"):
        net(style_map, w, pixels=torch.tensor([[0, 0]]))


def test_feed_forward_variant():
    config = preset("tiny+feed-forward")
    net = _calibrated(config)
    style_map, w = _inputs(config, full_res=True)
    pixels = torch.tensor([[0, 0], [5, 9], [15, 31]])
    with torch.no_grad():
        naive, fast = net(style_map, w, fast=False), net(style_map, w)
        part = net(style_map, w, pixels=pixels)
    assert fast.shape == (2, 3, 32, 16)
    assert (fast - naive).abs().max() <= 1e-4
    assert (part - fast[:, :, pixels[:, 1], pixels[:, 0]]).abs().max() <= 1e-5
    # The pose features enter as input: changing them changes the image.
    with torch.no_grad():
        assert (net(style_map + 1, w) - fast).abs().max() > 1e-3


def test_upsampling_variant():
    config = preset("tiny+upsampling")
    net = _calibrated(config)
    assert net.blocks[0].conv_0.weight_orig.shape[-1] == 3
    style_map, w = _inputs(config)
    with torch.no_grad():
        image = net(style_map, w)
        assert image.shape == (2, 3, 32, 16)
        assert (image - net(style_map, w, fast=False)).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="not supported by the upsampling backbone"):
        net(style_map, w, pixels=torch.tensor([[0, 0]]))
    with pytest.raises(ValueError, match="render_height = height/4"):
        UpsamplingBackbone(PRESETS["paper-512"].replace(backbone="upsampling"))


def test_flop_count():
    # docs/official_conventions.md §FLOPs counts 1595.6 GFLOP for the MAP3DBN512L backbone (confirmed there by
    # FlopCounterMode).
    assert backbone_flops(PRESETS["paper-512"], fast=False) == pytest.approx(1595.6e9, rel=1e-4)
    assert backbone_flops(PRESETS["paper-256"], fast=False) == pytest.approx(348.4e9, rel=1e-3)
    # Our counter equals torch's own count of the naive path (whose only matmuls are the 1×1 convs).
    net = _calibrated(TINY)
    style_map, w = _inputs(TINY, batch=1)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(style_map, w, fast=False)
    assert counter.get_total_flops() == backbone_flops(TINY, fast=False)
    # Fast path: 6 of 9 blocks' SPADE MLPs once per image, the map SPADEs' shared layer once per style-map pixel
    # → −37 % at 512×256; torch's count of the fast path agrees (its matmuls run on 2-D rows and 3-D batches).
    assert backbone_flops(PRESETS["paper-512"], fast=True) == pytest.approx(1006.6e9, rel=1e-3)
    for config in (TINY, TINY.replace(pose_mode="isolated")):
        net = _calibrated(config)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(style_map, w, fast=True)
        assert counter.get_total_flops() == backbone_flops(config, fast=True)

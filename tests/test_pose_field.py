"""Pose field and pose MLP (docs/architecture.md §Pose field; docs/official_conventions.md §Forward pass, steps 1, 2,
5): official outputs from the fixture's weights, the official parameter layout of the released 512 model, inits,
truncation means, the folded fast path."""

import math

import pytest
import torch

import official_fixture
import pose_fixture
from neural.config import PRESETS
from neural.pose_field import OFFICIAL_PREFIXES
from neural.pose_mapping import PoseMappingNetwork

# Rows `neural_field.*` and `neural_field_mapping_network.*` of tests/data/state_dict_MAP3DBN512L.tsv.
OFFICIAL_512_SHAPES = {
    "neural_field.first_layer_coord.layer.weight": (420, 3), "neural_field.first_layer_coord.layer.bias": (420,),
    "neural_field.first_layer_mod.layer.weight": (420, 31), "neural_field.first_layer_mod.layer.bias": (420,),
    "neural_field.network.0.layer.weight": (420, 840), "neural_field.network.0.layer.bias": (420,),
    "neural_field.network.1.layer.weight": (420, 420), "neural_field.network.1.layer.bias": (420,),
    "neural_field.network.2.layer.weight": (420, 420), "neural_field.network.2.layer.bias": (420,),
    "neural_field.network.3.layer.weight": (420, 420), "neural_field.network.3.layer.bias": (420,),
    "neural_field.sigma_layer.weight": (1, 420), "neural_field.sigma_layer.bias": (1,),
    "neural_field.color_layer_sine.layer.weight": (420, 423), "neural_field.color_layer_sine.layer.bias": (420,),
    "neural_field.color_layer_linear.weight": (3, 420), "neural_field.color_layer_linear.bias": (3,),
    "neural_field.feature_layer_linear.weight": (420, 420), "neural_field.feature_layer_linear.bias": (420,),
    "neural_field_mapping_network.network.0.weight": (420, 420),
    "neural_field_mapping_network.network.0.bias": (420,),
    "neural_field_mapping_network.network.2.weight": (420, 420),
    "neural_field_mapping_network.network.2.bias": (420,),
    "neural_field_mapping_network.network.4.weight": (420, 420),
    "neural_field_mapping_network.network.4.bias": (420,),
    "neural_field_mapping_network.network.6.weight": (3360, 420),
    "neural_field_mapping_network.network.6.bias": (3360,),
}


@pytest.fixture(scope="module")
def fx():
    return official_fixture.load()


@pytest.fixture(scope="module")
def official_net(fx):
    net = PoseMappingNetwork(official_fixture.CONFIG)
    net.load_state_dict(pose_fixture.pose_state(fx))
    return net


def test_official_modulation_raw_and_truncated(fx, official_net):
    with torch.no_grad():
        freq, phase = official_net.modulation(1.0)
        torch.testing.assert_close(freq, pose_fixture.tensor(fx, "mid/freq_raw")[:1], rtol=0, atol=1e-6)
        torch.testing.assert_close(phase, pose_fixture.tensor(fx, "mid/phase_raw")[:1], rtol=0, atol=1e-6)
        freq, phase = official_net.modulation(float(fx["in/truncation_psi"]))
    torch.testing.assert_close(freq, pose_fixture.tensor(fx, "mid/freq_trunc")[:1], rtol=0, atol=1e-6)
    torch.testing.assert_close(phase, pose_fixture.tensor(fx, "mid/phase_trunc")[:1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("folded", [False, True])
def test_official_field_output(fx, official_net, folded):
    points, geo = pose_fixture.tensor(fx, "mid/points"), pose_fixture.tensor(fx, "mid/geo_features")
    freq, phase = pose_fixture.tensor(fx, "mid/freq_trunc"), pose_fixture.tensor(fx, "mid/phase_trunc")
    with torch.no_grad():
        if folded:  # both images share the (z-independent) modulation
            out = official_net.field.fold(freq[0], phase[0])(points.reshape(-1, 3), geo.reshape(-1, 31))
            out = out.reshape(2, 512, 36)
        else:
            out = official_net.field(points, geo, freq, phase)
    torch.testing.assert_close(out, pose_fixture.tensor(fx, "mid/field_out"), rtol=0, atol=1e-4)


def test_parameter_layout_of_the_released_model():
    net = PoseMappingNetwork(PRESETS["paper-512"])
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    renamed = {}
    for key, shape in OFFICIAL_512_SHAPES.items():
        prefix = next(p for p in OFFICIAL_PREFIXES if key.startswith(p))
        renamed[OFFICIAL_PREFIXES[prefix] + key[len(prefix):]] = shape
    assert ours == {**renamed, "freq_avg": (1680,), "phase_avg": (1680,)}
    assert all(isinstance(m, torch.nn.Linear) for m in (net.field.sigma_layer, net.mlp.network[6]))


def test_official_inits():
    torch.manual_seed(0)
    net = PoseMappingNetwork(PRESETS["paper-256"])  # H = 384
    H, field = 384, net.field

    def bound(w):
        return w.abs().max().item()

    assert bound(field.first_layer_coord.layer.weight) == pytest.approx(1 / 3, rel=0.02)
    assert bound(field.first_layer_mod.layer.weight) == pytest.approx(1 / 31, rel=0.02)
    for layer, fan_in in ((field.network[0].layer, 2 * H), (field.network[3].layer, H),
                          (field.color_layer_sine.layer, H + 3), (field.feature_layer_linear, H)):
        assert bound(layer.weight) == pytest.approx(math.sqrt(6 / fan_in) / 25, rel=0.02)
    gain = math.sqrt(2 / (1 + 0.2**2))  # Kaiming, leaky ReLU 0.2, fan-in
    assert net.mlp.network[2].weight.std().item() == pytest.approx(gain / math.sqrt(H), rel=0.03)
    assert net.mlp.network[6].weight.std().item() == pytest.approx(0.25 * gain / math.sqrt(H), rel=0.03)


def test_truncation_means_are_seeded_means_over_random_latents():
    torch.manual_seed(1)
    net = PoseMappingNetwork(PRESETS["tiny"])
    net.compute_truncation_means(seed=5, n=3000)
    z = torch.randn(3000, 16, generator=torch.Generator().manual_seed(5))  # the appearance mapping's draw
    with torch.no_grad():
        freq, phase = net.mlp(z)
        torch.testing.assert_close(net.freq_avg, freq.mean(0), rtol=0, atol=1e-5)
        torch.testing.assert_close(net.phase_avg, phase.mean(0), rtol=0, atol=1e-5)
        # ψ = 0 gives the means, ψ = 1 the MLP's output for zeros (the z-independent constants).
        torch.testing.assert_close(net.modulation(0.0)[0], net.freq_avg[None])
        torch.testing.assert_close(net.modulation(1.0)[0], net.mlp(torch.zeros(1, 16))[0])
        before = net.freq_avg.clone()
        net.compute_truncation_means(seed=5, n=3000)
        assert torch.equal(net.freq_avg, before)
        net.compute_truncation_means(seed=6, n=3000)
        assert not torch.equal(net.freq_avg, before)


def test_folded_field_has_the_same_values_and_gradients():
    torch.manual_seed(2)
    net = PoseMappingNetwork(PRESETS["cpu-small"])
    with torch.no_grad():
        for name, p in net.named_parameters():  # non-trivial biases, as after training
            if name.endswith("bias"):
                p.add_(0.05 * torch.randn_like(p))
    points, geo = torch.randn(1, 300, 3) * 0.5, torch.rand(1, 300, 31)
    freq, phase = net.modulation(0.7)
    literal = net.field(points, geo, freq, phase)
    folded = net.field.fold(freq, phase)(points[0], geo[0])[None]
    torch.testing.assert_close(folded, literal, rtol=1e-4, atol=1e-4)
    weight = net.field.network[1].layer.weight
    g_literal = torch.autograd.grad(literal[..., 3:].square().sum(), weight)[0]
    g_folded = torch.autograd.grad(folded[..., 3:].square().sum(), weight)[0]
    torch.testing.assert_close(g_folded, g_literal, rtol=1e-3, atol=1e-3 * g_literal.abs().max().item())

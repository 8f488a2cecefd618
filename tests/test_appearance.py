"""Appearance mapping z → w (docs/architecture.md §Appearance mapping): against the official golden fixture, truncation,
determinism, gradients."""

import math

import pytest
import torch

import official_fixture
from neural.appearance import AppearanceMapping, EqualizedLinear, normalize_2nd_moment


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(seed: int = 0) -> AppearanceMapping:
    torch.manual_seed(seed)
    return AppearanceMapping(latent_dim=16, style_dim=16)


def test_matches_official_fixture():
    fx = official_fixture.load()
    mapping = AppearanceMapping(latent_dim=32, style_dim=32)
    mapping.load_state_dict(official_fixture.appearance_state(fx))
    z = torch.from_numpy(fx["in/z"])
    with torch.no_grad():
        w = mapping(z)
        w_trunc = mapping(z, psi=float(fx["in/truncation_psi"]))
    assert torch.allclose(w, torch.from_numpy(fx["mid/w_raw"])[:, 0], atol=1e-5)
    assert torch.allclose(w_trunc, torch.from_numpy(fx["mid/w_trunc"])[:, 0], atol=1e-5)


def test_parameter_shapes_and_equalised_init():
    mapping = AppearanceMapping(latent_dim=420, style_dim=420)
    shapes = {k: tuple(v.shape) for k, v in mapping.state_dict().items()}
    assert shapes == {**{f"layers.{i}.weight": (420, 420) for i in range(8)},
                      **{f"layers.{i}.bias": (420,) for i in range(8)}, "w_avg": (420,)}
    # Stored weights are N(0, 1/lr²); the effective weight W·lr/√fan_in is N(0, 1/fan_in).
    layer = mapping.layers[0]
    assert layer.weight.std().item() == pytest.approx(100.0, rel=0.02)
    assert (layer.weight * layer.weight_gain).std().item() == pytest.approx(1 / math.sqrt(420), rel=0.02)


def test_equalized_linear_formula():
    torch.manual_seed(1)
    layer = EqualizedLinear(in_features=5, out_features=3, lr_multiplier=0.01)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, 5)
    expected = x @ (layer.weight * 0.01 / math.sqrt(5)).t() + 0.01 * layer.bias
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_input_normalisation_and_output_shape():
    z = torch.randn(6, 16) * 7.0
    assert torch.allclose(normalize_2nd_moment(z).square().mean(-1), torch.ones(6), atol=1e-5)
    mapping = _tiny()
    w = mapping(z)
    assert w.shape == (6, 16) and torch.isfinite(w).all()
    # z and 7·z are the same latent after normalisation.
    assert torch.allclose(mapping(z / 7.0), w, atol=1e-5)
    # The last layer is lrelu·√2 too: w's negative entries are 0.2× compressed.
    assert (w < 0).any() and (w > 0).any()


def test_truncation_mean_is_deterministic_per_seed_and_psi_zero_gives_it():
    mapping = _tiny()
    mean_a = mapping.compute_truncation_mean(seed=3, n=2000).clone()
    z = torch.randn(2000, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(mean_a, mapping(z).mean(0), atol=1e-6)
        assert torch.equal(mapping.compute_truncation_mean(seed=3, n=2000), mean_a)
        assert not torch.equal(mapping.compute_truncation_mean(seed=4, n=2000), mean_a)
        mapping.compute_truncation_mean(seed=3, n=2000)
        z = torch.randn(5, 16)
        assert torch.allclose(mapping(z, psi=0.0), mean_a.expand(5, -1), atol=1e-6)
        assert torch.equal(mapping(z, psi=1.0), mapping(z))
        w, w_half = mapping(z), mapping(z, psi=0.5)
        assert torch.allclose(w_half, 0.5 * (w + mean_a), atol=1e-5)


def test_wrong_latent_shape_is_an_error():
    with pytest.raises(ValueError, match=r"z must be \(B, 16\)"):
        _tiny()(torch.randn(2, 8))


def test_gradients_reach_every_layer():
    mapping = _tiny()
    mapping(torch.randn(4, 16)).square().sum().backward()
    for name, p in mapping.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name

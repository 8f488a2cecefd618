"""training/discriminator.py: the OASIS-style U-Net: shapes, the paper's channel plan, spectral norm."""

import torch

from training.discriminator import NUM_CLASSES, UNetDiscriminator, levels


def test_levels_follow_the_official_rule():
    assert levels(256, 128) == 6 and levels(512, 256) == 6
    assert levels(128, 64) == 6 and levels(32, 16) == 4


def test_paper_channel_plan_and_size():
    with torch.device("meta"):
        d = UNetDiscriminator(height=256, width=128, channels=(128, 128, 256, 256, 512, 512), head=64)
    decoder = [(b.conv_0.parametrizations.weight.original.shape[1], b.conv_1.parametrizations.weight.original.shape[0])
               for b in d.decoder]
    assert decoder == [(512, 512), (1024, 256), (512, 256), (512, 128), (256, 128), (256, 64)]
    assert d.head.out_channels == NUM_CLASSES
    count = sum(p.numel() for p in d.parameters())
    assert 20e6 < count < 28e6, count  # docs/architecture.md §Discriminator: ≈ 23.8M


def test_forward_shapes_and_pixel_locality():
    torch.manual_seed(0)
    d = UNetDiscriminator(height=32, width=16, channels=(8, 8, 16, 16), head=8).eval()
    x = torch.randn(2, 3, 32, 16)
    y = d(x)
    assert y.shape == (2, NUM_CLASSES, 32, 16) and torch.isfinite(y).all()
    binary = UNetDiscriminator(height=32, width=16, channels=(8, 8, 16, 16), head=8, num_classes=1)
    assert binary(x).shape == (2, 1, 32, 16)
    # images are independent (no batch coupling)
    assert torch.allclose(d(x[:1]), y[:1], atol=1e-5)


def test_channels_last_activations_compute_the_nchw_function():
    # forward computes in channels-last; the same layers run on the NCHW input give the same logits and gradients
    torch.manual_seed(0)
    d = UNetDiscriminator(height=32, width=16, channels=(8, 8, 16, 16), head=8).double().eval()
    x = torch.randn(2, 3, 32, 16, dtype=torch.float64, requires_grad=True)
    y = d(x)
    ref = d.layers(x)
    assert not y.is_contiguous() and ref.is_contiguous() and (y - ref).abs().max() < 1e-12
    (gx,) = torch.autograd.grad((y * ref.detach()).sum(), x)
    (gx_ref,) = torch.autograd.grad((ref * ref.detach()).sum(), x)
    assert (gx - gx_ref).abs().max() < 1e-10 * gx_ref.abs().max()


def test_spectral_norm_bounds_each_conv():
    torch.manual_seed(0)
    d = UNetDiscriminator(height=32, width=16, channels=(8, 8, 16, 16), head=8)
    for _ in range(30):  # power iteration runs in training-mode forwards
        d(torch.randn(1, 3, 32, 16))
    conv = d.encoder[1].conv_1
    w = conv.weight.detach().reshape(conv.weight.shape[0], -1)
    assert abs(torch.linalg.matrix_norm(w, ord=2).item() - 1.0) < 0.05


def test_wrong_input_is_refused():
    d = UNetDiscriminator(height=32, width=16, channels=(8, 8, 16, 16), head=8)
    try:
        d(torch.randn(1, 3, 16, 16))
    except ValueError as error:
        assert "32, 16" in str(error)
    else:
        raise AssertionError("a wrong-size image was accepted")

"""Private torch API the code relies on, pinned by behaviour so an upgrade fails here, by name, not as a silently
wrong weight elsewhere.

neural/backbone.py `_sn_matrix` runs the legacy `torch.nn.utils.spectral_norm` pre-hook itself, found by walking the
private `Module._forward_pre_hooks` dict (the official weights store `weight_orig`, `weight_u`, `weight_v`, the
legacy layout: docs/official_conventions.md §Spectral norm at eval). Written against torch 2.13.0. If this fails
after a torch upgrade, port `_sn_matrix` to `torch.nn.utils.parametrizations.spectral_norm` (keeping the official
key names in neural/official.py) rather than patching the test."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.spectral_norm import SpectralNorm

from neural.backbone import _sn_matrix

TESTED_WITH = "2.13.0"
HINT = (f"torch {torch.__version__} (tested with {TESTED_WITH}) changed the legacy spectral_norm internals that "
        f"neural/backbone.py _sn_matrix walks; port it to torch.nn.utils.parametrizations.spectral_norm")


def spectral_conv(seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.utils.spectral_norm(nn.Conv2d(6, 6, 1))


def test_the_legacy_hook_sits_in_forward_pre_hooks_with_its_buffers():
    conv = spectral_conv()
    hooks = [h for h in conv._forward_pre_hooks.values() if isinstance(h, SpectralNorm)]
    assert len(hooks) == 1, HINT
    assert hooks[0].name == "weight" and hooks[0].n_power_iterations == 1, HINT
    names = {n for n, _ in conv.named_parameters()} | {n for n, _ in conv.named_buffers()}
    assert {"weight_orig", "bias", "weight_u", "weight_v"} <= names, HINT


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_sn_matrix_is_the_weight_the_module_itself_applies(mode):
    """_sn_matrix updates u, v exactly as a forward call does (one power iteration in train mode, none in eval)
    and returns the weight that call applies."""
    conv = spectral_conv().train(mode == "train")
    twin = copy.deepcopy(conv)
    x = torch.randn(2, 6, 3, 4)
    expected = twin(x)
    matrix = _sn_matrix(conv)
    assert matrix.shape == (6, 6)
    got = F.conv2d(x, matrix[:, :, None, None], conv.bias)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=HINT)
    torch.testing.assert_close(conv.weight_u, twin.weight_u, msg=HINT)
    torch.testing.assert_close(conv.weight_v, twin.weight_v, msg=HINT)

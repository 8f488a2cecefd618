"""training/state.py: training-state round trip (no pickle), complete-checkpoint detection, pruning."""

import json

import pytest
import torch
from torch import nn

from training import state


def _setup(seed):
    torch.manual_seed(seed)
    G, D = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), nn.Linear(4, 1)
    g_opt = torch.optim.Adam([{"params": G[0].parameters(), "lr": 1e-3, "base_lr": 1e-3},
                              {"params": G[1].parameters(), "lr": 5e-5, "base_lr": 5e-5}], betas=(0.0, 0.9))
    d_opt = torch.optim.Adam(D.parameters(), lr=4e-4, betas=(0.0, 0.9))
    scalers = torch.amp.GradScaler("cpu", enabled=False), torch.amp.GradScaler("cpu", enabled=False)
    return G, D, g_opt, d_opt, scalers


def _step(G, D, g_opt, d_opt):
    g_opt.zero_grad()
    d_opt.zero_grad()
    loss = D(G(torch.randn(8, 3))).square().mean()
    loss.backward()
    g_opt.step()
    d_opt.step()


def test_round_trip_continues_identically(tmp_path):
    G, D, g_opt, d_opt, (gs, ds) = _setup(0)
    _step(G, D, g_opt, d_opt)
    path = tmp_path / "state-0000001.safetensors"
    state.save(path, step=1, generator=G, discriminator=D, g_optimizer=g_opt, d_optimizer=d_opt, g_scaler=gs,
               d_scaler=ds, extra={"note": "x"})
    assert b"__reduce__" not in path.read_bytes() and path.read_bytes()[8:9] == b"{"  # safetensors JSON header
    G2, D2, g2, d2, (gs2, ds2) = _setup(1)
    meta = state.load(path, generator=G2, discriminator=D2, g_optimizer=g2, d_optimizer=d2, g_scaler=gs2,
                      d_scaler=ds2)
    assert meta["step"] == 1 and meta["extra"] == {"note": "x"}
    assert g2.param_groups[1]["lr"] == 5e-5 and g2.param_groups[1]["base_lr"] == 5e-5
    torch.manual_seed(5)
    _step(G, D, g_opt, d_opt)
    torch.manual_seed(5)
    _step(G2, D2, g2, d2)
    for a, b in zip([*G.state_dict().values(), *D.state_dict().values()],
                    [*G2.state_dict().values(), *D2.state_dict().values()]):
        assert torch.equal(a, b)


def _fake_checkpoint(run, step, kinds=("state", "generator"), truncate=False):
    from safetensors.torch import save_file

    for kind in kinds:
        path = run / f"{kind}-{step:07d}.safetensors"
        save_file({"x": torch.zeros(100)}, str(path))
        if truncate:
            path.write_bytes(path.read_bytes()[:-50])


def test_latest_ignores_incomplete_and_prune_keeps_multiples(tmp_path):
    for step in (5, 10, 15):
        _fake_checkpoint(tmp_path, step)
    _fake_checkpoint(tmp_path, 20, kinds=("state",))  # killed between the two files
    _fake_checkpoint(tmp_path, 25, truncate=True)  # a damaged pair
    (tmp_path / ".state-0000030.safetensors.123.tmp").write_bytes(b"partial")
    assert state.complete_steps(tmp_path) == [5, 10, 15] and state.latest(tmp_path) == 15
    state.prune(tmp_path, keep_every=10)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["damaged", "generator-0000010.safetensors", "generator-0000015.safetensors",
                     "state-0000010.safetensors", "state-0000015.safetensors"]
    # the damaged pair is moved aside, never deleted
    assert sorted(p.name for p in (tmp_path / "damaged").iterdir()) == ["generator-0000025.safetensors",
                                                                       "state-0000025.safetensors"]
    json.dumps(names)


def test_a_state_file_with_flipped_bytes_is_refused_by_name(tmp_path):
    G, D, g_opt, d_opt, (gs, ds) = _setup(0)
    path = tmp_path / "state-0000001.safetensors"
    state.save(path, step=1, generator=G, discriminator=D, g_optimizer=g_opt, d_optimizer=d_opt, g_scaler=gs,
               d_scaler=ds)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(state.StateError, match=f"training state {path} is corrupt: .*content hash"):
        state.load(path, generator=G, discriminator=D, g_optimizer=g_opt, d_optimizer=d_opt, g_scaler=gs,
                   d_scaler=ds)

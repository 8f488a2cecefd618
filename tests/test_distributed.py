"""training/distributed.py: cross-process batch norm and gradient averaging with 2 CPU processes (gloo)."""

import os
import socket

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import nn

from training import distributed


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 5, 3, generator=g) * 2 + 1, torch.randn(4, 2, 5, 3, generator=g)


def _worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    ctx = distributed.init("cpu")
    net = distributed.sync_batch_norm(_net(), ctx)
    assert type(net[1]) is distributed.AllReduceBatchNorm2d
    x, w = _data()
    local = slice(2 * rank, 2 * rank + 2)
    y = net(x[local])
    (y * w[local]).mean().backward()
    distributed.all_reduce_gradients(net, ctx.world)
    arrays = {f"grad.{k}": p.grad.numpy() for k, p in net.named_parameters()}
    arrays.update({f"buf.{k}": b.numpy() for k, b in net.named_buffers()})
    np.savez(f"{out}/rank{rank}.npz", y=y.detach().numpy(), **arrays)
    distributed.shutdown()


def test_batch_norm_and_gradients_match_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    net = _net()
    x, w = _data()
    y = net(x)
    (y * w).mean().backward()
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    assert np.allclose(np.concatenate([r["y"] for r in ranks]), y.detach().numpy(), atol=1e-5)
    for name, p in net.named_parameters():
        for r in ranks:
            assert np.allclose(r[f"grad.{name}"], p.grad.numpy(), atol=1e-6), name
    for name, b in net.named_buffers():  # running mean / unbiased var over the global batch
        for r in ranks:
            assert np.allclose(r[f"buf.{name}"], b.numpy(), atol=1e-6), name


def test_single_process_is_untouched():
    ctx = distributed.Context(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    net = _net()
    assert distributed.sync_batch_norm(net, ctx) is net and type(net[1]) is nn.BatchNorm2d

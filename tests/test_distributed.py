"""training/distributed.py: cross-process batch norm and gradient averaging with 2 CPU processes (gloo)."""

import os
import socket

import numpy as np
import pytest
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_two_process_training_run_stays_in_sync(tmp_path):
    """`torchrun --nproc_per_node 2` on CPU (gloo): a few steps of the tiny preset, with the loop's own check that
    both processes hold identical networks at every checkpoint, and one checkpoint written by rank 0."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tiny_body import write_box_body
    from training import state
    from training.synth import synth

    root = Path(__file__).resolve().parents[1]
    body = write_box_body(tmp_path / "box_body.npz")
    synth(out=tmp_path / "data", count=8, height=32, width=16, seed=1, body_path=Path(body), progress=False)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "training", "train", "--preset", "tiny", "--data", str(tmp_path / "data"), "--run-dir",
               str(tmp_path / "run"), "--steps", "6", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]  # written once (rank 0), not twice
    assert state.complete_steps(tmp_path / "run") == [6]  # step 5 written, then pruned (not a multiple of 10)

"""Data-parallel helpers: process group from `torchrun`, gradient all-reduce, cross-process batch norm
(docs/architecture.md §Optimisation).

The paper trains with DDP and SyncBatchNorm: its spatially-adaptive *batch* norm needs batch statistics over the
global batch. Gradients are averaged here with one flat all-reduce per network after backward (the StyleGAN2-ADA
scheme) rather than through `DistributedDataParallel`: each step calls the discriminator several times (on fakes for
G, on reals for R1) and flips `requires_grad` between networks, which DDP's hooks do not follow. Batch norm: on CUDA
`torch.nn.SyncBatchNorm`; on CPU (which SyncBatchNorm refuses, docs/environment.md §SyncBatchNorm on CPU)
`AllReduceBatchNorm2d` all-reduces per-channel sums with the differentiable
`torch.distributed.nn.functional.all_reduce`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: str = "auto") -> Context:
    """Join the process group that `torchrun` describes in the environment (gloo on CPU, nccl on CUDA), or run
    alone. device: "auto" (CUDA when available), "cpu" or "cuda"."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible; use --device cpu")
    target = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Context(rank=rank, world=world, local_rank=local_rank, device=target)


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        # gloo aborts (SIGABRT, "terminate called without an active exception") a process whose group is torn down
        # while a peer is still inside a collective, and a closing barrier alone still lost that race in ~1 of 4
        # two-process runs. So after the barrier every other rank tells rank 0 (which serves the store) that it is
        # out, waits for the release, and says it has left; only then does anyone destroy its group.
        dist.barrier()
        store = dist.distributed_c10d._get_default_store()
        rank, world = dist.get_rank(), dist.get_world_size()
        if rank == 0:
            store.wait([f"shutdown/out/{r}" for r in range(1, world)])
            store.set("shutdown/release", "1")
            store.wait([f"shutdown/left/{r}" for r in range(1, world)])
        else:
            store.set(f"shutdown/out/{rank}", "1")
            store.wait(["shutdown/release"])
            store.set(f"shutdown/left/{rank}", "1")
        dist.destroy_process_group()


def all_reduce_gradients(module: nn.Module, world: int) -> None:
    """Average the gradients of `module`'s parameters over processes (one flat all-reduce). Parameters without a
    gradient (outside this step's graph, the same on every process) are left without one."""
    if world == 1:
        return
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p))
        offset += n


def broadcast(module: nn.Module, world: int) -> None:
    """Copy rank 0's parameters and buffers to every process (start and resume)."""
    if world == 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def check_in_sync(module: nn.Module, world: int, what: str) -> None:
    """Raise if the processes' copies of `module` differ (they must stay identical after every update)."""
    if world == 1:
        return
    with torch.no_grad():
        sums = torch.stack([p.detach().double().sum() for p in module.parameters()])
        gathered = [torch.empty_like(sums) for _ in range(world)]
        dist.all_gather(gathered, sums)
    if any(not torch.allclose(g, gathered[0], rtol=1e-6, atol=1e-9) for g in gathered[1:]):
        raise RuntimeError(f"the {what} differs between processes; the data-parallel update is broken")


def mean_over_processes(values: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    """Average logged scalars over processes."""
    if world == 1 or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / world).tolist()))


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch over all processes; differentiable
    (gradients flow through the all-reduced sums), with gloo on CPU. Same parameters, buffers and eval behaviour
    as nn.BatchNorm2d, so state dicts and checkpoints are unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        x32 = x.float()
        count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=torch.float32, device=x.device)
        stats = torch.cat([x32.sum(dim=(0, 2, 3)), x32.square().sum(dim=(0, 2, 3)), count])
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), m)
        y = (x32 - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def sync_batch_norm(module: nn.Module, context: Context) -> nn.Module:
    """Make every BatchNorm2d of `module` use global-batch statistics when several processes train: SyncBatchNorm
    on CUDA, AllReduceBatchNorm2d on CPU. Parameter names and values are kept; call before building optimisers."""
    if context.world == 1:
        return module
    if context.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = AllReduceBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum,
                                       affine=child.affine, track_running_stats=child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.to(child.weight.device if child.affine else context.device)
            setattr(module, name, new)
        else:
            sync_batch_norm(child, context)
    return module

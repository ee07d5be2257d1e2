"""desc_train on several processes with torch.distributed, as torchrun launches
them: the process group, the rank helpers, and the collectives the trainer
needs (DistributedDataParallel, synchronised BatchNorm, the all-reduces that take DESC's
means over the global batch). In a single process (no torchrun) every helper
here is the identity: world size 1, rank 0, no collective.

Global means: a rank's share of a mean over the elements of every rank is its
sum divided by ``sum_r count_r / world_size``. DistributedDataParallel averages
the gradients over the ranks, so the average of the shares' gradients is the
gradient of ``sum_r total_r / sum_r count_r``: N ranks with batch b give the
gradients of one process with batch N·b.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

import desc_ops

from .errors import UserError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes (checkpoints, logs, TensorBoard, results, the progress bar)."""
    return rank() == 0


def is_distributed() -> bool:
    return world_size() > 1


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def device(name: str) -> torch.device:
    """The device this process trains on: `name`, except that under torchrun a
    CUDA device is the GPU of the local rank (one GPU per process)."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} is not available here; pass --set device=cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if _local_rank() >= torch.cuda.device_count():
            raise UserError(f"local rank {_local_rank()} has no GPU: this node has {torch.cuda.device_count()}; "
                            f"start at most that many processes per node (--nproc_per_node)")
        dev = torch.device("cuda", _local_rank())
    return dev


@contextlib.contextmanager
def process_group(device_name: str) -> Iterator[None]:
    """Inside the block, this process is a rank of the group that torchrun
    describes in its environment (``WORLD_SIZE`` > 1, ``RANK``, ``MASTER_ADDR``...):
    NCCL for a CUDA device, gloo for the CPU; the group is left at the end.
    Without torchrun, or in a group set up already (by a test), it does nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    dev = device(device_name)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Waits until every rank is here (what rank 0 wrote before is there for all)."""
    if is_distributed():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where a collective's tensor must be: NCCL moves CUDA tensors only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce(t: Tensor, op) -> Tensor:
    out = t.detach().to(_comm_device(), copy=True)
    dist.all_reduce(out, op=op)
    return out.to(t.device)


def all_reduce_sum(t: Tensor) -> Tensor:
    """The sum over ranks of `t` (a new tensor, no gradient); `t` itself in one process."""
    return _all_reduce(t, dist.ReduceOp.SUM) if is_distributed() else t


def all_gather(t: Tensor) -> Tensor:
    """Every rank's `t` (of one shape on all), concatenated along the first
    dimension in rank order, without gradient; `t` itself in one process."""
    if not is_distributed():
        return t
    mine = t.detach().to(_comm_device())
    parts = [torch.empty_like(mine) for _ in range(world_size())]
    dist.all_gather(parts, mine)
    return torch.cat(parts).to(t.device)


def mean_over_ranks(t: Tensor) -> Tensor:
    """The mean over ranks of `t` (no gradient): the global value of a loss of
    which each rank holds its share."""
    return all_reduce_sum(t) / world_size() if is_distributed() else t


def mean_divisor(count: Tensor) -> Tensor:
    """What divides a rank's sum into its share of a mean over the elements of
    every rank: ``sum_r count_r / world_size`` (float64), with `count` this
    rank's number of elements; 1 when no rank has any (every sum is 0 then, and
    so is the mean, never NaN). In one process: `count` (or 1)."""
    n = all_reduce_sum(count.detach().double()) / world_size()
    return torch.where(n > 0, n, torch.ones_like(n))


def global_mean(total: Tensor, count: Tensor) -> Tensor:
    """This rank's share of the mean over every rank's elements, `total` being
    the sum over its own `count` elements (module docstring)."""
    return total / mean_divisor(count).to(total.dtype)


def check_same(value: int, what: str) -> None:
    """Raises on every rank unless every rank holds the same `value` of `what`."""
    if not is_distributed():
        return
    largest, minus_smallest = _all_reduce(torch.tensor([value, -value], dtype=torch.float64), dist.ReduceOp.MAX)
    if largest != -minus_smallest:
        raise UserError(f"the ranks disagree on {what}: the run folder (out=) and the data must be "
                        f"the same files on every node")


# ------------------------------------------------------------ networks
def data_parallel(net: nn.Module, dev: torch.device) -> nn.Module:
    """`net` in DistributedDataParallel when there are several ranks (its
    backward averages the gradients over them), else `net` itself."""
    if not is_distributed():
        return net
    return DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)


class _SumOverRanks(torch.autograd.Function):
    """The sum over ranks of a tensor, with its backward: each rank's input
    receives the sum over ranks of the output gradients. (torch's functional
    all_reduce has this backward on torch 2.13, but on 2.10 its output
    silently carries no gradient.)"""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        return _all_reduce(t, dist.ReduceOp.SUM)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _all_reduce(grad, dist.ReduceOp.SUM)


class GlooSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over the batches of every rank on the CPU, where torch's
    SyncBatchNorm has no kernels and DistributedDataParallel refuses it: the
    batch mean and biased variance, summed over the ranks by a differentiable
    all-reduce, normalise the input, and update the running statistics
    (unbiased variance) as BatchNorm does. In eval mode and in one process, BatchNorm2d."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        summed = _SumOverRanks.apply
        dims, shape = [0, 2, 3], [1, -1, 1, 1]
        count = all_reduce_sum(torch.tensor(x.numel() / x.shape[1], dtype=torch.float64)).to(x.dtype)
        mean = summed(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = summed((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(var * count / (count - 1), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def sync_batchnorm(net: nn.Module, dev: torch.device) -> nn.Module:
    """`net` with its BatchNorm layers normalising over the batches of every rank
    when there are several (torch's SyncBatchNorm on GPUs, GlooSyncBatchNorm2d on
    the CPU), else `net` unchanged. Parameters, buffers and state_dict keys stay
    those of BatchNorm."""
    if not is_distributed():
        return net
    if dev.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for m in net.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlooSyncBatchNorm2d  # a subclass that adds no state: only its forward differs
    return net


# ------------------------------------------------------------ DESC's means over the global batch
class _GlobalConsistency(nn.Module):
    """``semantic_consistency_loss`` with the settings of `inner` (a
    desc_ops.SemanticConsistencyLoss), as this rank's share of the global mean:
    its sum S over the mean over ranks of W, the sum of its confidence map
    (docs/ops.md §2: the mean is S / W)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, depth: Tensor, depth_sem: Tensor, semantic: Tensor, *, image=None, edges=None) -> Tensor:
        m = self.inner
        total, confidence = desc_ops.semantic_consistency_loss(
            depth, depth_sem, semantic, image=image, edges=edges, edge_weight=m.edge_weight,
            boundary_weight=m.boundary_weight, ignore_index=m.ignore_index, ignore_classes=m.ignore_classes,
            reduction="sum", return_confidence=True)
        return global_mean(total, confidence.sum(dtype=torch.float64))


class _GlobalInstancePrior(nn.Module):
    """``instance_prior_loss`` with the settings of `inner` (a
    desc_ops.InstancePriorLoss), as this rank's share of the mean over every
    rank's instance pixels: its sum S over the mean over ranks of N, the
    number of pixels of the slots it uses (docs/ops.md §4: the mean is S / N)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, depth: Tensor, instance_ids: Tensor, heights: Tensor, focal) -> Tensor:
        m = self.inner
        total = desc_ops.instance_prior_loss(depth, instance_ids, heights, focal, min_pixels=m.min_pixels,
                                             max_depth=m.max_depth, reduction="sum", validate=m.validate)
        count = desc_ops.instance_stats(instance_ids, heights.shape[1], validate=False).count
        focal = torch.as_tensor(focal, device=heights.device).expand(heights.shape[0])
        used = (count >= max(m.min_pixels, 1)) & torch.isfinite(heights) & torch.isfinite(focal)[:, None]
        return global_mean(total, (count * used).sum())


def global_objective(objective: desc_ops.DESCLoss) -> desc_ops.DESCLoss:
    """`objective` with its confidence-weighted consistency and its instance
    prior taken over the global batch when there are several ranks (their
    denominators differ from rank to rank); its other terms (smoothness,
    stereo) are means over as many pixels on every rank, which DDP's averaging
    makes global. Unchanged
    in one process."""
    if is_distributed():
        objective.consistency = _GlobalConsistency(objective.consistency)
        objective.instance_prior = _GlobalInstancePrior(objective.instance_prior)
    return objective

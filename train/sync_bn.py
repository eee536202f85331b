"""BatchNorm over the global batch when training on several processes.

With DistributedDataParallel each rank normalises over its own share of the batch: the paper's
batch of 8 on 4 GPUs would be normalised over 2 images. ``sync_batchnorm`` makes every
BatchNorm use the statistics of the whole batch: torch's ``SyncBatchNorm`` on GPUs, and on the
CPU (gloo), where that one refuses to run, ``AllReduceBatchNorm2d``: the per-rank sums are
all-reduced with ``torch.distributed.nn.functional.all_reduce``, which is differentiable, so
the gradients are those of the global batch too.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce(SUM)`` with a gradient: every rank's input feeds every rank's output."""

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        g = grad.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def sum_over_ranks(x: Tensor) -> Tensor:
    """The sum of ``x`` over all ranks, differentiable."""
    return _SumOverRanks.apply(x)


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the batch of all ranks (two
    passes: the mean, then the variance around it). Evaluation and single-process training
    are plain BatchNorm2d; parameters and buffers are the same (checkpoints do not change).
    Under bf16/fp16 autocast the statistics are taken in fp32 and the output cast back, as
    torch's own BatchNorm kernels do; float64 stays float64."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if dist.get_world_size() == 1:
            return super().forward(x)
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # statistics in fp32 under autocast; fp32 and fp64 stay as they are
        dims = (0, 2, 3)
        count = sum_over_ranks(x.new_tensor([x.numel() / x.shape[1]]))
        mean = sum_over_ranks(x.sum(dim=dims)) / count
        centred = x - mean[None, :, None, None]
        var = sum_over_ranks((centred * centred).sum(dim=dims)) / count  # biased, as BatchNorm
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * (count / (count - 1).clamp(min=1.0))
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(dtype)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, AllReduceBatchNorm2d):
        new = AllReduceBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        # the same Parameter and buffer objects: an optimizer made before keeps working
        for name in ("weight", "bias"):
            setattr(new, name, getattr(module, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(new, name, getattr(module, name))
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu(child))
    return module


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``model`` normalised over the global batch (see the module docstring)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)

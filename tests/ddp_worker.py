"""Run by ``torchrun --nproc_per_node=2`` in test_train, in one of two modes:

- ``fp32`` / ``bf16``: ``fit`` for two DDP steps on gloo with a global batch of 4 (2 per rank);
  each rank saves the weights it holds so the test can compare the ranks.
- ``step64`` / ``step64-nosync``: one forward/backward of the global batch in float64 through
  the same ``_distribute`` (all-reduced BatchNorm + DistributedDataParallel) that ``fit`` uses,
  without it for ``-nosync``; each rank saves its averaged gradients and BatchNorm statistics
  so the test can compare them with one process's on the whole batch (``one_step_float64``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from densedepth.depth import depth_to_target
from densedepth.loss import DepthLoss
from densedepth.model import DenseDepth
from train.config import TrainConfig
from train.distributed import DistInfo, init_distributed
from train.distributed import distribute as _distribute
from train.loop import fit


def ddp_config(out: Path, precision: str = "fp32") -> TrainConfig:
    """The run both sides of the comparison make (global batch 4)."""
    return TrainConfig(
        backbone="densenet121",
        decoder_width=0.125,
        weights="none",
        input_size=(64, 64),
        batch_size=4,
        synthetic_train=12,
        synthetic_test=2,
        val_split=0.2,
        val_samples=2,
        device="cpu",
        lr=3e-4,
        max_steps=2,
        checkpoint_every=0,
        out=str(out),
        precision=precision,
    )


def weights_of(model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Parameters and floating-point buffers (BatchNorm running statistics)."""
    return {
        "parameters": {k: v.detach().clone() for k, v in model.named_parameters()},
        "buffers": {k: v.clone() for k, v in model.named_buffers() if v.is_floating_point()},
    }


def global_batch64() -> tuple[torch.Tensor, torch.Tensor]:
    """Four 64x64 images and their hole-free depth (metres), float64, the same in every process."""
    g = torch.Generator().manual_seed(1234)
    images = torch.rand(4, 3, 64, 64, generator=g, dtype=torch.float64)
    depth = 0.5 + 9.0 * torch.rand(4, 1, 32, 32, generator=g, dtype=torch.float64)
    return images, depth


def one_step_float64(info: DistInfo, sync: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """One training forward/backward in float64 of this rank's share of ``global_batch64``
    (all of it for one process): the gradients (averaged over the ranks by DDP) and the
    BatchNorm running statistics after the step. The loss of a hole-free batch is a mean over
    images of equal size, so the mean of the ranks' losses is the global batch's loss and the
    averaged gradient is its gradient: the two must agree to float64 rounding."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = DenseDepth("densenet121", decoder_width=0.125)
        if info.world > 1 and not sync:
            model = torch.nn.parallel.DistributedDataParallel(model)
        else:
            model = _distribute(model, torch.device("cpu"), info)
        model.train()
        images, depth = global_batch64()
        share = images.shape[0] // info.world
        rows = slice(info.rank * share, (info.rank + 1) * share)
        target = depth_to_target(depth[rows])
        loss = DepthLoss()(model(images[rows]), target, torch.ones_like(target, dtype=torch.bool))
        loss.backward()
        net = model.module if hasattr(model, "module") else model
        return {
            "gradients": {k: p.grad.detach().clone() for k, p in net.named_parameters()},
            "buffers": {k: v.clone() for k, v in net.named_buffers() if v.is_floating_point()},
        }
    finally:
        torch.set_default_dtype(previous)


def main(out: Path, precision: str) -> None:
    if precision.startswith("step64"):
        info = init_distributed(torch.device("cpu"))
        step = one_step_float64(info, sync=precision == "step64")
        torch.save(step, out / f"rank{info.rank}.pt")
        dist.barrier()
        dist.destroy_process_group()
        return
    summary = fit(ddp_config(out / "run", precision))
    assert summary["world"] == 2 and summary["per_rank_batch"] == 2, summary
    rank = dist.get_rank()
    torch.save(weights_of(summary["model"]), out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    print(f"rank {rank} of {os.environ['WORLD_SIZE']} done")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "fp32")

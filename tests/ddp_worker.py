"""Run by ``torchrun --nproc_per_node=2`` in test_train: two DDP steps on gloo with a global
batch of 4 (2 per rank), then each rank saves the weights it holds so the test can compare
them with each other and with one process training on batches of 4."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from train.config import TrainConfig
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


def main(out: Path, precision: str) -> None:
    summary = fit(ddp_config(out / "run", precision))
    assert summary["world"] == 2 and summary["per_rank_batch"] == 2, summary
    rank = dist.get_rank()
    torch.save(weights_of(summary["model"]), out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    print(f"rank {rank} of {os.environ['WORLD_SIZE']} done")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "fp32")

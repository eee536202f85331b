"""Run by ``torchrun --nproc_per_node=2`` in test_train: a few DDP steps on gloo, then each
rank saves the weights it holds so the test can compare them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from train.config import TrainConfig
from train.loop import fit


def main(out: Path) -> None:
    cfg = TrainConfig(
        backbone="densenet121",
        decoder_width=0.125,
        weights="none",
        input_size=(64, 64),
        batch_size=2,
        synthetic_train=8,
        synthetic_test=2,
        val_samples=2,
        device="cpu",
        lr=3e-4,
        max_steps=3,
        checkpoint_every=0,
        out=str(out / "run"),
    )
    summary = fit(cfg)
    assert summary["world"] == 2, summary["world"]
    rank = dist.get_rank()
    model = summary["model"]
    state = {
        "parameters": {k: v.detach() for k, v in model.named_parameters()},
        "buffers": {k: v for k, v in model.named_buffers() if v.is_floating_point()},
    }
    torch.save(state, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    print(f"rank {rank} of {os.environ['WORLD_SIZE']} done")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

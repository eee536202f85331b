"""The processes of a training job: joining the process group, each rank's device, precision
and share of the batch, its shard of every epoch, and the model's DDP wrapping.

Multi-GPU / multi-node: launch with ``torchrun``; ``batch_size`` is the global batch, split
evenly over the ranks; each rank takes a disjoint shard of every epoch's permutation
(``EpochSampler``), BatchNorm uses the statistics of the global batch (``train.sync_bn``),
gradients are averaged by DistributedDataParallel, and only rank 0 writes. A single process
(no ``WORLD_SIZE``, or 1) is a job of one rank.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from densedepth.data.splits import check_val_split
from densedepth.precision import Precision, resolve_precision
from densedepth.util.device import resolve_device
from densedepth.util.errors import DenseDepthError
from train.config import TrainConfig
from train.errors import TrainingError
from train.sync_bn import sync_batchnorm


@dataclass
class DistInfo:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 is the only writer."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), else run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


class EpochSampler(Sampler[int]):
    """A permutation per epoch from ``(seed, epoch)``, sharded over ranks, resumable mid-epoch.

    The permutation is padded (wrapping around) to a multiple of the world size so every rank
    takes the same number of samples, as DistributedSampler does.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Choose the epoch's permutation and skip its first ``skip`` samples of this rank."""
        self.epoch, self.skip = epoch, skip

    def shard(self) -> list[int]:
        """This rank's samples of the epoch, before skipping."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        total = math.ceil(self.n / self.world) * self.world
        perm += perm[: total - self.n]
        return perm[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.skip :])

    def __len__(self) -> int:
        return max(0, math.ceil(self.n / self.world) - self.skip)


@dataclass(frozen=True)
class RankSetup:
    """Where and how this rank computes, and its share of the global batch."""

    device: torch.device
    info: DistInfo
    precision: Precision
    per_rank: int  # this rank's batch


def setup_device(cfg: TrainConfig) -> RankSetup:
    """This rank's device, place in the job, precision and batch; checks that the global batch
    divides (and ``--val-split``, before any data is opened) and records in ``cfg.extra`` the
    ranks and the precision ``cfg.precision`` resolved to."""
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if cfg.batch_size % info.world:
        raise TrainingError(
            f"--batch-size {cfg.batch_size} is the global batch, split over {info.world} ranks; "
            f"it must divide by {info.world}"
        )
    per_rank = cfg.batch_size // info.world
    cfg.extra["distributed"] = {"world": info.world, "per_rank_batch": per_rank}
    if not cfg.val_data:
        check_val_split(cfg.val_split)
    try:
        precision = resolve_precision(cfg.precision, device)
    except DenseDepthError as exc:
        raise TrainingError(str(exc)) from None
    cfg.extra["precision"] = precision.record()
    return RankSetup(device, info, precision, per_rank)


def distribute(model: torch.nn.Module, device: torch.device, info: DistInfo) -> torch.nn.Module:
    """Under torchrun: BatchNorm over the global batch, then DistributedDataParallel."""
    if info.world == 1:
        return model
    model = sync_batchnorm(model, device)  # statistics of the global batch, not the rank's
    ddp_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ddp_ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside ``distribute``'s DistributedDataParallel (itself when alone)."""
    return model.module if hasattr(model, "module") else model

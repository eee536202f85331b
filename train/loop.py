"""Training: plain ``train_one_epoch`` / ``validate`` functions and ``fit`` that runs a whole job.

``fit`` resumes at the exact optimiser step it stopped at: data order comes from
``(seed, epoch)`` and augmentation from ``(seed, epoch, index)``, and ``last.pt`` records how
many batches of the current epoch are done, so a run killed after a checkpoint loses only the
steps since then, and a resumed CPU run ends with the same weights as an uninterrupted one.

Multi-GPU / multi-node: launch with ``torchrun``; ``batch_size`` is the global batch, split
evenly over the ranks; each rank takes a disjoint shard of every epoch's permutation,
BatchNorm uses the statistics of the global batch (``train.sync_bn``), gradients are averaged
by DistributedDataParallel, and only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Sampler

from densedepth.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from densedepth.datasets import open_dataset
from densedepth.depth import depth_to_target
from densedepth.device import resolve_device
from densedepth.errors import DenseDepthError
from densedepth.evaluation import PROTOCOL_OF, evaluation_arrays
from densedepth.loss import DepthLoss
from densedepth.metrics import METRIC_KEYS, eigen_evaluate
from densedepth.model import DenseDepth
from densedepth.outputs import OutputLock, parent_problem, write_text_atomic
from densedepth.precision import Precision, resolve_precision
from densedepth.progress import suppressed
from densedepth.signals import stop_on_signals
from densedepth.splits import Subset, check_val_split, split_by_scene
from densedepth.variant import ModelVariant, preset
from train.config import TrainConfig
from train.dataset import TorchDepthDataset
from train.sync_bn import sync_batchnorm


class TrainingError(DenseDepthError):
    """Training stopped for a reason the user must act on (one line)."""


class TrainingInterrupted(DenseDepthError):
    """Ctrl-C or SIGTERM (``signum``): the state was saved; ``--resume`` continues."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


# --------------------------------------------------------------------------------------------
# Distributed set-up and the epoch sampler
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# One epoch, validation
# --------------------------------------------------------------------------------------------


@dataclass
class LoopState:
    """Where the run is: the next epoch to finish and the steps done."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0


@dataclass(frozen=True)
class StepEvent:
    """What ``train_one_epoch`` tells its hook after each optimiser step."""

    step: int  # steps done, this one included
    loss: float
    images: int  # images of this rank's batch


StepHook = Callable[[StepEvent], bool]  # returns True to stop after this step


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    loss_fn: DepthLoss,
    state: LoopState,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    precision: Precision,
    on_step: StepHook,
    should_stop: Callable[[], bool],
) -> bool:
    """Run the rest of ``state.epoch``, calling ``on_step`` with a ``StepEvent`` after each
    step. Returns False when stopped early (``should_stop()`` or ``on_step`` returned True).
    The forward pass runs under ``precision``'s autocast; the loss (SSIM included) in fp32.
    """
    model.train()
    depth_range = _unwrap(model).variant.depth
    for images, depth in loader:
        images = images.to(device, non_blocking=True)
        images = images.contiguous(memory_format=precision.memory_format)
        depth = depth.to(device, non_blocking=True)
        valid = torch.isfinite(depth) & (depth > 0)  # missing depth (0) counts for nothing
        target = depth_to_target(torch.nan_to_num(depth, nan=0.0), depth_range)
        with precision.autocast(device):
            pred = model(images)
        loss = loss_fn(pred.float(), target, valid)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(float(loss.detach()))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        state.step += 1
        state.batch_in_epoch += 1
        event = StepEvent(state.step, float(loss.detach()), images.shape[0])
        if on_step(event) or should_stop():
            return False
    return True


def first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, or None."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


class NonFiniteLoss(Exception):
    """Raised inside the loop; ``fit`` turns it into a TrainingError naming the step."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


@torch.inference_mode()
def validate(
    model: torch.nn.Module,
    rgb: np.ndarray,
    depth: np.ndarray,
    crop: tuple[int, int, int, int] | None,
    device: torch.device,
    batch_size: int = 8,
    protocol: str = "eigen",
) -> dict[str, float]:
    """The metrics of ``model`` under ``protocol`` (NYU's Eigen, or KITTI's) on arrays made by
    ``evaluation_arrays``."""
    was_training = model.training
    model.eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device)
        return model.predict_depth(x).float().cpu().numpy()

    try:
        return eigen_evaluate(
            predict, rgb, depth, crop=crop, batch_size=batch_size, protocol=protocol
        )
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# The whole job
# --------------------------------------------------------------------------------------------


def _dataset_kwargs(cfg: TrainConfig, split: str) -> dict[str, Any]:
    """The synthetic generator's arguments for ``split`` (open_dataset ignores them for files)."""
    h, w = cfg.synthetic_size or cfg.input_size or INPUT_SIZES["nyu"]
    n = cfg.synthetic_train if split == "train" else cfg.synthetic_test
    return {"n": n, "seed": cfg.seed * 2 + (split == "test"), "height": h, "width": w,
            "kitti_split": cfg.kitti_split}  # fmt: skip


def training_and_validation(cfg: TrainConfig, warn: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """The training set, the validation set and what config.json records of the split.

    By default ``cfg.val_split`` of the training scenes (whole scenes; files where a dataset
    has none) are held out, chosen from ``cfg.seed``; ``cfg.val_data`` validates on another
    source instead, on its ``cfg.val_split_name`` split (``test`` is allowed, with a warning).
    """
    base = open_dataset(cfg.data, "train", **_dataset_kwargs(cfg, "train"))
    if cfg.val_data:
        split = _check_split_name(cfg.val_split_name)
        val = open_dataset(cfg.val_data, split, **_dataset_kwargs(cfg, split))
        if len(val) == 0:
            raise TrainingError(f"the validation set {cfg.val_data} ({split}) is empty")
        if split == "test" and warn is not None:
            warn(
                f"warning: validating on the test split of {cfg.val_data}: best.pt is chosen on "
                f"those images, so numbers measured on them are not held-out test numbers"
            )
        record = {"source": cfg.val_data, "split": split, "val_images": len(val)}
        return base, val, record
    held = split_by_scene(base, cfg.val_split, cfg.seed)
    train = Subset(base, held.train, "train")
    val = Subset(base, held.val, f"validation {cfg.val_split:g}")
    return train, val, {"source": f"{cfg.data} (train)", "val_split": cfg.val_split,
                        **held.record()}  # fmt: skip


def _check_split_name(split: str) -> str:
    if split not in ("train", "test"):
        raise TrainingError(f"--val-split-name {split!r}: choose train or test")
    return split


def test_set_for(cfg: TrainConfig, train_name: str, validation: dict[str, Any]) -> tuple[Any, str]:
    """The test split that scores best.pt at the end, or None and why there is none
    (``train_name``: the training dataset's name; a format without splits gives the same)."""
    test = open_dataset(cfg.data, "test", **_dataset_kwargs(cfg, "test"))
    if test.name == train_name:
        return None, f"{cfg.data} has no separate test split"
    if validation.get("source") == cfg.data and validation.get("split") == "test":
        return test, "the test split also chose best.pt (--val-split-name test)"
    return test, ""


INPUT_SIZES = {"nyu": (480, 640), "kitti": (384, 1248)}  # KITTI's 375x1242, to multiples of 32


def adopt_data_conventions(cfg: TrainConfig, depth_kind: str) -> str:
    """The data's conventions where the config leaves them open: on KITTI the model learns
    80 / depth over 1..80 m (the variant recorded in every checkpoint) at 384x1248; returns
    the protocol that validates and tests it (NYU's Eigen, or KITTI's Garg crop)."""
    if depth_kind == "kitti" and not cfg.variant:
        cfg.variant = preset("default", "kitti").to_dict()
    if cfg.input_size is None:
        cfg.input_size = INPUT_SIZES[depth_kind]
    cfg.extra["protocol"] = PROTOCOL_OF[depth_kind]
    return PROTOCOL_OF[depth_kind]


def build_model(cfg: TrainConfig) -> DenseDepth:
    """The network the config describes, with its encoder weights (never downloaded)."""
    weights = None if cfg.weights in ("none", "") else cfg.weights
    variant = ModelVariant.from_dict(cfg.variant)
    return DenseDepth(cfg.backbone, cfg.decoder_width, weights=weights, variant=variant)


def checkpoint_dict(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    state: LoopState,
    cfg: TrainConfig,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint layout of ``densedepth.checkpoint``."""
    return {
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "batch_in_epoch": state.batch_in_epoch,
        "config": cfg.to_dict(),
        "metrics": metrics,
    }


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


class Checkpoints:
    """``last.pt`` and ``best.pt`` of a run, written by rank 0 only; a model whose weights are
    not all finite is never saved, and errors name the last checkpoint that was."""

    def __init__(self, out: Path, is_main: bool) -> None:
        self.last, self.best = out / "last.pt", out / "best.pt"
        self.is_main = is_main
        self.last_good: tuple[Path, int] | None = None

    def kept(self) -> str:
        """What the user still has, for an error message."""
        if self.last_good is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint {self.last_good[0]} (step {self.last_good[1]}) is kept"

    def save_last(self, make: Callable[[], dict[str, Any]]) -> None:
        """Write ``last.pt`` from ``make()`` (``checkpoint_dict`` layout; made on rank 0 only)
        unless a weight is not finite."""
        if not self.is_main:
            return
        ckpt = make()
        bad = first_nonfinite(ckpt["model"])
        if bad:
            raise TrainingError(
                f"the weights became non-finite ({bad}) by step {ckpt['step']}; not saved, "
                f"{self.kept()}; lower --lr or check the data"
            )
        self.last_good = (save_checkpoint(self.last, ckpt), int(ckpt["step"]))

    def save_best(self, make: Callable[[], dict[str, Any]]) -> None:
        if self.is_main:
            save_checkpoint(self.best, make())


class TrainingLog:
    """The progress bar, TensorBoard scalars, history.jsonl and the images-per-second clock;
    ``on_step`` is the ``StepHook`` of ``train_one_epoch``."""

    def __init__(
        self, cfg: TrainConfig, console: Console, info: DistInfo, total: int, done: int
    ) -> None:
        out = Path(cfg.out)
        self.cfg, self.console, self.world = cfg, console, info.world
        self.writer = _tensorboard(out) if info.is_main else None
        self.history = out / "history.jsonl"
        self.images, self.seconds = 0, 0.0
        self.t_step = time.perf_counter()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[ips]:.1f} img/s"),
            TimeRemainingColumn(),
            console=console,
            disable=not (console.is_terminal and info.is_main),
        )
        self.task = self.progress.add_task(cfg.backbone, total=total, completed=done,
                                           loss=0.0, ips=0.0)  # fmt: skip
        self.loss_terms: dict[str, float] = {}  # the loss's last terms, for TensorBoard

    @property
    def img_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    def restart_clock(self) -> None:
        """Time from now (a new epoch's loader starts its workers)."""
        self.t_step = time.perf_counter()

    def on_step(self, event: StepEvent) -> None:
        now = time.perf_counter()
        self.images += event.images * self.world
        self.seconds += now - self.t_step
        self.t_step = now
        self.progress.update(self.task, completed=event.step, loss=event.loss, ips=self.img_per_s)
        if self.writer is not None and event.step % self.cfg.log_every == 0:
            self.writer.add_scalar("train/loss", event.loss, event.step)
            for k, v in self.loss_terms.items():
                self.writer.add_scalar(f"train/{k}", v, event.step)

    def epoch(self, metrics: dict[str, Any]) -> None:
        _log_epoch(self.console, self.cfg, metrics, self.img_per_s, self.writer, self.history)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def fit(cfg: TrainConfig, resume: bool = False, console: Console | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says; returns a summary (steps, img/s, best metrics, paths) and the
    trained ``model`` (this rank's copy). The writing rank holds ``--out``'s lock throughout:
    a second run on the same folder is refused in one line (``OutputLock``)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return _fit(cfg, resume, console)
    why = parent_problem(Path(cfg.out))
    if why:  # before the lock, which is made beside --out
        raise TrainingError(f"output folder {cfg.out} is not writable: {why}")
    with OutputLock(Path(cfg.out), "train"):
        return _fit(cfg, resume, console)


def _fit(cfg: TrainConfig, resume: bool, console: Console | None) -> dict[str, Any]:
    console = console or Console()
    device, info, precision, per_rank = _setup_device(cfg)
    out = Path(cfg.out)
    ckpts = Checkpoints(out, info.is_main)
    warn = (lambda line: console.print(line, soft_wrap=True)) if info.is_main else None
    train_data, val_set, cfg.validation = training_and_validation(cfg, warn)
    train_name = getattr(getattr(train_data, "base", train_data), "name", "")
    test_set, test_note = test_set_for(cfg, train_name, cfg.validation)
    protocol = adopt_data_conventions(cfg, getattr(train_data, "depth_kind", "nyu"))

    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), amsgrad=cfg.amsgrad
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scales_loss)
    state, best = LoopState(), {}
    if resume:
        state, best = _resume(ckpts.last, cfg, model, optimizer, scaler)
        console.print(f"resumed {ckpts.last} at step {state.step} (epoch {state.epoch}, "
                      f"{state.batch_in_epoch} batches into it)", soft_wrap=True)  # fmt: skip
    if info.is_main:
        _prepare_out(out, resume)
        cfg.save(out / "config.json")
        console.print(f"precision {precision.name}: {precision.why}", soft_wrap=True)
    if ckpts.last.exists():
        ckpts.last_good = (ckpts.last, state.step)
    model = _distribute(model.to(device, memory_format=precision.memory_format), device, info)

    train_set = TorchDepthDataset(train_data, cfg.input_size, train=True, seed=cfg.seed)
    val_rgb, val_depth, val_crop = evaluation_arrays(val_set, cfg.input_size, cfg.val_samples)
    sampler = EpochSampler(len(train_set), cfg.seed, info.rank, info.world)
    loss_fn = DepthLoss(max_val=_unwrap(model).variant.depth.target_range[1])
    steps_per_epoch = math.ceil(len(sampler) / per_rank)
    total = min(steps_per_epoch * cfg.epochs, cfg.max_steps or steps_per_epoch * cfg.epochs)
    log = TrainingLog(cfg, console, info, total, state.step)

    def checkpoint(metrics: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        return lambda: checkpoint_dict(model, optimizer, scaler, state, cfg, metrics)

    def on_step(event: StepEvent) -> bool:
        log.loss_terms = loss_fn.last_terms
        log.on_step(event)
        if cfg.checkpoint_every and event.step % cfg.checkpoint_every == 0:
            ckpts.save_last(checkpoint({"loss": event.loss}))
        return bool(cfg.max_steps and event.step >= cfg.max_steps)

    stopped = False
    with log.progress, stop_on_signals() as signalled:
        while state.epoch < cfg.epochs and not stopped:
            train_set.set_epoch(state.epoch)
            sampler.set_epoch(state.epoch, skip=state.batch_in_epoch * per_rank)
            loader = DataLoader(train_set, batch_size=per_rank, sampler=sampler,
                                num_workers=cfg.workers, pin_memory=device.type == "cuda",
                                persistent_workers=False)  # fmt: skip
            log.restart_clock()
            try:
                finished = train_one_epoch(
                    model, loader, optimizer, loss_fn, state, device, scaler, precision, on_step,
                    lambda: signalled["stop"],
                )  # fmt: skip
            except NonFiniteLoss as exc:
                raise TrainingError(
                    f"loss became {exc.value} at step {state.step + 1} (epoch {state.epoch}); "
                    f"stopped without saving it, {ckpts.kept()}; lower --lr or check the data"
                ) from None
            if signalled["stop"]:
                ckpts.save_last(checkpoint({}))
                what = "terminated" if signalled["stop"] == signal.SIGTERM else "interrupted"
                raise TrainingInterrupted(
                    f"{what} at step {state.step}; saved {ckpts.last}, continue with --resume",
                    signalled["stop"],
                )
            if not finished and state.batch_in_epoch < steps_per_epoch:  # stopped mid-epoch
                stopped = True
            else:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            with suppressed():  # the training bar is on screen
                metrics = _validate_main(
                    model, val_rgb, val_depth, val_crop, device, info, protocol
                )
            metrics.update(epoch=state.epoch, step=state.step)
            if info.is_main:
                log.epoch(metrics)
                ckpts.save_last(checkpoint(metrics))
                if not best or metrics["delta1"] >= best.get("delta1", -1):
                    best = metrics
                    ckpts.save_best(checkpoint(metrics))
            stopped = stopped or bool(cfg.max_steps and state.step >= cfg.max_steps)
    log.close()
    test_metrics = _test_best(cfg, ckpts.best, test_set, test_note, device, console, info, protocol)
    summary = {
        "steps": state.step,
        "epochs": state.epoch,
        "img_per_s": log.img_per_s,
        "train_seconds": log.seconds,
        "best": best,
        "validation": {**cfg.validation, "best": best},
        "test": test_metrics,
        "last": str(ckpts.last),
        "best_path": str(ckpts.best),
        "world": info.world,
        "per_rank_batch": per_rank,
        "precision": precision.name,
    }
    if info.is_main:
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    return {**summary, "model": _unwrap(model)}


def _setup_device(cfg: TrainConfig) -> tuple[torch.device, DistInfo, Precision, int]:
    """(device, ranks, precision, this rank's batch); checks that the global batch divides
    and records the precision ``cfg.precision`` resolved to."""
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
    return device, info, precision, per_rank


def _distribute(model: torch.nn.Module, device: torch.device, info: DistInfo) -> torch.nn.Module:
    """Under torchrun: BatchNorm over the global batch, then DistributedDataParallel."""
    if info.world == 1:
        return model
    model = sync_batchnorm(model, device)  # statistics of the global batch, not the rank's
    ddp_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ddp_ids)


def _test_best(
    cfg: TrainConfig,
    best_path: Path,
    test_set: Any,
    test_note: str,
    device: torch.device,
    console: Console,
    info: DistInfo,
    protocol: str,
) -> dict[str, Any]:
    """One test score of best.pt (rank 0) under ``protocol``, or why there is none."""
    if test_set is None:
        return {"skipped": test_note}
    if not (info.is_main and best_path.exists()):
        return {}
    best_model = model_from_checkpoint(load_checkpoint(best_path)).to(device)
    rgb, depth, crop = evaluation_arrays(test_set, cfg.input_size, cfg.test_samples)
    metrics = {**validate(best_model, rgb, depth, crop, device, protocol=protocol),
               "data": test_set.name}  # fmt: skip
    if test_note:
        metrics["note"] = test_note
    console.print(
        f"{cfg.backbone} best.pt on the test split ({test_set.name}): d1 "
        f"{metrics['delta1']:.3f} rel {metrics['rel']:.3f} rms "
        f"{metrics['rms']:.3f} log10 {metrics['log10']:.3f}",
        soft_wrap=True,
    )
    return metrics


def _validate_main(
    model: torch.nn.Module,
    rgb: np.ndarray,
    depth: np.ndarray,
    crop: tuple[int, int, int, int] | None,
    device: torch.device,
    info: DistInfo,
    protocol: str,
) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if info.is_main:
        metrics = validate(_unwrap(model), rgb, depth, crop, device, protocol=protocol)
    if info.world > 1:
        dist.barrier()
    return metrics


def _resume(
    path: Path,
    cfg: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> tuple[LoopState, dict[str, Any]]:
    if not path.exists():
        raise TrainingError(f"--resume: {path} does not exist; start without --resume")
    ckpt = load_checkpoint(path)
    theirs = ckpt["config"].get("backbone")
    if theirs != cfg.backbone:
        raise TrainingError(
            f"--resume: {path} is a {theirs} run but --backbone {cfg.backbone} was given"
        )

    def size(v: Any) -> str:
        return "x".join(map(str, v)) if v else "the data's default"

    def same_data(a: Any, b: Any) -> bool:
        return a == b or (Path(str(a)).exists() and Path(str(a)).resolve() == Path(b).resolve())

    # (what, option, checkpoint's, given, shown as, the same): the run's other settings may
    # change (--max-steps, --epochs, ...), these would make it another run
    old = ckpt["config"]
    checks = [
        ("input size", "--input-size", old.get("input_size"), cfg.input_size, size,
         lambda a, b: list(a or []) == list(b or [])),
        ("dataset", "--data", old.get("data"), cfg.data, repr, same_data),
        ("decoder width", "--decoder-width", old.get("decoder_width"), cfg.decoder_width,
         lambda v: f"{float(v):g}", lambda a, b: float(a) == float(b)),
        ("learning rate", "--lr", old.get("lr"), cfg.lr, lambda v: f"{float(v):g}",
         lambda a, b: float(a) == float(b)),
    ]  # fmt: skip
    differ = [
        f"{what} differs: checkpoint {show(theirs)}, {flag} {show(given)}"
        for what, flag, theirs, given, show, same in checks
        if theirs is not None and not same(theirs, given)
    ]
    if differ:
        raise TrainingError(
            f"--resume: {'; '.join(differ)}; pass the run's own options to continue {path}, "
            f"or train into another --out"
        )
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    state = LoopState(int(ckpt["epoch"]), int(ckpt["step"]), int(ckpt.get("batch_in_epoch", 0)))
    best_path = path.with_name("best.pt")
    best = load_checkpoint(best_path).get("metrics", {}) if best_path.exists() else {}
    return state, best


def _prepare_out(out: Path, resume: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"output folder {out} is not writable: {exc.strerror}") from None
    if not resume and (out / "last.pt").exists():
        raise TrainingError(
            f"{out} already holds a run (last.pt); pass --resume to continue it or choose "
            f"another --out"
        )


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: scalars are optional
        return None
    return SummaryWriter(str(out / "tb"))


def _log_epoch(
    console: Console,
    cfg: TrainConfig,
    metrics: dict[str, Any],
    ips: float,
    writer: Any,
    history: Path,
) -> None:
    console.print(
        f"{cfg.backbone} epoch {metrics['epoch']} step {metrics['step']}: "
        f"d1 {metrics['delta1']:.3f} rel {metrics['rel']:.3f} rms {metrics['rms']:.3f} "
        f"log10 {metrics['log10']:.3f} ({ips:.1f} img/s)",
        soft_wrap=True,
    )
    if writer is not None:
        for k in METRIC_KEYS:
            writer.add_scalar(f"val/{k}", metrics[k], metrics["step"])
    with open(history, "a") as f:
        precision = cfg.extra.get("precision", {}).get("used", "fp32")
        f.write(json.dumps({**metrics, "img_per_s": ips, "precision": precision}) + "\n")

"""Training: plain ``train_one_epoch`` / ``validate`` functions and ``fit`` that runs a whole job.

``fit`` resumes at the exact optimiser step it stopped at: data order comes from
``(seed, epoch)`` and augmentation from ``(seed, epoch, index)``, and ``last.pt`` records how
many batches of the current epoch are done, so a run killed after a checkpoint loses only the
steps since then, and a resumed CPU run ends with the same weights as an uninterrupted one.
Rank 0 alone writes ``last.pt`` / ``best.pt`` (``Checkpoints``), config.json, history.jsonl,
TensorBoard scalars (``TrainingLog``) and summary.json.

What the job opens comes from ``train.data``; its processes (torchrun ranks, each rank's
device, precision and batch, the epoch's shard, DDP with BatchNorm over the global batch) from
``train.distributed``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from densedepth.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from densedepth.depth import depth_to_target
from densedepth.evaluation import evaluation_arrays
from densedepth.loss import DepthLoss
from densedepth.metrics import METRIC_KEYS, eigen_evaluate
from densedepth.model import DenseDepth
from densedepth.precision import Precision
from densedepth.util.errors import DenseDepthError
from densedepth.util.outputs import OutputLock, parent_problem, write_text_atomic
from densedepth.util.progress import suppressed
from densedepth.util.signals import stop_on_signals
from densedepth.variant import ModelVariant
from train.config import TrainConfig
from train.data import JobData, open_job_data
from train.dataset import TorchDepthDataset
from train.distributed import DistInfo, EpochSampler, RankSetup, distribute, setup_device, unwrap
from train.errors import TrainingError


class TrainingInterrupted(DenseDepthError):
    """Ctrl-C or SIGTERM (``signum``): the state was saved; ``--resume`` continues."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


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
    depth_range = unwrap(model).variant.depth
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
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "batch_in_epoch": state.batch_in_epoch,
        "config": cfg.to_dict(),
        "metrics": metrics,
    }


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
    """``fit`` once ``--out`` is checked and locked: set up this rank, open the data, build
    (or resume) the model, train the epochs, test best.pt and write summary.json."""
    console = console or Console()
    ranks = setup_device(cfg)
    out = Path(cfg.out)
    ckpts = Checkpoints(out, ranks.info.is_main)
    warn = (lambda line: console.print(line, soft_wrap=True)) if ranks.info.is_main else None
    data = open_job_data(cfg, warn)
    model, optimizer, scaler = _new_model(cfg, ranks)
    state, best = LoopState(), {}
    if resume:
        state, best = _resume(ckpts.last, cfg, model, optimizer, scaler)
        console.print(f"resumed {ckpts.last} at step {state.step} (epoch {state.epoch}, "
                      f"{state.batch_in_epoch} batches into it)", soft_wrap=True)  # fmt: skip
    if ranks.info.is_main:
        _start_out(out, cfg, resume, ranks.precision, console)
    if ckpts.last.exists():
        ckpts.last_good = (ckpts.last, state.step)
    model = model.to(ranks.device, memory_format=ranks.precision.memory_format)
    model = distribute(model, ranks.device, ranks.info)
    job = _Job(cfg, console, ranks, ckpts, data, model, optimizer, scaler, state, best)
    epochs = _Epochs(job)
    epochs.run()
    summary = _summary(job, epochs.log, _test_best(job))
    if ranks.info.is_main:
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    return {**summary, "model": unwrap(model)}


def _new_model(
    cfg: TrainConfig, ranks: RankSetup
) -> tuple[DenseDepth, torch.optim.Optimizer, torch.amp.GradScaler]:
    """The network (initialised from ``cfg.seed``), its Adam optimiser and the loss scaler
    this rank's precision needs (a no-op unless it scales the loss)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), amsgrad=cfg.amsgrad
    )
    scaler = torch.amp.GradScaler(ranks.device.type, enabled=ranks.precision.scales_loss)
    return model, optimizer, scaler


def _start_out(
    out: Path, cfg: TrainConfig, resume: bool, precision: Precision, console: Console
) -> None:
    """(Rank 0.) Make ``out`` ready for the run, write its config.json and say the precision."""
    _prepare_out(out, resume)
    cfg.save(out / "config.json")
    console.print(f"precision {precision.name}: {precision.why}", soft_wrap=True)


@dataclass
class _Job:
    """What ``_fit``'s steps share: the settings, this rank, the checkpoints, the data, and the
    model (DDP-wrapped under torchrun) with its optimiser, loss scaler and place in the run."""

    cfg: TrainConfig
    console: Console
    ranks: RankSetup
    ckpts: Checkpoints
    data: JobData
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    state: LoopState
    best: dict[str, Any]  # the best validation metrics so far

    def checkpoint(self, metrics: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        """What ``Checkpoints`` saves, made when saved: the state at that time, ``metrics``."""
        return lambda: checkpoint_dict(
            self.model, self.optimizer, self.scaler, self.state, self.cfg, metrics
        )


class _Epochs:
    """The epochs of a job: each trains this rank's shard of the epoch (from where the run
    stands), then rank 0 validates, logs and saves ``last.pt`` (and ``best.pt`` when ``delta1``
    is not worse). Stops after ``cfg.epochs``, at ``cfg.max_steps``, on a non-finite loss
    (``TrainingError``) or on Ctrl-C / SIGTERM (saved, then ``TrainingInterrupted``)."""

    def __init__(self, job: _Job) -> None:
        cfg, info = job.cfg, job.ranks.info
        self.job = job
        self.train_set = TorchDepthDataset(job.data.train, cfg.input_size, train=True,
                                           seed=cfg.seed)  # fmt: skip
        self.val = evaluation_arrays(job.data.val, cfg.input_size, cfg.val_samples)
        self.sampler = EpochSampler(len(self.train_set), cfg.seed, info.rank, info.world)
        self.loss_fn = DepthLoss(max_val=unwrap(job.model).variant.depth.target_range[1])
        self.steps_per_epoch = math.ceil(len(self.sampler) / job.ranks.per_rank)
        all_steps = self.steps_per_epoch * cfg.epochs
        total = min(all_steps, cfg.max_steps or all_steps)
        self.log = TrainingLog(cfg, job.console, info, total, job.state.step)

    def run(self) -> None:
        """Train, validate and checkpoint epoch after epoch until the run is done or stops."""
        cfg, state, stopped = self.job.cfg, self.job.state, False
        with self.log.progress, stop_on_signals() as signalled:
            while state.epoch < cfg.epochs and not stopped:
                finished = self._train_epoch(lambda: signalled["stop"])
                if signalled["stop"]:
                    self._save_and_stop(signalled["stop"])
                stopped = not finished and state.batch_in_epoch < self.steps_per_epoch
                if not stopped:  # the epoch is done (not stopped mid-epoch)
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                self._validate_and_save()
                stopped = stopped or bool(cfg.max_steps and state.step >= cfg.max_steps)
        self.log.close()

    def _train_epoch(self, should_stop: Callable[[], Any]) -> bool:
        """The rest of the current epoch; False when stopped early (``train_one_epoch``)."""
        job, per_rank = self.job, self.job.ranks.per_rank
        state, device = job.state, job.ranks.device
        self.train_set.set_epoch(state.epoch)
        self.sampler.set_epoch(state.epoch, skip=state.batch_in_epoch * per_rank)
        loader = DataLoader(self.train_set, batch_size=per_rank, sampler=self.sampler,
                            num_workers=job.cfg.workers, pin_memory=device.type == "cuda",
                            persistent_workers=False)  # fmt: skip
        self.log.restart_clock()
        try:
            return train_one_epoch(
                job.model, loader, job.optimizer, self.loss_fn, state, device, job.scaler,
                job.ranks.precision, self._on_step, should_stop,
            )  # fmt: skip
        except NonFiniteLoss as exc:
            raise TrainingError(
                f"loss became {exc.value} at step {state.step + 1} (epoch {state.epoch}); "
                f"stopped without saving it, {job.ckpts.kept()}; lower --lr or check the data"
            ) from None

    def _on_step(self, event: StepEvent) -> bool:
        """The ``StepHook``: log the step, save ``last.pt`` every ``cfg.checkpoint_every``
        steps, and stop at ``cfg.max_steps``."""
        job = self.job
        self.log.loss_terms = self.loss_fn.last_terms
        self.log.on_step(event)
        if job.cfg.checkpoint_every and event.step % job.cfg.checkpoint_every == 0:
            job.ckpts.save_last(job.checkpoint({"loss": event.loss}))
        return bool(job.cfg.max_steps and event.step >= job.cfg.max_steps)

    def _save_and_stop(self, signum: int) -> None:
        """Save ``last.pt`` where the run stands and raise ``TrainingInterrupted``."""
        ckpts, step = self.job.ckpts, self.job.state.step
        ckpts.save_last(self.job.checkpoint({}))
        what = "terminated" if signum == signal.SIGTERM else "interrupted"
        raise TrainingInterrupted(
            f"{what} at step {step}; saved {ckpts.last}, continue with --resume", signum
        )

    def _validate_and_save(self) -> None:
        """Validate (rank 0; the others wait), log the metrics, save ``last.pt`` with them and
        ``best.pt`` when ``delta1`` is not worse than the best so far."""
        job, ranks = self.job, self.job.ranks
        with suppressed():  # the training bar is on screen
            metrics = _validate_main(
                job.model, *self.val, ranks.device, ranks.info, job.data.protocol
            )
        metrics.update(epoch=job.state.epoch, step=job.state.step)
        if ranks.info.is_main:
            self.log.epoch(metrics)
            job.ckpts.save_last(job.checkpoint(metrics))
            if not job.best or metrics["delta1"] >= job.best.get("delta1", -1):
                job.best = metrics
                job.ckpts.save_best(job.checkpoint(metrics))


def _summary(job: _Job, log: TrainingLog, test: dict[str, Any]) -> dict[str, Any]:
    """What summary.json records of the run (``fit`` returns it with the model)."""
    return {
        "steps": job.state.step,
        "epochs": job.state.epoch,
        "img_per_s": log.img_per_s,
        "train_seconds": log.seconds,
        "best": job.best,
        "validation": {**job.cfg.validation, "best": job.best},
        "test": test,
        "last": str(job.ckpts.last),
        "best_path": str(job.ckpts.best),
        "world": job.ranks.info.world,
        "per_rank_batch": job.ranks.per_rank,
        "precision": job.ranks.precision.name,
    }


def _test_best(job: _Job) -> dict[str, Any]:
    """One test score of best.pt (rank 0) under the job's protocol, or why there is none."""
    cfg, data, device = job.cfg, job.data, job.ranks.device
    if data.test is None:
        return {"skipped": data.test_note}
    if not (job.ranks.info.is_main and job.ckpts.best.exists()):
        return {}
    best_model = model_from_checkpoint(load_checkpoint(job.ckpts.best)).to(device)
    rgb, depth, crop = evaluation_arrays(data.test, cfg.input_size, cfg.test_samples)
    metrics = {**validate(best_model, rgb, depth, crop, device, protocol=data.protocol),
               "data": data.test.name}  # fmt: skip
    if data.test_note:
        metrics["note"] = data.test_note
    job.console.print(
        f"{cfg.backbone} best.pt on the test split ({data.test.name}): d1 "
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
        metrics = validate(unwrap(model), rgb, depth, crop, device, protocol=protocol)
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
        ("model variant", "--variant", old.get("variant"), cfg.variant, variant_text,
         lambda a, b: ModelVariant.from_dict(a) == ModelVariant.from_dict(b)),
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


def variant_text(v: dict[str, Any] | None) -> str:
    """``dla (half_pixel resize)``: a recorded variant as a resume error names it."""
    variant = ModelVariant.from_dict(v)
    return f"{variant.preset} ({variant.resize} resize)"


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

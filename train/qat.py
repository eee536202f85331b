"""Quantization-aware fine-tuning (QAT): ``train --qat --resume-from CHECKPOINT --steps N``.

The checkpoint's model gets int8 fake quantization (``densedepth.fake_quant``: the TensorRT
flavour's format), its activation ranges are calibrated ("max", or TensorRT's "entropy") on
training images and stay fixed, and it is
fine-tuned for N steps with the paper's loss and recipe (Adam, flip + channel swap) on the
checkpoint's own training split (its validation scenes stay held out). The result is a
checkpoint (``qat.pt``) that ``export`` turns into a TensorRT Q/DQ ONNX.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch.utils.data import DataLoader

from densedepth.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from densedepth.fake_quant import CALIBRATION_METHODS, calibrate, insert_fake_quant
from densedepth.loss import DepthLoss
from densedepth.precision import resolve_precision
from densedepth.util.errors import DenseDepthError
from densedepth.util.outputs import claim_output
from train.config import TrainConfig
from train.data import adopt_data_conventions, training_and_validation
from train.dataset import TorchDepthDataset
from train.loop import LoopState, train_one_epoch


def run_qat(
    checkpoint: str | Path,
    out: str | Path,
    steps: int,
    calib_images: int = 32,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    console: Console | None = None,
    method: str = "max",
) -> dict[str, Any]:
    """Fine-tune ``checkpoint`` with fake INT8 for ``steps`` steps, its activation ranges
    calibrated by ``method`` (max | entropy) first; writes ``out`` (a .pt) and returns its
    record (steps, quantized layers, calibration images and method, last loss)."""
    if steps < 1:
        raise DenseDepthError("--steps must be at least 1 for --qat")
    if method not in CALIBRATION_METHODS:
        raise DenseDepthError(f"--qat-calib {method!r}: choose {' or '.join(CALIBRATION_METHODS)}")
    out = Path(out)
    ckpt = load_checkpoint(checkpoint)
    if ckpt.get("qat"):
        raise DenseDepthError(
            f"{checkpoint} is already quantization-aware; resume from a float checkpoint"
        )
    claim_output(out)
    cfg = TrainConfig.from_dict(ckpt["config"])
    cfg.lr = cfg.lr if lr is None else lr
    cfg.batch_size = cfg.batch_size if batch_size is None else batch_size
    train_data, _, _ = training_and_validation(cfg)  # the same split; validation stays out
    adopt_data_conventions(cfg, getattr(train_data, "depth_kind", "nyu"))
    model = model_from_checkpoint(ckpt)
    quantized = insert_fake_quant(model)
    t0 = time.perf_counter()
    train_set = TorchDepthDataset(train_data, cfg.input_size, train=True, seed=seed)
    calib_set = TorchDepthDataset(train_data, cfg.input_size, train=False)
    n_calib = min(calib_images, len(calib_set))
    batches = (
        torch.stack([calib_set[i][0] for i in range(j, min(j + 8, n_calib))])
        for j in range(0, n_calib, 8)
    )
    seen = calibrate(model, batches, method)
    losses = fine_tune(model, train_set, steps, cfg, seed)
    record = {
        "steps": steps,
        "quantized_convs": quantized,
        "calibration_images": seen,
        "calibration_method": method,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "resumed_from": str(checkpoint),
        "final_loss": losses[-1],
        "seconds": time.perf_counter() - t0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, {"model": model.state_dict(), "config": cfg.to_dict(), "qat": record,
                          "step": int(ckpt.get("step", 0)) + steps, "metrics": {}})  # fmt: skip
    (console or Console()).print(
        f"QAT: {quantized} convs fake-quantized, {method} ranges from {seen} training images, "
        f"{steps} steps (loss {losses[-1]:.4f}); saved {out}",
        soft_wrap=True,
    )
    return record


def fine_tune(
    model: torch.nn.Module, train_set: TorchDepthDataset, steps: int, cfg: TrainConfig, seed: int
) -> list[float]:
    """``steps`` Adam steps of the paper's loss on ``train_set`` (fp32 on the CPU: fake
    quantization is float arithmetic; a float model is the PTQ baseline at equal steps);
    returns each step's loss."""
    device = torch.device("cpu")
    precision = resolve_precision("fp32", device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss_fn = DepthLoss(max_val=model.variant.depth.target_range[1])
    state, losses = LoopState(), []
    generator = torch.Generator().manual_seed(seed)

    def on_step(event: Any) -> bool:
        losses.append(event.loss)
        return event.step >= steps

    while state.step < steps:
        train_set.set_epoch(state.epoch)
        loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True,
                            generator=generator, drop_last=False)  # fmt: skip
        train_one_epoch(model, loader, optimizer, loss_fn, state, device, scaler, precision,
                        on_step, lambda: False)  # fmt: skip
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    model.eval()
    return losses

"""PyTorch runner for DenseDepth checkpoints: eager fp32, eager bf16 (autocast, channels_last)
or ``torch.compile``d (TorchInductor; on a CPU it needs a C++ compiler)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from densedepth.checkpoint import model_from_checkpoint
from densedepth.depth import MAX_DEPTH, MIN_DEPTH, DepthRange, target_to_depth
from densedepth.device import resolve_device
from densedepth.errors import DenseDepthError
from densedepth.precision import resolve_precision
from densedepth.variant import check_input_size


class TorchRunner:
    """A checkpoint run by PyTorch: eager fp32 by default; ``precision`` 'bf16' (or 'auto')
    runs the network under autocast in channels_last, and ``compile`` through
    ``torch.compile`` (compiled here, on a first batch: ``compile_seconds``; the first other
    batch size compiles once more, with a symbolic batch that serves every later size)."""

    max_batch = None  # any batch runs in one call

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | torch.nn.Module,
        device: str = "auto",
        input_size: tuple[int, int] | None = None,
        threads: int = 0,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        """``input_size`` overrides the size the checkpoint was trained at (multiple of 32);
        ``threads`` is the runners' common argument (the CLI sets PyTorch's threads once);
        ``precision`` is one of densedepth.precision's (fp16 needs CUDA)."""
        self.torch_device = resolve_device(device)
        self.arith = resolve_precision(precision, self.torch_device)
        self.precision = self.arith.name
        self.weights_origin = ""
        if isinstance(checkpoint, torch.nn.Module):
            self.model = checkpoint
            self.name = f"torch:{getattr(checkpoint, 'backbone', 'model')}"
            size = getattr(checkpoint, "input_size", (480, 640))
        else:
            from densedepth.checkpoint import load_checkpoint, weights_origin

            ckpt = load_checkpoint(checkpoint)
            self.model = model_from_checkpoint(ckpt)
            self.weights_origin = weights_origin(ckpt).get("weights_origin", "")
            self.name = f"torch:{Path(checkpoint).name}"
            size = tuple(ckpt["config"].get("input_size", (480, 640)))
        if input_size is not None:
            check_input_size(*input_size)
            size = input_size
        self.model = self.model.to(self.torch_device, memory_format=self.arith.memory_format)
        self.model.eval()
        self.device = str(self.torch_device)
        self.input_shape = (1, 3, int(size[0]), int(size[1]))
        self.compile_seconds = 0.0
        if compile:
            self.name = self.name.replace("torch:", "torch.compile:", 1)
            self.model.compile()  # nn.Module.compile: in place, predict_depth goes through it
            t0 = time.perf_counter()
            self(np.zeros(self.input_shape, np.float32))  # compiles now, not in a timed run
            self.compile_seconds = time.perf_counter() - t0
        self.backbone = getattr(self.model, "backbone", "")
        self.decoder_width = float(getattr(self.model, "decoder_width", 1.0))
        variant = getattr(self.model, "variant", None)
        self.depth_range = (
            (variant.depth.min_depth, variant.depth.max_depth)
            if variant is not None
            else (MIN_DEPTH, MAX_DEPTH)
        )

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """RGB batch (N,3,H,W) float32 in [0,1] -> metres (N,1,H/2,W/2) float32."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise DenseDepthError(f"expected an RGB batch (N,3,H,W), got {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.torch_device)
        x = x.contiguous(memory_format=self.arith.memory_format)
        if self.arith.dtype is None:
            return self.model.predict_depth(x).float().cpu().numpy()
        with self.arith.autocast(self.torch_device):
            target = self.model(x)
        # the network in bf16/fp16, the reciprocal to metres in fp32
        return target_to_depth(target.float(), self.model.variant.depth).cpu().numpy()

    @torch.inference_mode()
    def predict_target(self, batch: np.ndarray) -> np.ndarray:
        """The network's raw reciprocal output (N,1,H/2,W/2) float32, before any conversion
        (the densedepth protocol converts it as the authors did)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.torch_device)
        x = x.contiguous(memory_format=self.arith.memory_format)
        if self.arith.dtype is None:
            return self.model(x).float().cpu().numpy()
        with self.arith.autocast(self.torch_device):
            return self.model(x).float().cpu().numpy()

    @property
    def depth_norm(self) -> DepthRange:
        """The numerator and valid range of the network's reciprocal target."""
        variant = getattr(self.model, "variant", None)
        return variant.depth if variant is not None else DepthRange()

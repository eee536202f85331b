"""PyTorch runner for DenseDepth checkpoints: eager fp32, eager bf16 (autocast, channels_last)
or ``torch.compile``d (TorchInductor; on a CPU it needs a C++ compiler)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densedepth.checkpoint import model_from_checkpoint
from densedepth.depth import DepthRange, target_to_depth
from densedepth.precision import resolve_precision
from densedepth.util.device import resolve_device
from densedepth.util.errors import DenseDepthError
from densedepth.variant import check_input_size
from engines.base import RunnerBase, model_info


class TorchRunner(RunnerBase):
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
        ``threads`` > 0 sets PyTorch's intra-op threads (``torch.set_num_threads``, for the
        whole process; ``self.threads`` is what PyTorch then runs with); ``precision`` is one
        of densedepth.precision's (fp16 needs CUDA)."""
        if threads < 0:
            raise DenseDepthError(f"threads must be 0 (the default) or more, not {threads}")
        self.torch_device = resolve_device(device)
        self.arith = resolve_precision(precision, self.torch_device)
        self.precision = self.arith.name
        if isinstance(checkpoint, torch.nn.Module):
            self.model = checkpoint
            self.name = f"torch:{getattr(checkpoint, 'backbone', 'model')}"
            variant = getattr(checkpoint, "variant", None)
            meta: dict[str, Any] = {
                "backbone": getattr(checkpoint, "backbone", ""),
                "decoder_width": getattr(checkpoint, "decoder_width", 1.0),
                "variant": variant.to_dict() if variant is not None else {},
            }
            size = getattr(checkpoint, "input_size", None) or (480, 640)
        else:
            from densedepth.checkpoint import checkpoint_meta, load_checkpoint

            ckpt = load_checkpoint(checkpoint)
            self.model = model_from_checkpoint(ckpt)
            self.name = f"torch:{Path(checkpoint).name}"
            meta = checkpoint_meta(ckpt)
            size = ckpt["config"].get("input_size") or (480, 640)
        if input_size is not None:
            check_input_size(*input_size)
            size = input_size
        if threads > 0:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.model = self.model.to(self.torch_device, memory_format=self.arith.memory_format)
        self.model.eval()
        self.device = str(self.torch_device)
        self.input_shape = (1, 3, int(size[0]), int(size[1]))
        self.info = model_info({**meta, "precision": self.precision, "input_size": size})
        self.compile_seconds = 0.0
        if compile:
            self.name = self.name.replace("torch:", "torch.compile:", 1)
            self.model.compile()  # nn.Module.compile: in place, predict_depth goes through it
            t0 = time.perf_counter()
            self(np.zeros(self.input_shape, np.float32))  # compiles now, not in a timed run
            self.compile_seconds = time.perf_counter() - t0

    def _release_resources(self) -> None:
        self.model = None  # the weights and any compiled code go with the last reference
        if self.torch_device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """RGB batch (N,3,H,W) float32 in [0,1] -> metres (N,1,H/2,W/2) float32."""
        self._check_open()
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise DenseDepthError(f"expected an RGB batch (N,3,H,W), got {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.torch_device)
        x = x.contiguous(memory_format=self.arith.memory_format)
        if self.arith.dtype is None:
            return self.model.predict_depth(x).float().cpu().numpy()
        with self.arith.autocast(self.torch_device):
            target = self.model(x)
        # the network in bf16/fp16, the reciprocal to metres in fp32
        return target_to_depth(target.float(), self.info.depth_norm).cpu().numpy()

    @torch.inference_mode()
    def predict_target(self, batch: np.ndarray) -> np.ndarray:
        """The network's raw reciprocal output (N,1,H/2,W/2) float32, before any conversion
        (the densedepth protocol converts it as the authors did)."""
        self._check_open()
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.torch_device)
        x = x.contiguous(memory_format=self.arith.memory_format)
        if self.arith.dtype is None:
            return self.model(x).float().cpu().numpy()
        with self.arith.autocast(self.torch_device):
            return self.model(x).float().cpu().numpy()

    @property
    def depth_norm(self) -> DepthRange:
        """The numerator and valid range of the network's reciprocal target."""
        return self.info.depth_norm

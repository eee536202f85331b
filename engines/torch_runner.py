"""PyTorch eager runner for DenseDepth checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from densedepth.checkpoint import model_from_checkpoint
from densedepth.depth import MAX_DEPTH, MIN_DEPTH
from densedepth.device import resolve_device
from densedepth.errors import DenseDepthError
from densedepth.variant import check_input_size


class TorchRunner:
    """A checkpoint run by PyTorch eager in float32 (``precision`` 'fp32')."""

    precision = "fp32"
    max_batch = None  # eager runs any batch in one call

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | torch.nn.Module,
        device: str = "auto",
        input_size: tuple[int, int] | None = None,
        threads: int = 0,
    ) -> None:
        """``input_size`` overrides the size the checkpoint was trained at (multiple of 32);
        ``threads`` is the runners' common argument (the CLI sets PyTorch's threads once)."""
        self.torch_device = resolve_device(device)
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
        self.model = self.model.to(self.torch_device).eval()
        self.device = str(self.torch_device)
        self.input_shape = (1, 3, int(size[0]), int(size[1]))
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
        return self.model.predict_depth(x).float().cpu().numpy()

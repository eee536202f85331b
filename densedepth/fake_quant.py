"""Fake INT8 quantization of a DenseDepth for quantization-aware fine-tuning (QAT).

The number format is the TensorRT flavour of ``export.quantize``: every Conv's input
quantized per tensor, symmetric int8 (scale = amax / 127, zero point 0, amax calibrated as
the largest magnitude seen, "max", or TensorRT's entropy threshold, "entropy"), its weight
per output channel (axis 0), symmetric int8; biases, BatchNorm, concatenations and the depth
conversion stay float. ``torch``'s own fake-quant ops carry the straight-through gradient and
export as ONNX QuantizeLinear / DequantizeLinear pairs (opset 13+), which TensorRT fuses into
INT8 convolutions.

Why not NVIDIA ModelOpt's torch quantization: its import needs the ``huggingface_hub`` /
``transformers`` plugins stack, not part of the ``tensorrt-quant`` extra; the format above is
what its ``INT8_DEFAULT_CFG`` writes for a Conv (per-tensor input, per-channel axis-0 weight).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densedepth.histogram import AbsHistogram, entropy_threshold

QMAX = 127  # symmetric int8: [-128, 127], scale = amax / 127
MIN_SCALE = 1e-8


class FakeQuantConv2d(nn.Module):
    """A Conv2d whose input and weight pass through int8 fake quantization.

    Modes: ``calibrating`` (float forward, the input's running absolute maximum recorded in
    ``input_amax``), then quantized. The weight scale follows the weight while training and is
    frozen into ``weight_scale`` by ``freeze`` (export needs constant scales).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self.register_buffer("input_amax", torch.zeros(()))
        self.register_buffer("weight_scale", torch.zeros(conv.out_channels))
        self.calibrating = False
        self.frozen = False

    def input_scale(self) -> Tensor:
        """The input's per-tensor scale (amax / 127)."""
        return (self.input_amax / QMAX).clamp(min=MIN_SCALE)

    def current_weight_scale(self) -> Tensor:
        """Per-output-channel scale of the weight as it is now (or as frozen)."""
        if self.frozen:
            return self.weight_scale
        w = self.conv.weight.detach()
        return (w.abs().amax(dim=(1, 2, 3)) / QMAX).clamp(min=MIN_SCALE)

    def freeze(self) -> None:
        """Fix the weight scale to the weight's present range (before export)."""
        self.weight_scale = self.current_weight_scale().clone()
        self.frozen = True

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        if self.calibrating:
            self.input_amax = torch.maximum(self.input_amax, x.detach().abs().max().float())
            return conv(x)
        xq = torch.fake_quantize_per_tensor_affine(x, self.input_scale(), 0, -QMAX - 1, QMAX)
        scale = self.current_weight_scale()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        wq = torch.fake_quantize_per_channel_affine(conv.weight, scale, zero, 0, -QMAX - 1, QMAX)
        return F.conv2d(xq, wq, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def insert_fake_quant(model: nn.Module) -> int:
    """Wrap every Conv2d of ``model`` in place; returns how many were wrapped."""
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Conv2d):
            setattr(model, name, FakeQuantConv2d(child))
            count += 1
        elif not isinstance(child, FakeQuantConv2d):
            count += insert_fake_quant(child)
    return count


def fake_quant_layers(model: nn.Module) -> list[FakeQuantConv2d]:
    """The wrapped convolutions, in module order."""
    return [m for m in model.modules() if isinstance(m, FakeQuantConv2d)]


CALIBRATION_METHODS = ("max", "entropy")


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[Tensor], method: str = "max") -> int:
    """Set each quantized input's amax from ``batches`` (float forwards, eval mode): ``max``,
    the largest magnitude seen; ``entropy``, TensorRT's entropy threshold of the |x| histogram
    (``densedepth.histogram``, the same arithmetic as the ONNX writers' ``entropy``; never
    above the largest magnitude). Returns the images seen. Refuses a model without fake
    quantization."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose max or entropy")
    layers = fake_quant_layers(model)
    if not layers:
        raise ValueError("the model has no fake-quantized layer; call insert_fake_quant first")
    was_training = model.training
    model.eval()
    histograms = [AbsHistogram() for _ in layers]
    hooks = []
    for layer, hist in zip(layers, histograms, strict=True):
        layer.calibrating = True
        layer.input_amax.zero_()
        if method == "entropy":
            hooks.append(layer.register_forward_pre_hook(_histogram_hook(hist)))
    seen = 0
    try:
        for x in batches:
            model(x)
            seen += int(x.shape[0])
    finally:
        for hook in hooks:
            hook.remove()
        for layer in layers:
            layer.calibrating = False
        model.train(was_training)
    if method == "entropy":
        for layer, hist in zip(layers, histograms, strict=True):
            if hist.counts.size:
                threshold, _ = entropy_threshold(hist.counts, hist.edges)
                layer.input_amax.clamp_(max=threshold)
    return seen


def _histogram_hook(hist: AbsHistogram) -> Any:
    def add(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        hist.add(args[0].detach().float().cpu().numpy())

    return add


def freeze(model: nn.Module) -> None:
    """Freeze every weight scale (call before exporting to ONNX)."""
    for layer in fake_quant_layers(model):
        layer.freeze()

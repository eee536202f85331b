"""Arithmetic precision of PyTorch training and eager inference: fp32, bf16 autocast with
channels_last, or fp16 autocast (with a GradScaler when training).

``auto`` picks what pays on this machine: fp16 on a CUDA GPU, bf16 on a CPU that multiplies
bf16 natively (AVX512-BF16 or AMX), fp32 otherwise. Losses and metrics stay in fp32: the
caller casts the network's output with ``.float()`` outside ``autocast()``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

from densedepth.util.cpu import native_bf16
from densedepth.util.errors import DenseDepthError

if TYPE_CHECKING:  # torch is imported when used: the CLI reads PRECISIONS without it
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """A resolved precision: its name, whether tensors go channels_last, and why it was chosen."""

    name: str  # fp32 | bf16 | fp16
    channels_last: bool = False
    why: str = ""

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: fp32, no autocast)."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def scales_loss(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
        return self.name == "fp16"

    def autocast(self, device: torch.device) -> AbstractContextManager:
        """The autocast region of the forward pass (a no-op for fp32)."""
        import torch

        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    @property
    def memory_format(self) -> torch.memory_format:
        """Where models and 4-D batches go: ``model.to(memory_format=...)``,
        ``x.contiguous(memory_format=...)`` (oneDNN's bf16 kernels want NHWC)."""
        import torch

        return torch.channels_last if self.channels_last else torch.contiguous_format

    def record(self) -> dict[str, object]:
        """What config.json keeps of it (``extra.precision``)."""
        return {"used": self.name, "channels_last": self.channels_last, "why": self.why}


def resolve_precision(asked: str, device: torch.device, cpuinfo: str | None = None) -> Precision:
    """``asked`` (one of PRECISIONS) made concrete for ``device``; one-line errors for
    combinations that cannot run (fp16 on a CPU, bf16 on a GPU without it)."""
    if asked not in PRECISIONS:
        raise DenseDepthError(f"unknown precision {asked!r}; use one of: {', '.join(PRECISIONS)}")
    cuda = device.type == "cuda"
    native = None if cuda else native_bf16(cpuinfo)
    if asked == "auto":
        if cuda:
            return Precision("fp16", why="auto: a CUDA GPU (fp16 autocast, loss scaling)")
        if native:
            why = f"auto: the CPU has {native} (bf16 autocast, channels_last)"
            return Precision("bf16", True, why)
        return Precision("fp32", why="auto: this CPU has neither AVX512-BF16 nor AMX")
    if asked == "fp32":
        return Precision("fp32", why="asked")
    if asked == "fp16":
        if not cuda:
            raise DenseDepthError(
                "--precision fp16 needs a CUDA GPU; on a CPU use bf16 (fast with AVX512-BF16 or "
                "AMX) or fp32"
            )
        return Precision("fp16", why="asked")
    if cuda:
        import torch

        if not torch.cuda.is_bf16_supported():
            raise DenseDepthError("--precision bf16: this GPU has no bf16; use fp16 or fp32")
        return Precision("bf16", why="asked")
    why = "asked" if native else (
        "asked; this CPU has neither AVX512-BF16 nor AMX, so bf16 is emulated and likely "
        "slower than fp32"
    )  # fmt: skip
    return Precision("bf16", True, why)

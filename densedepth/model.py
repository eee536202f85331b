"""DenseDepth: a DenseNet encoder and a bilinear-upsampling decoder (Alhashim & Wonka 2018).

The network takes RGB in [0, 1] (NCHW float; ImageNet normalisation happens inside) and returns
the paper's reciprocal depth target (``densedepth.depth``) at half the input resolution.
``DenseDepth.predict_depth`` returns metres instead.

Encoder contract (as segmentation_models_pytorch writes it): ``DenseNetEncoder.forward`` returns
five feature maps, highest resolution first, taken from torchvision's DenseNet by module NAME:

    name         stride  channels (densenet169 / densenet121 / densenet201)
    relu0        2       64
    pool0        4       64
    transition1  8       128
    transition2  16      256
    norm5        32      1664 / 1024 / 1920

The decoder is built from those channel counts only. Its four bilinear upsamplings are the
variant's ``resize``: to the skip's size with aligned corners (the paper's), or x2 with
half-pixel centres (the ``dla`` preset, which Jetson Orin's DLA runs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models import (
    DenseNet121_Weights,
    DenseNet169_Weights,
    DenseNet201_Weights,
    WeightsEnum,
)

from densedepth.depth import target_to_depth
from densedepth.util.errors import ModelError, WeightsNotFoundError
from densedepth.variant import DEFAULT, SIZE_MULTIPLE, ModelVariant, check_input_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SKIP_NAMES = ("relu0", "pool0", "transition1", "transition2", "norm5")
SKIP_STRIDES = (2, 4, 8, 16, 32)


@dataclass(frozen=True)
class BackboneSpec:
    """One row of the backbone registry."""

    builder: Callable[..., torchvision.models.DenseNet]
    weights: WeightsEnum
    skips: tuple[str, ...]
    channels: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def weights_file_name(self) -> str:
        """torchvision's file name for the ImageNet weights (as torch hub caches it)."""
        return self.weights.url.rsplit("/", 1)[-1]


BACKBONES: dict[str, BackboneSpec] = {
    "densenet169": BackboneSpec(
        torchvision.models.densenet169,
        DenseNet169_Weights.IMAGENET1K_V1,
        SKIP_NAMES,
        (64, 64, 128, 256, 1664),
        SKIP_STRIDES,
    ),
    "densenet121": BackboneSpec(
        torchvision.models.densenet121,
        DenseNet121_Weights.IMAGENET1K_V1,
        SKIP_NAMES,
        (64, 64, 128, 256, 1024),
        SKIP_STRIDES,
    ),
    "densenet201": BackboneSpec(  # the original code's is_twohundred option
        torchvision.models.densenet201,
        DenseNet201_Weights.IMAGENET1K_V1,
        SKIP_NAMES,
        (64, 64, 128, 256, 1920),
        SKIP_STRIDES,
    ),
}


def backbone_spec(name: str) -> BackboneSpec:
    """The registry row for ``name``; unknown names raise an error listing the valid ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        valid = ", ".join(BACKBONES)
        raise ModelError(f"unknown backbone {name!r}; choose one of: {valid}") from None


def feature_info(backbone: str) -> list[dict[str, object]]:
    """The encoder's skips as a table: module name, stride, channels; highest resolution first."""
    spec = backbone_spec(backbone)
    return [
        {"module": n, "stride": s, "channels": c}
        for n, s, c in zip(spec.skips, spec.strides, spec.channels, strict=True)
    ]


def check_decoder_width(backbone: str, decoder_width: float) -> None:
    """Raise a one-line error unless every decoder layer of ``backbone`` keeps >= 1 channel."""
    channels = backbone_spec(backbone).channels
    deepest, blocks = channels[-1], len(channels) - 1
    if decoder_width > 0 and int(deepest * decoder_width) // 2**blocks >= 1:
        return
    smallest = 2**blocks / deepest
    steps = [k / 1000 for k in range(1, 1001)]
    least = next(w for w in steps if w >= smallest and int(deepest * w) // 2**blocks >= 1)
    raise ModelError(
        f"decoder width {decoder_width:g} leaves a {backbone} decoder layer with no channels "
        f"(the last block has width x {deepest} / {2**blocks}); use at least {least:g}"
    )


# ---------------------------------------------------------------------------------------------
# Weights: never downloaded. An explicit file first, then torch hub's cache, else a clear error.
# ---------------------------------------------------------------------------------------------

# torchvision's published DenseNet files name BatchNorm/conv layers "norm.1" where the modules
# are now called "norm1"; torchvision remaps them the same way when it loads these files.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


OFFLINE_ENV = "DENSEDEPTH_OFFLINE"  # 1: never fetch weights (train --offline sets it)


def offline() -> bool:
    """Whether weights may not be fetched (``DENSEDEPTH_OFFLINE`` is 1 / true / yes / on)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def weights_url(backbone: str) -> str:
    """torchvision's URL of the ImageNet file for ``backbone``."""
    return backbone_spec(backbone).weights.url


def imagenet_weights_path(backbone: str) -> Path:
    """Where torch hub caches torchvision's ImageNet file for ``backbone``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights_url(backbone).rsplit("/", 1)[-1]


def resolve_weights_file(backbone: str, weights: str | os.PathLike[str]) -> Path:
    """Find the encoder weights: an explicit file, or for ``"imagenet"`` torch hub's cache,
    fetched there from torchvision's URL when missing (unless ``offline()``); a file in the
    cache is used only when its sha256 starts with the hash in its name (torch hub's rule)."""
    if str(weights) != "imagenet":
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights file {path} does not exist; pass an existing torchvision "
                f"{backbone} state dict, 'imagenet', or no weights to train from scratch"
            )
        return path
    from densedepth.util.download import DownloadError, Remote, check_file, fetch

    path = imagenet_weights_path(backbone)
    remote = Remote(weights_url(backbone), hash_in_name=True)
    if path.is_file():
        try:
            check_file(path, remote)
        except DownloadError as exc:
            raise WeightsNotFoundError(
                f"{path} is refused, not loaded: {exc}; move it away (the next run fetches "
                f"torchvision's file) or pass your own with --weights FILE"
            ) from None
        return path
    if offline():
        raise WeightsNotFoundError(
            f"ImageNet weights for {backbone} not found at {path} (torch hub cache under "
            f"$TORCH_HOME, now {os.environ.get('TORCH_HOME', 'unset')}) and fetching is off "
            f"(--offline / {OFFLINE_ENV}=1): copy {path.name} there, pass the file "
            f"explicitly, or train from scratch with --weights none"
        )
    try:
        fetched, _ = fetch(remote, path.parent)
    except DownloadError as exc:
        raise WeightsNotFoundError(
            f"ImageNet weights for {backbone}: {exc}; or copy {path.name} to {path.parent} "
            f"and pass --offline, or train from scratch with --weights none"
        ) from None
    return fetched


def load_encoder_state(path: Path, backbone: str) -> dict[str, Tensor]:
    """Read a torchvision DenseNet state dict (any key vintage) and keep the ``features.*`` keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; report one line
        raise WeightsNotFoundError(
            f"cannot read weights file {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsNotFoundError(f"weights file {path} does not hold a state dict")
    features = {}
    for key, value in state.items():
        key = _LEGACY_KEY.sub(r"\1\2", key)
        if key.startswith("features."):
            features[key] = value
    if not features:
        raise WeightsNotFoundError(
            f"weights file {path} has no 'features.*' keys; expected a torchvision {backbone} "
            f"state dict"
        )
    return features


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


class DenseNetEncoder(nn.Module):
    """torchvision DenseNet features; returns the skips named in the registry, /2 first."""

    def __init__(self, backbone: str = "densenet169") -> None:
        super().__init__()
        spec = backbone_spec(backbone)
        self.backbone = backbone
        self.features = spec.builder(weights=None).features
        names = [n for n, _ in self.features.named_children()]
        missing = [s for s in spec.skips if s not in names]
        if missing:
            raise ModelError(f"{backbone} has no modules named {missing}; it has {names}")
        self.skips = spec.skips
        self.channels = spec.channels
        self.strides = spec.strides
        self._last = max(names.index(s) for s in spec.skips)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32 (highest resolution first)."""
        out = []
        for i, (name, module) in enumerate(self.features.named_children()):
            x = module(x)
            if name in self.skips:
                out.append(x)
            if i == self._last:
                break
        return out

    def load_weights(self, path: Path) -> None:
        """Load a torchvision DenseNet state dict's ``features.*`` tensors (strict)."""
        state = load_encoder_state(path, self.backbone)
        own = self.state_dict()
        # The published files predate BatchNorm's num_batches_tracked counter; keep ours.
        for key in own:
            if key.endswith("num_batches_tracked"):
                state.setdefault(key, own[key])
        missing = sorted(set(own) - set(state))
        if missing:
            raise WeightsNotFoundError(
                f"weights file {path} is not a {self.backbone} state dict: {len(missing)} "
                f"encoder keys missing (e.g. {missing[0]})"
            )
        for key, value in own.items():
            if state[key].shape != value.shape:
                raise WeightsNotFoundError(
                    f"weights file {path} does not fit {self.backbone}: {key} has shape "
                    f"{tuple(state[key].shape)}, expected {tuple(value.shape)} (another backbone?)"
                )
        self.load_state_dict({k: state[k] for k in own}, strict=True)


class UpBlock(nn.Module):
    """Resize to the skip's size (bilinear), concatenate, two 3x3 convs with LeakyReLU 0.2
    (after convA only when ``leaky_after_conv_a``; the released Keras files have none there).

    ``resize`` (``densedepth.variant.RESIZE_MODES``): ``align_corners`` resizes to the skip's
    size with corner-aligned coordinates (the paper's; ONNX Resize given ``sizes``);
    ``half_pixel`` doubles with half-pixel centres (ONNX Resize with constant scales [1, 1, 2, 2],
    what Jetson's DLA runs), so the skip must be exactly twice ``x`` (inputs multiples of 32)."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        leaky_after_conv_a: bool,
        resize: str = "align_corners",
    ) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1)
        self.conv_b = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.leaky_after_conv_a = leaky_after_conv_a
        self.resize = resize

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Upsample ``x`` to ``skip``'s size and fuse them."""
        if self.resize == "half_pixel":
            x = upsample_half_pixel(x, skip)
        else:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        x = self.conv_a(torch.cat([x, skip], dim=1))
        if self.leaky_after_conv_a:
            x = self.act(x)
        return self.act(self.conv_b(x))


def upsample_half_pixel(x: Tensor, skip: Tensor) -> Tensor:
    """Bilinear x2 with half-pixel centres; a one-line error unless ``skip`` is twice ``x``
    (checked outside tracing, where sizes are fixed by the input's multiple of 32)."""
    if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
        h, w = (int(s) for s in x.shape[-2:])
        if tuple(int(s) for s in skip.shape[-2:]) != (2 * h, 2 * w):
            raise ModelError(
                f"half_pixel resize doubles {h}x{w}, but the skip is "
                f"{skip.shape[-2]}x{skip.shape[-1]}; use an input size that is a multiple of "
                f"{SIZE_MULTIPLE}"
            )
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class Decoder(nn.Module):
    """DenseDepth decoder built from the encoder's channel counts (highest resolution first)."""

    def __init__(
        self,
        channels: tuple[int, ...],
        decoder_width: float = 1.0,
        leaky_after_conv_a: bool = True,
        resize: str = "align_corners",
    ) -> None:
        super().__init__()
        *skips, deepest = channels
        width = int(deepest * decoder_width)
        if decoder_width <= 0 or width // 2 ** len(skips) < 1:
            least = 2 ** len(skips) / deepest
            raise ModelError(
                f"decoder width {decoder_width:g} leaves a decoder layer with no channels; "
                f"use at least {least:.3g}"
            )
        self.conv_in = nn.Conv2d(deepest, width, kernel_size=1)
        blocks = []
        in_ch = width
        for i, skip_ch in enumerate(reversed(skips), start=1):
            out_ch = width // 2**i
            blocks.append(UpBlock(in_ch, skip_ch, out_ch, leaky_after_conv_a, resize))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(in_ch, 1, 3, padding=1)

    def forward(self, features: list[Tensor]) -> Tensor:
        """Decode to one channel at the resolution of the first (stride 2) feature map."""
        *skips, deepest = features
        x = self.conv_in(F.relu(deepest))
        for block, skip in zip(self.blocks, reversed(skips), strict=True):
            x = block(x, skip)
        return self.conv_out(x)


class DenseDepth(nn.Module):
    """DenseDepth: RGB in [0, 1] (N,3,H,W), H and W multiples of 32 -> target (N,1,H/2,W/2).

    ``weights``: ``None`` (random init, train from scratch), ``"imagenet"`` (torchvision's file
    from torch hub's cache, never downloaded) or a path to a torchvision DenseNet state dict.
    ``variant`` (``densedepth.variant``): input normalisation, the convA activation, BatchNorm
    epsilon, the depth range and the decoder's resize; the default is the toolkit's own.
    """

    def __init__(
        self,
        backbone: str = "densenet169",
        decoder_width: float = 1.0,
        weights: str | os.PathLike[str] | None = None,
        variant: ModelVariant = DEFAULT,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder_width = decoder_width
        self.variant = variant
        self.encoder = DenseNetEncoder(backbone)
        for module in self.encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps = variant.bn_eps
        self.decoder = Decoder(
            self.encoder.channels, decoder_width, variant.leaky_after_conv_a, variant.resize
        )
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        numerator = torch.tensor(variant.depth.numerator)  # the half_pixel variant's Div
        self.register_buffer("numerator", numerator, persistent=False)
        if weights is not None and str(weights) != "none":
            self.encoder.load_weights(resolve_weights_file(backbone, weights))

    def forward(self, x: Tensor) -> Tensor:
        """RGB in [0, 1] -> the reciprocal depth target at half resolution."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ModelError(f"expected an RGB batch of shape (N, 3, H, W), got {tuple(x.shape)}")
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            check_input_size(int(x.shape[2]), int(x.shape[3]))
        if self.variant.normalize_input:
            x = (x - self.mean) / self.std
        return self.decoder(self.encoder(x))

    def predict_depth(self, x: Tensor) -> Tensor:
        """RGB in [0, 1] -> depth in metres at half resolution, clamped to the valid range.

        The half_pixel (DLA) variant divides the ``numerator`` buffer by the clamped target,
        which ONNX writes as Div (a DLA layer) of an initializer; ``numerator / target`` (the
        default's graph, unchanged) exports as Reciprocal and Mul, which DLA cannot run."""
        if self.variant.resize == "align_corners":
            return target_to_depth(self(x), self.variant.depth)
        lo, hi = self.variant.depth.target_range
        return torch.div(self.numerator, self(x).clamp(lo, hi))


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(backbone: str, decoder_width: float, input_size: tuple[int, int]) -> int:
    """Floating-point operations of one forward pass at ``input_size`` (2 per multiply-add),
    as ``torch.utils.flop_counter`` counts them (convolutions and matrix products), computed
    on the meta device (no memory, no weights)."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = input_size
    with torch.device("meta"):
        model = DenseDepth(backbone, decoder_width).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, h, w))
    return int(counter.get_total_flops())

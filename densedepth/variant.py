"""Variant switches of the DenseDepth family, recorded in every checkpoint, ONNX file and engine.

The toolkit's own models (``DEFAULT``) normalise the input with ImageNet's mean and std inside
the network, apply LeakyReLU(0.2) after both convolutions of each up-block, use torchvision's
BatchNorm epsilon (1e-5) and learn ``10 / depth`` for NYU's 0.1..10 m. The authors' released
Keras files differ in each (``PRESETS``): no normalisation (RGB / 255 goes in), LeakyReLU after
``convB`` only, Keras' epsilon 1.001e-5; ``kitti.h5`` learns ``80 / depth`` over 1..80 m.

``resize`` is how the decoder upsamples: ``align_corners`` (the paper's and every preset but
one: bilinear to the skip's size with corner-aligned coordinates) or ``half_pixel`` (the
``dla`` preset: bilinear by a constant 2 with half-pixel centres, and metres as ``numerator /
target`` through an ONNX Div, which Jetson Orin's DLA runs; it cannot run the default graph's
align_corners Resizes given output sizes, nor its Reciprocal). The two are different networks:
weights trained with one lose accuracy under the other (``docs/dla_variant_delta.py``).
Numpy only: the runtime reads these from metadata without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from densedepth.depth import DepthRange
from densedepth.util.errors import ModelError

SIZE_MULTIPLE = 32
BACKBONE_NAMES = ("densenet169", "densenet121", "densenet201")  # densedepth.model.BACKBONES
KERAS_BN_EPS = 1.001e-5
TORCHVISION_BN_EPS = 1e-5
RESIZE_MODES = ("align_corners", "half_pixel")  # the decoder's bilinear upsampling


@dataclass(frozen=True)
class ModelVariant:
    """How one DenseDepth network differs from another of the same backbone and width."""

    normalize_input: bool = True  # ImageNet mean/std inside the network
    leaky_after_conv_a: bool = True  # LeakyReLU(0.2) after convA too (not only convB)
    bn_eps: float = TORCHVISION_BN_EPS
    depth: DepthRange = field(default_factory=DepthRange)
    preset: str = "default"  # the name it came from (informational)
    resize: str = "align_corners"  # RESIZE_MODES; half_pixel: DLA-friendly (x2, Div)

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ModelError(
                f"unknown resize {self.resize!r}; choose one of: {', '.join(RESIZE_MODES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (checkpoint config, ONNX metadata, sidecars)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ModelVariant:
        """Inverse of ``to_dict``; ``None`` or ``{}`` is the default (older checkpoints); a dict
        without ``resize`` (written before it existed) is align_corners."""
        if not d:
            return cls()
        known = {"normalize_input", "leaky_after_conv_a", "bn_eps", "depth", "preset", "resize"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"unknown model variant fields {unknown}; upgrade the toolkit")
        kw = dict(d)
        kw["depth"] = DepthRange(**kw.get("depth", {}))
        return cls(**kw)


NYU = DepthRange(0.1, 10.0, 10.0)
KITTI = DepthRange(1.0, 80.0, 80.0)
DEPTH_RANGES = {"nyu": NYU, "kitti": KITTI}
DEFAULT = ModelVariant()
PRESETS: dict[str, ModelVariant] = {
    "default": DEFAULT,
    # nyu.h5 / kitti.h5 as released (January 2019): LeakyReLU after convB only
    "keras-released": ModelVariant(False, False, KERAS_BN_EPS, NYU, "keras-released"),
    # the repository's later decoder (LeakyReLU after both convs)
    "keras-head": ModelVariant(False, True, KERAS_BN_EPS, NYU, "keras-head"),
    # the toolkit's model as Jetson Orin's DLA runs it whole (half-pixel x2 resizes, Div)
    "dla": replace(DEFAULT, preset="dla", resize="half_pixel"),
}
TRAINABLE_PRESETS = ("default", "dla")  # the keras-* presets describe imported weights


def preset(name: str, dataset: str = "nyu") -> ModelVariant:
    """A named variant with the depth range of ``dataset`` (nyu | kitti)."""
    if name not in PRESETS:
        raise ModelError(f"unknown model variant {name!r}; choose one of: {', '.join(PRESETS)}")
    if dataset not in DEPTH_RANGES:
        raise ModelError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DEPTH_RANGES)}")
    return replace(PRESETS[name], depth=DEPTH_RANGES[dataset], preset=name)


def training_variant(
    name: str | None, depth_kind: str = "nyu", recorded: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The variant a training run's config records for ``--variant name``: ``{}`` for the
    default (the data's conventions then apply: KITTI's range), else the preset with the depth
    range of ``depth_kind`` (nyu | kitti). On ``--resume``, ``recorded`` (the run's own) is
    kept, and a ``name`` naming another variant is an error."""
    if name is not None and name not in TRAINABLE_PRESETS:
        raise ModelError(
            f"--variant {name!r} cannot be trained; choose one of: {', '.join(TRAINABLE_PRESETS)}"
        )
    wanted = {} if name in (None, "default") else preset(name, depth_kind).to_dict()
    if recorded is None:
        return wanted
    theirs = ModelVariant.from_dict(recorded)
    if name is not None and replace(theirs, depth=NYU) != preset(name):  # the run's data's range
        raise ModelError(
            f"--resume: the run is the {theirs.preset} variant ({theirs.resize} resize) but "
            f"--variant {name} was given; leave --variant out to continue it"
        )
    return dict(recorded)


def check_input_size(height: int, width: int) -> None:
    """Raise a one-line error unless both sides are positive multiples of 32."""
    bad = [s for s in (height, width) if s <= 0 or s % SIZE_MULTIPLE]
    if not bad:
        return
    if min(height, width) <= 0:
        raise ModelError(
            f"input size {height}x{width}: both sides must be positive multiples of "
            f"{SIZE_MULTIPLE} (e.g. 480x640)"
        )

    def near(s: int) -> str:
        lo = max(SIZE_MULTIPLE, s // SIZE_MULTIPLE * SIZE_MULTIPLE)
        hi = lo if s <= lo else lo + SIZE_MULTIPLE
        return str(lo) if lo == hi else f"{lo} or {hi}"

    raise ModelError(
        f"input size {height}x{width} is not a multiple of {SIZE_MULTIPLE} on each side; "
        f"use height {near(height)} and width {near(width)} (e.g. 480x640)"
    )

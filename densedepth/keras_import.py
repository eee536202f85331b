"""The authors' released Keras models (``nyu.h5``, ``kitti.h5``) as checkpoints of this toolkit.

The files were saved by Keras 2.2.4 (``model.save``, HDF5). They are read with h5py alone
(TensorFlow is not a dependency) and mapped by layer NAME:

    Keras (keras.applications.DenseNet + the DenseDepth decoder)   this toolkit
    conv1/conv, conv1/bn                                           encoder conv0, norm0
    convK_blockI_{0_bn,1_conv,1_bn,2_conv}   (K = 2..5)            denseblock{K-1}.denselayerI
                                                                       .{norm1,conv1,norm2,conv2}
    poolK_{bn,conv}   (K = 2..4)                                   transition{K-1}.{norm,conv}
    bn                                                             norm5
    conv2, upJ_convA, upJ_convB, conv3                             decoder conv_in, blocks[J-1]
                                                                       .{conv_a,conv_b}, conv_out

Kernels are HWIO (to OIHW: transpose 3, 2, 0, 1); BatchNorm weights are gamma, beta,
moving_mean, moving_variance. What the file says about itself decides the model: the backbone
from the number of blocks per stage (DenseNet121, 169 or 201), the decoder width from the
``conv2`` kernel, LeakyReLU after ``convA`` from ``model_config`` (or, in a ``save_weights``
file, from the LeakyReLU layers listed), Keras' BatchNorm epsilon and no input normalisation
(the ``keras-released`` / ``keras-head`` presets of ``densedepth.variant``). The depth range
cannot be read from weights: ``dataset`` gives it (nyu: 10 / output, 0.1..10 m; kitti:
80 / output, 1..80 m). Anything that does not map is refused in one line, before anything is
written.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.errors import DenseDepthError, missing_reason
from densedepth.util.files import file_sha256
from densedepth.variant import preset

STAGE_BLOCKS = {  # blocks per dense stage (conv2..conv5) -> backbone
    (6, 12, 24, 16): "densenet121",
    (6, 12, 32, 32): "densenet169",
    (6, 12, 48, 32): "densenet201",
}
INPUT_SIZES = {"nyu": (480, 640), "kitti": (384, 1248)}  # KITTI's 375x1242 frames, resized
BN_FIELDS = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
             ("moving_variance", "running_var"))  # fmt: skip
CLASSIFIER_LAYERS = ("fc1000", "predictions", "avg_pool")
UP_BLOCKS = 4


class KerasImportError(DenseDepthError):
    """A Keras file that is not a DenseDepth model this toolkit can map."""


@dataclass
class KerasFile:
    """What an HDF5 Keras file holds: weights per layer, layer order, config, versions."""

    path: Path
    layer_names: list[str]
    weights: dict[str, dict[str, np.ndarray]]  # layer -> {"kernel": array, "bias": ...}
    model_config: dict[str, Any] | None
    keras_version: str = ""
    backend: str = ""
    sha256: str = ""
    layer_classes: dict[str, str] = field(default_factory=dict)  # from model_config


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _names_attr(group: Any, name: str) -> list[str]:
    """A list attribute Keras may split into ``name0``, ``name1``... when over 64 KB."""
    if name in group.attrs:
        return [_text(v) for v in group.attrs[name]]
    parts, i = [], 0
    while f"{name}{i}" in group.attrs:
        parts += [_text(v) for v in group.attrs[f"{name}{i}"]]
        i += 1
    return parts


def read_keras_h5(path: str | os.PathLike[str]) -> KerasFile:
    """Every layer's weights of a Keras HDF5 file (``model.save`` or ``save_weights``)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise KerasImportError(f"Keras file {path} {missing_reason(path)}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise KerasImportError(
            f"{path} is not a readable HDF5 file ({exc}); is it whole?"
        ) from None
    with f:
        group = f.get("model_weights", f)
        names = _names_attr(group, "layer_names")
        if not names:
            raise KerasImportError(
                f"{path} is not a Keras model file (no model_weights / layer_names); save it "
                f"with Keras model.save or save_weights"
            )
        weights: dict[str, dict[str, np.ndarray]] = {}
        try:
            for layer in names:
                if layer not in group:
                    continue
                entries = {}
                for full in _names_attr(group[layer], "weight_names"):
                    short = full.rsplit("/", 1)[-1].split(":")[0]
                    entries[short] = np.asarray(group[layer][full], dtype=np.float32)
                if entries:
                    weights[layer] = entries
        except (OSError, KeyError) as exc:
            raise KerasImportError(
                f"{path}: cannot read layer weights ({exc}); is it whole?"
            ) from None
        config = None
        if "model_config" in f.attrs:
            config = json.loads(_text(f.attrs["model_config"]))
        kfile = KerasFile(
            path, names, weights, config,
            _text(f.attrs.get("keras_version", group.attrs.get("keras_version", ""))),
            _text(f.attrs.get("backend", group.attrs.get("backend", ""))),
        )  # fmt: skip
    kfile.sha256 = file_sha256(path)
    if config:
        layers = config.get("config", {}).get("layers", [])
        kfile.layer_classes = {layer["name"]: layer["class_name"] for layer in layers}
    return kfile


def _inbound(config: dict[str, Any], name: str) -> list[str]:
    """Names of the layers feeding ``name`` in a functional ``model_config``."""
    for layer in config.get("config", {}).get("layers", []):
        if layer["name"] == name:
            nodes = layer.get("inbound_nodes") or []
            found = []
            for node in nodes:
                if isinstance(node, dict):  # Keras 3 style
                    args = node.get("args", [])
                    found += [a["config"]["keras_history"][0] for a in args if isinstance(a, dict)]
                else:
                    found += [entry[0] for entry in node]
            return found
    return []


def detect_leaky_after_conv_a(kfile: KerasFile) -> bool:
    """Whether each ``upJ_convA`` is followed by a LeakyReLU (``keras-head``) or feeds
    ``upJ_convB`` directly (``keras-released``)."""
    if kfile.model_config is None:  # save_weights: the layer list still names the activations
        leaky = sum(1 for n in kfile.layer_names if re.match(r"^leaky_re_lu(_\d+)?$", n))
        if leaky not in (UP_BLOCKS, 2 * UP_BLOCKS):
            raise KerasImportError(
                f"{kfile.path} lists {leaky} LeakyReLU layers; a DenseDepth decoder has "
                f"{UP_BLOCKS} (released) or {2 * UP_BLOCKS} (later code)"
            )
        return leaky == 2 * UP_BLOCKS
    answers = set()
    for j in range(1, UP_BLOCKS + 1):
        feeding = _inbound(kfile.model_config, f"up{j}_convB")
        if feeding == [f"up{j}_convA"]:
            answers.add(False)
        elif len(feeding) == 1 and kfile.layer_classes.get(feeding[0]) == "LeakyReLU":
            answers.add(_inbound(kfile.model_config, feeding[0]) == [f"up{j}_convA"])
        else:
            raise KerasImportError(
                f"{kfile.path}: up{j}_convB is fed by {feeding or 'nothing'}, not by up{j}_convA "
                f"or a LeakyReLU on it; not a DenseDepth decoder"
            )
    if len(answers) != 1:
        raise KerasImportError(f"{kfile.path}: the up-blocks differ in their convA activation")
    return answers.pop()


def check_upsampling(kfile: KerasFile) -> None:
    """The up-sampling layers must be the original ``BilinearUpSampling2D`` (what the decoder
    reproduces: 2x bilinear, align_corners=True)."""
    if kfile.model_config is None:
        return
    for j in range(1, UP_BLOCKS + 1):
        name = f"up{j}_upsampling2d"
        cls = kfile.layer_classes.get(name)
        if cls != "BilinearUpSampling2D":
            raise KerasImportError(
                f"{kfile.path}: model_config has {cls or 'no layer'} for {name}, not the custom "
                f"BilinearUpSampling2D of DenseDepth; its up-sampling cannot be reproduced"
            )


def detect_backbone(kfile: KerasFile) -> str:
    """DenseNet121, 169 or 201 from the number of blocks in each dense stage."""
    top = [n for n in CLASSIFIER_LAYERS if n in kfile.layer_names]
    if top:
        raise KerasImportError(
            f"{kfile.path} is an image classifier (layer {top[0]!r}), not a DenseDepth model"
        )
    counts = []
    for stage in range(2, 6):
        blocks = {int(m.group(1)) for n in kfile.weights
                  if (m := re.match(rf"^conv{stage}_block(\d+)_0_bn$", n))}  # fmt: skip
        counts.append(len(blocks))
    backbone = STAGE_BLOCKS.get(tuple(counts))
    if backbone is None:
        known = ", ".join(f"{b} {c}" for c, b in STAGE_BLOCKS.items())
        raise KerasImportError(
            f"{kfile.path}: dense stages with {tuple(counts)} blocks match no DenseNet "
            f"({known}); is it a DenseDepth Keras model?"
        )
    return backbone


def keras_name_map(backbone: str) -> dict[str, tuple[str, str]]:
    """Torch state-dict key -> (Keras layer, Keras weight) for ``backbone``."""
    blocks = {b: c for c, b in STAGE_BLOCKS.items()}[backbone]
    out: dict[str, tuple[str, str]] = {}

    def bn(torch_prefix: str, layer: str) -> None:
        for keras_w, torch_w in BN_FIELDS:
            out[f"{torch_prefix}.{torch_w}"] = (layer, keras_w)

    enc = "encoder.features"
    out[f"{enc}.conv0.weight"] = ("conv1/conv", "kernel")
    bn(f"{enc}.norm0", "conv1/bn")
    for stage, n in zip(range(2, 6), blocks, strict=True):
        for i in range(1, n + 1):
            prefix = f"{enc}.denseblock{stage - 1}.denselayer{i}"
            keras = f"conv{stage}_block{i}"
            bn(f"{prefix}.norm1", f"{keras}_0_bn")
            out[f"{prefix}.conv1.weight"] = (f"{keras}_1_conv", "kernel")
            bn(f"{prefix}.norm2", f"{keras}_1_bn")
            out[f"{prefix}.conv2.weight"] = (f"{keras}_2_conv", "kernel")
        if stage < 5:
            bn(f"{enc}.transition{stage - 1}.norm", f"pool{stage}_bn")
            out[f"{enc}.transition{stage - 1}.conv.weight"] = (f"pool{stage}_conv", "kernel")
    bn(f"{enc}.norm5", "bn")
    convs = {"decoder.conv_in": "conv2", "decoder.conv_out": "conv3"}
    for j in range(1, UP_BLOCKS + 1):
        convs[f"decoder.blocks.{j - 1}.conv_a"] = f"up{j}_convA"
        convs[f"decoder.blocks.{j - 1}.conv_b"] = f"up{j}_convB"
    for prefix, layer in convs.items():
        out[f"{prefix}.weight"] = (layer, "kernel")
        out[f"{prefix}.bias"] = (layer, "bias")
    return out


def decoder_width_of(kfile: KerasFile) -> float:
    """The decoder width factor from the ``conv2`` kernel (1x1, encoder channels -> width)."""
    kernel = kfile.weights.get("conv2", {}).get("kernel")
    if kernel is None or kernel.ndim != 4 or kernel.shape[:2] != (1, 1):
        shape = None if kernel is None else tuple(kernel.shape)
        raise KerasImportError(
            f"{kfile.path}: the decoder's conv2 layer is missing or not a 1x1 kernel ({shape})"
        )
    return float(kernel.shape[3]) / float(kernel.shape[2])


def keras_state_dict(kfile: KerasFile, backbone: str) -> dict[str, np.ndarray]:
    """The file's weights under this toolkit's state-dict keys (kernels as OIHW); every Keras
    layer with weights must be used and every key found."""
    mapping = keras_name_map(backbone)
    state = {}
    missing = []
    for key, (layer, weight) in mapping.items():
        value = kfile.weights.get(layer, {}).get(weight)
        if value is None:
            missing.append(f"{layer}/{weight}")
            continue
        state[key] = value.transpose(3, 2, 0, 1) if weight == "kernel" else value
    if missing:
        raise KerasImportError(
            f"{kfile.path}: {len(missing)} weights missing for a {backbone} DenseDepth "
            f"(first: {missing[0]})"
        )
    used = {layer for layer, _ in mapping.values()}
    extra = sorted(set(kfile.weights) - used)
    if extra:
        raise KerasImportError(
            f"{kfile.path}: layer {extra[0]!r} (and {len(extra) - 1} more) has weights no "
            f"DenseDepth {backbone} layer takes"
        )
    return state


def import_keras(
    path: str | os.PathLike[str], out: str | os.PathLike[str], dataset: str = "nyu"
) -> dict[str, Any]:
    """Import a Keras DenseDepth HDF5 file as a checkpoint at ``out``; returns its record."""
    import torch

    from densedepth.camera import KITTI_IMAGE_02, NYU_KINECT
    from densedepth.checkpoint import save_checkpoint
    from densedepth.model import DenseDepth

    variant_for_dataset = preset("keras-released", dataset)  # validates dataset early
    kfile = read_keras_h5(path)
    backbone = detect_backbone(kfile)  # first: a classifier is said to be one
    check_upsampling(kfile)
    width = decoder_width_of(kfile)
    leaky = detect_leaky_after_conv_a(kfile)
    variant = preset("keras-head" if leaky else "keras-released", dataset)
    assert variant.depth == variant_for_dataset.depth
    arrays = keras_state_dict(kfile, backbone)
    model = DenseDepth(backbone, decoder_width=width, variant=variant)
    own = model.state_dict()
    names = keras_name_map(backbone)
    for key, value in arrays.items():
        bad = int(np.count_nonzero(~np.isfinite(value)))
        if bad:
            layer, weight = names[key]
            raise KerasImportError(
                f"{kfile.path}: layer {layer} has non-finite weights (NaN or infinite: {bad:,} "
                f"of the {value.size:,} in its {weight}); the file is damaged or was saved "
                f"after training diverged: use another file"
            )
        if tuple(own[key].shape) != value.shape:
            layer, weight = names[key]
            have, need = value.shape, tuple(own[key].shape)
            if weight == "kernel":  # say it in the file's own layout (HWIO)
                have, need = (tuple(s[i] for i in (2, 3, 1, 0)) for s in (have, need))
            raise KerasImportError(
                f"{kfile.path}: {layer}/{weight} has shape {have} but a {backbone} "
                f"DenseDepth of width {width:g} needs {need} there"
            )
        own[key] = torch.from_numpy(np.ascontiguousarray(value))
    model.load_state_dict(own, strict=True)
    config = {
        "backbone": backbone,
        "decoder_width": width,
        "input_size": list(INPUT_SIZES[dataset]),
        "variant": variant.to_dict(),
        "data": dataset,
        "weights": "keras",
        "training_camera": (NYU_KINECT if dataset == "nyu" else KITTI_IMAGE_02).to_dict(),
    }
    source = {
        "format": "keras-h5",
        "file": str(kfile.path),
        "sha256": kfile.sha256,
        "keras_version": kfile.keras_version,
        "backend": kfile.backend,
        "saved_with": "model.save" if kfile.model_config is not None else "save_weights",
    }
    ckpt = {"model": model.state_dict(), "config": config, "source": source, "epoch": 0,
            "step": 0, "metrics": {}}  # fmt: skip
    save_checkpoint(out, ckpt)
    return {"path": str(out), "backbone": backbone, "decoder_width": width,
            "variant": variant.preset, "dataset": dataset, **source}  # fmt: skip

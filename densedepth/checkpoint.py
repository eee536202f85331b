"""Checkpoints: a plain dict, written atomically, read with ``torch.load(weights_only=True)``.

Layout (``FORMAT_VERSION`` 1)::

    {"format": "densedepth", "format_version": 1,
     "model": state_dict, "optimizer": state_dict | None, "scaler": state_dict | None,
     "epoch": int, "step": int, "config": {...}, "metrics": {...}}

``config`` carries at least ``backbone``, ``decoder_width`` and ``input_size`` so a checkpoint
rebuilds its own model, and ``variant`` (``densedepth.variant``; absent means the default).
``weights_only=True`` means a checkpoint cannot run code when loaded: a file holding pickled
objects other than tensors and plain containers is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from densedepth.model import DenseDepth
from densedepth.util.errors import DenseDepthError, error_line, missing_reason
from densedepth.util.outputs import temp_file_beside
from densedepth.variant import ModelVariant

FORMAT = "densedepth"
FORMAT_VERSION = 1


class CheckpointError(DenseDepthError):
    """A checkpoint cannot be read, is not ours, or does not fit what was asked."""


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temp file, fsync, rename).

    On any failure (disk full, unwritable folder) the previous file at ``path`` is untouched.
    """
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **checkpoint}
    tmp = None
    try:
        fd, tmp = temp_file_beside(path)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else error_line(exc)
        raise CheckpointError(
            f"cannot write checkpoint {path}: {why}; the previous checkpoint is intact, "
            f"free space or choose another --out"
        ) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} {missing_reason(path)}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text:
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"refusing {path}: it contains pickled code or objects{what}, which a "
                f"checkpoint must not; load only checkpoints this toolkit wrote"
            ) from None
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is truncated or not a PyTorch file "
            f"({error_line(exc)[:120]})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a DenseDepth checkpoint of this toolkit")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}, newer than this toolkit's "
            f"{FORMAT_VERSION}; upgrade the toolkit"
        )
    config = ckpt.get("config")
    if not isinstance(config, dict) or "backbone" not in config:
        raise CheckpointError(f"{path} has no model config (backbone); it cannot be rebuilt")
    return ckpt


def model_from_checkpoint(
    ckpt: dict[str, Any] | str | os.PathLike[str], backbone: str | None = None
) -> DenseDepth:
    """Rebuild the model a checkpoint describes and load its weights (strict).

    ``backbone``, when given, must match the checkpoint's (else a clear error naming both).
    """
    source = "" if isinstance(ckpt, dict) else f"{ckpt}: "
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    config = ckpt["config"]
    if backbone is not None and backbone != config["backbone"]:
        raise CheckpointError(
            f"{source}checkpoint is a {config['backbone']} model but {backbone} was asked for"
        )
    variant = ModelVariant.from_dict(config.get("variant"))
    width = float(config.get("decoder_width", 1.0))
    model = DenseDepth(config["backbone"], decoder_width=width, variant=variant)
    if ckpt.get("qat"):  # quantization-aware fine-tuned: its fake-quant layers and ranges
        from densedepth.fake_quant import insert_fake_quant

        insert_fake_quant(model)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise CheckpointError(
            f"{source}weights do not fit a {config['backbone']} DenseDepth "
            f"(width {config.get('decoder_width', 1.0)}): {detail[:160]}"
        ) from None
    return model


def weights_origin(ckpt: dict[str, Any]) -> dict[str, str]:
    """``{"weights_origin": ...}`` for a checkpoint imported from published weights, else {}."""
    source = ckpt.get("source") or {}
    if source.get("format") == "keras-h5":
        return {"weights_origin": f"published Keras {Path(source.get('file', '')).name}"}
    return {}


def training_camera(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The camera the checkpoint's training images came from, as its config records it
    (``densedepth.camera.camera_record``); for a run on synthetic data from before runs
    recorded it, the generator's (the NYU Kinect's, scaled); None when unknown."""
    config = ckpt.get("config") or {}
    camera = config.get("training_camera")
    if camera or config.get("data") != "synthetic":
        return camera or None
    from densedepth.camera import NYU_KINECT

    h, w = config.get("synthetic_size") or config.get("input_size") or (480, 640)
    scaled = NYU_KINECT.scaled(int(w), int(h))
    return {**scaled.to_dict(), "source": "synthetic: the NYU Kinect's, scaled (inferred)"}


def checkpoint_meta(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint records about its model, in the keys ONNX metadata uses: its config,
    the weights' origin, precision (fp32 weights; int8 for quantization-aware ones) and the
    training camera."""
    camera = training_camera(ckpt)
    return {**(ckpt.get("config") or {}), **weights_origin(ckpt),
            "precision": "int8" if ckpt.get("qat") else "fp32",
            **({"training_camera": camera} if camera else {})}  # fmt: skip

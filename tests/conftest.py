"""Markers: ``gpu`` and ``tensorrt`` tests skip at collection, with the reason, where absent;
the session's tiny trained model, shared by the export and bench tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from calib.calibration import load_calibration_set
from export.onnx_export import export_onnx
from train.config import TrainConfig
from train.loop import fit


def _skip_reasons() -> dict[str, str | None]:
    from export.formats import get_format

    has_cuda = torch.cuda.is_available()
    trt = get_format("tensorrt", "fp16").unavailable_reason()
    return {
        "gpu": None if has_cuda else "needs a CUDA GPU (none visible to torch)",
        "tensorrt": None if trt is None else f"needs TensorRT and a CUDA GPU: {trt}",
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = _skip_reasons()
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny DenseNet121 DenseDepth trained a little on synthetic scenes, exported to ONNX."""
    root = tmp_path_factory.mktemp("trained")
    cfg = TrainConfig(
        backbone="densenet121",
        decoder_width=0.125,
        weights="none",
        input_size=(64, 64),
        batch_size=4,
        lr=1e-3,
        max_steps=60,
        epochs=100,
        synthetic_train=64,
        synthetic_test=8,
        val_split=0.125,  # best.pt chosen on 8 held-out training scenes
        val_samples=8,
        checkpoint_every=0,
        device="cpu",
        precision="fp32",  # the same weights on every CPU (auto picks bf16 where it pays)
        out=str(root / "run"),
    )
    fit(cfg)
    ckpt = root / "run" / "best.pt"
    onnx_path = root / "model_fp32.onnx"
    export_onnx(ckpt, onnx_path)
    calib = load_calibration_set("synthetic", (64, 64), n=32, height=64, width=64, seed=5)
    return {"ckpt": ckpt, "onnx": onnx_path, "root": root, "calib": calib}  # type: ignore[dict-item]

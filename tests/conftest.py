"""Markers: ``gpu`` and ``tensorrt`` tests skip at collection, with the reason, where absent."""

from __future__ import annotations

import importlib.util

import pytest
import torch


def _skip_reasons() -> dict[str, str | None]:
    has_cuda = torch.cuda.is_available()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    return {
        "gpu": None if has_cuda else "needs a CUDA GPU (none visible to torch)",
        "tensorrt": None
        if has_cuda and has_trt
        else "needs TensorRT and a CUDA GPU (pip install '.[tensorrt]' on a GPU machine)",
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = _skip_reasons()
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))

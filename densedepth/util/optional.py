"""Packages the runtime works without: imported when present, None when not."""

from __future__ import annotations

from typing import Any


def optional_torch() -> Any:
    """torch when installed (the [train] extra), else None: the runtime runs without it."""
    try:
        import torch
    except ImportError:
        return None
    return torch

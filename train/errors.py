"""The error training raises when the user must act: bad options, data, output folder or run."""

from __future__ import annotations

from densedepth.util.errors import DenseDepthError


class TrainingError(DenseDepthError):
    """Training stopped for a reason the user must act on (one line)."""

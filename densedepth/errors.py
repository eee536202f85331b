"""User-facing errors: each carries one line that says what was wrong and what to do."""

from __future__ import annotations


class DenseDepthError(Exception):
    """Base class of every error the CLI prints as one line and exits non-zero on."""


class DataError(DenseDepthError, ValueError):
    """A dataset, image or depth map is missing, corrupt or of the wrong form."""


class ModelError(DenseDepthError, ValueError):
    """A model was asked for something it cannot do (unknown backbone, bad input size)."""


class WeightsNotFoundError(DenseDepthError, FileNotFoundError):
    """Pretrained weights were asked for but are not on disk (we never download)."""


class OutputError(DenseDepthError, OSError):
    """An output file or folder cannot be written (permissions, disk full)."""

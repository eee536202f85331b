"""Runners with one interface: ``runner(batch float32 NCHW RGB in [0,1]) -> depth metres``.

Every runner also has ``name``, ``precision``, ``device`` and ``input_shape``; ``load_runner``
picks the kind by the file's suffix, so callers never ask which kind they hold.
"""

from engines.base import Runner, load_runner

__all__ = ["Runner", "load_runner"]

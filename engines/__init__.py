"""Runners with one interface: ``runner(batch float32 NCHW RGB in [0,1]) -> depth metres``.

Every runner has ``name``, ``precision``, ``device``, ``input_shape``, ``max_batch``, ``info``
(a ``ModelInfo``), ``threads``, ``providers``, ``compile_seconds``, ``close()`` and
context-manager use (``engines.base.Runner``); ``load_runner`` picks the kind by the file's
suffix or a format-table key, so callers never ask which kind they hold.
"""

from engines.base import ModelInfo, Runner, as_runner, load_runner, model_info

__all__ = ["ModelInfo", "Runner", "as_runner", "load_runner", "model_info"]

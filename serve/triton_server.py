"""A real Triton Inference Server serving the toolkit's runner for any model file, through
NVIDIA PyTriton (which bundles the ``tritonserver`` binary and its Python backend; it runs on a
CPU). The same protocol and tensor names as the repository ``triton-repo`` writes: input
``rgb`` (N x 3 x H x W float32 RGB in [0, 1]), output ``depth`` (N x 1 x H/2 x W/2 metres),
dynamic batching on.

PyTriton pins numpy < 2, so this module runs in the serving environment (``make serve-env``:
``.venv-serve``, its own venv, as Triton runs in its own container in production);
``cli.py serve`` starts it there with ``python -m serve.triton_server``. It does not import
typer or torch.

The Python-backend stub links ``libpython3.X.so`` dynamically: where the interpreter is not
the system's (pyenv), the loader would pick the system's libpython under this interpreter's
standard library (seen: "'_thread.RLock' object has no attribute '_recursion_count'"), so the
interpreter's own LIBDIR goes first on ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 120.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def match_libpython() -> str:
    """Put this interpreter's libpython first for the backend stub (see the module
    docstring); the folder added, or "" when the system's is this interpreter's."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    lib = sysconfig.get_config_var("LDLIBRARY") or ""
    if sys.base_prefix == "/usr" or not libdir or not (Path(libdir) / lib).exists():
        return ""
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir not in current.split(":"):
        os.environ["LD_LIBRARY_PATH"] = libdir + (f":{current}" if current else "")
    return libdir


def infer_function(runner: Any) -> Any:
    """PyTriton's batched infer function over ``runner`` (which splits a batch larger than
    its engine takes into calls)."""
    import numpy as np
    from pytriton.decorators import batch

    from densedepth.util.onnx_io import INPUT_NAME, OUTPUT_NAME

    @batch
    def infer(**inputs: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: np.asarray(runner(inputs[INPUT_NAME]), dtype=np.float32)}

    return infer


class _Stop:
    """The first SIGINT / SIGTERM becomes KeyboardInterrupt; later ones are ignored, so they
    cannot break the shutdown in progress."""

    stopping = False

    def __call__(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt(f"signal {signum}")


def serve(args: argparse.Namespace) -> int:
    """Load the model, bind it, start Triton, write the ready file, and serve until a
    signal; the exit code."""
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    from densedepth.util.onnx_io import INPUT_NAME, OUTPUT_NAME
    from engines.base import load_runner
    from serve.repository import info_parameters, preferred_batches

    runner = load_runner(args.model, device=args.device, threads=args.threads)
    _, c, h, w = runner.input_shape
    config = TritonConfig(
        http_address=args.host, http_port=args.http_port, grpc_address=args.host,
        grpc_port=args.grpc_port, metrics_address=args.host, metrics_port=args.metrics_port,
        allow_gpu_metrics=False, exit_timeout_secs=5, log_verbose=0,
    )  # fmt: skip
    # statistics (what bench --server reads) unrestricted on loopback; PyTriton's token elsewhere
    security = (TritonSecurityConfig(restricted_endpoints=[]) if args.host in LOOPBACK
                else TritonSecurityConfig())  # fmt: skip
    preferred = preferred_batches(args.max_batch) or None
    batcher = DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us,
                             preferred_batch_size=preferred)  # fmt: skip
    triton = Triton(config=config, security_config=security)  # (entering it would start it)
    try:
        triton.bind(
            model_name=args.name,
            infer_func=infer_function(runner),
            inputs=[Tensor(name=INPUT_NAME, dtype=np.float32, shape=(c, h, w))],
            outputs=[Tensor(name=OUTPUT_NAME, dtype=np.float32, shape=(1, h // 2, w // 2))],
            config=ModelConfig(max_batch_size=args.max_batch, batcher=batcher),
            strict=True,
        )
        described = describe_model(triton, args.name, info_parameters(runner.info))
        triton.run()
        _wait_ready(args)
        if args.ready_file:
            record = {"model": args.name, "http": f"{args.host}:{args.http_port}",
                      "grpc": f"{args.host}:{args.grpc_port}", "pid": os.getpid(),
                      "runner": runner.name, "input_shape": [c, h, w],
                      "max_batch": args.max_batch, "parameters": described}  # fmt: skip
            if args.host not in LOOPBACK:
                record["access_token"] = triton.get_access_token()
            _write_private(Path(args.ready_file), json.dumps(record))
        try:
            while triton.is_alive():
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    finally:
        triton.stop()
    runner.close()
    return 0


def describe_model(triton: Any, name: str, parameters: dict[str, str]) -> bool:
    """Add ``parameters`` to the config PyTriton generates for ``name``. PyTriton has no
    public way to (its ModelConfig has no parameters): this sets them on the backend
    parameters its generator writes (pytriton 0.5 to 0.7); where that is not there, the
    model is served without them and this says False."""
    try:
        for model in triton._model_manager.models:
            if model.model_name == name:
                model._get_triton_model_config().backend_parameters.update(parameters)
                return True
    except AttributeError:
        pass
    return False


def _wait_ready(args: argparse.Namespace) -> None:
    """Until the model (not only the server: PyTriton loads models after it is up) answers
    ready over HTTP, for at most READY_TIMEOUT_S."""
    import urllib.error
    import urllib.request

    url = f"http://{args.host}:{args.http_port}/v2/models/{args.name}/ready"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"Triton did not report {args.name} ready within {READY_TIMEOUT_S:g} s")


def _write_private(path: Path, text: str) -> None:
    """``text`` into ``path`` (mode 0600: it may hold the access token), via a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m serve.triton_server", description=__doc__)
    p.add_argument("model")
    p.add_argument("--name", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--queue-delay-us", type=int, default=2000)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--ready-file", default="")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    match_libpython()
    try:
        return serve(args)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # one line for the parent to print; the traceback with --debug
        from densedepth.util.errors import DenseDepthError

        what = str(exc) if isinstance(exc, DenseDepthError) else f"{type(exc).__name__}: {exc}"
        print(f"error: {what}", file=sys.stderr)
        if os.environ.get("DENSEDEPTH_DEBUG"):
            raise
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

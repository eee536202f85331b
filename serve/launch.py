"""Start and stop the Triton server of ``serve.triton_server`` from the main environment: it
runs in the serving environment's Python (``.venv-serve``, or ``DENSEDEPTH_SERVE_PYTHON``),
because PyTriton pins numpy < 2 and the toolkit's main environment has numpy 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densedepth.util.errors import BackendUnavailable, DenseDepthError

ROOT = Path(__file__).resolve().parents[1]
SERVE_VENV = ROOT / ".venv-serve"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


class ServeError(DenseDepthError):
    """The server could not start or stopped with an error (one line)."""


def serving_python() -> Path:
    """The serving environment's interpreter: ``DENSEDEPTH_SERVE_PYTHON``, else
    ``.venv-serve/bin/python``; one line naming how to make it when neither is there or it
    has no PyTriton."""
    given = os.environ.get("DENSEDEPTH_SERVE_PYTHON")
    python = Path(given) if given else SERVE_VENV / "bin" / "python"
    if not python.is_file():
        raise BackendUnavailable(
            f"no serving environment at {python}: run `make serve-env` (PyTriton pins numpy < 2, "
            f"so Triton gets its own venv), or set DENSEDEPTH_SERVE_PYTHON"
        )
    probe = subprocess.run([str(python), "-c", "import pytriton"], capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    if probe.returncode != 0:
        raise BackendUnavailable(f"{python} cannot import pytriton: pip install "
                                 f"nvidia-pytriton there (make serve-env)")  # fmt: skip
    return python


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class TritonServer:
    """A running ``serve.triton_server`` process: its URLs and what it serves."""

    process: subprocess.Popen[str]
    record: dict[str, Any]
    log_path: Path
    _tmp: Any = field(default=None, repr=False)

    @property
    def http_url(self) -> str:
        return str(self.record["http"])

    @property
    def grpc_url(self) -> str:
        return str(self.record["grpc"])

    @property
    def model(self) -> str:
        return str(self.record["model"])

    def stop(self) -> int:
        """SIGINT, then wait (SIGKILL after STOP_TIMEOUT_S); the exit code. Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return int(self.process.returncode)

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    model: str | os.PathLike[str],
    name: str,
    host: str = "127.0.0.1",
    http_port: int = 0,
    grpc_port: int = 0,
    max_batch: int = 8,
    queue_delay_us: int = 2000,
    threads: int = 0,
    device: str = "auto",
    python: Path | None = None,
) -> TritonServer:
    """Start Triton serving ``model`` as ``name`` and return once the model answers ready
    (ports 0: free ones); one line with the server's own error when it does not start."""
    python = python or serving_python()
    ports = [p or free_port() for p in (http_port, grpc_port, 0)]
    tmp = tempfile.TemporaryDirectory(prefix="densedepth-serve-")
    ready, log_path = Path(tmp.name) / "ready.json", Path(tmp.name) / "server.log"
    cmd = [str(python), "-m", "serve.triton_server", str(Path(model).resolve()), "--name", name,
           "--host", host, "--http-port", str(ports[0]), "--grpc-port", str(ports[1]),
           "--metrics-port", str(ports[2]), "--max-batch", str(max_batch),
           "--queue-delay-us", str(queue_delay_us), "--threads", str(threads),
           "--device", device, "--ready-file", str(ready)]  # fmt: skip
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    log = open(log_path, "w")  # noqa: SIM115 (the child writes it for its whole life)
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                               text=True, start_new_session=True)  # fmt: skip
    log.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.is_file():
            record = json.loads(ready.read_text())
            return TritonServer(process, record, log_path, tmp)
        if process.poll() is not None:
            why = last_error(log_path)
            tmp.cleanup()
            raise ServeError(f"Triton did not start for {Path(model).name}: {why}")
        time.sleep(0.1)
    process.kill()
    process.wait(timeout=10)
    why = last_error(log_path)
    tmp.cleanup()
    raise ServeError(f"Triton did not report {name} ready within {START_TIMEOUT_S:g} s ({why})")


def last_error(log_path: Path) -> str:
    """Why the server stopped: the server log's ``error:`` line, else its last line."""
    try:
        lines = [
            ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()
        ]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if ln.startswith("error:")]
    if errors:
        return errors[-1][len("error:") :].strip()
    return lines[-1] if lines else "it exited without a word"

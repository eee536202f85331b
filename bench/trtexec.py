"""``bench --trtexec``: NVIDIA's own timer on the same engine, beside ours.

``trtexec --loadEngine`` (TensorRT's samples/trtexec; on JetPack /usr/src/tensorrt/bin) times
an engine the way NVIDIA quotes it: warm-up ``--warmUp`` ms, then at least ``--iterations``
queries and ``--duration`` seconds, and prints "GPU Compute Time: min = ... ms, max = ... ms,
mean = ... ms, median = ... ms, percentile(90%) = ..." (samples/common/sampleReporting.cpp);
"GPU Compute Time" is the kernels of one query, H2D / D2H excluded, as our ``gpu_p50_ms``.
The command is built from the row (the batch it measured, the row's warm-up and minimum time,
CUDA graphs, the DLA core, a version-compatible engine's runtime) and recorded in the row.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from densedepth.util.errors import DenseDepthError

ON_JETPACK = "/usr/src/tensorrt/bin/trtexec"
TIMEOUT_S = 300.0  # one engine's run: warm-up, duration and the engine's load
_STAT = r"{name}: min = (?P<min>[\d.eE+-]+) ms, max = (?P<max>[\d.eE+-]+) ms, mean = " \
        r"(?P<mean>[\d.eE+-]+) ms, median = (?P<median>[\d.eE+-]+) ms"  # fmt: skip


def find_trtexec() -> str:
    """The trtexec to run: on PATH, else JetPack's; one clear line when there is none."""
    found = shutil.which("trtexec") or (ON_JETPACK if Path(ON_JETPACK).is_file() else None)
    if found is None:
        raise DenseDepthError(
            f"--trtexec: trtexec is not on PATH (JetPack: {ON_JETPACK}; x86: the TensorRT "
            f"tar's bin/): add its folder to PATH, or leave out --trtexec"
        )
    return found


def trtexec_command(
    engine: str | Path,
    input_name: str,
    shape: tuple[int, ...] | None,
    warmup_ms: float,
    duration_s: float,
    iterations: int,
    cuda_graph: bool = False,
    dla_core: int | None = None,
    version_compatible: bool = False,
    executable: str = "trtexec",
) -> list[str]:
    """trtexec's arguments for one row: ``shape`` (N,C,H,W) only for a dynamic engine (a
    static one runs at its own); trtexec takes whole seconds of duration (at least 1)."""
    cmd = [
        executable,
        f"--loadEngine={engine}",
        f"--warmUp={round(warmup_ms)}",
        f"--duration={max(1, math.ceil(duration_s))}",
        f"--iterations={max(1, iterations)}",
        "--avgRuns=10",
    ]
    if shape is not None:
        cmd.append(f"--shapes={input_name}:{'x'.join(str(int(d)) for d in shape)}")
    if cuda_graph:
        cmd.append("--useCudaGraph")
    if dla_core is not None:
        cmd.append(f"--useDLACore={dla_core}")
    if version_compatible:  # lets its runtime load the engine's embedded lean runtime
        cmd.append("--versionCompatible")
    return cmd


def parse_gpu_compute(text: str) -> dict[str, float]:
    """trtexec's "GPU Compute Time" summary as ``{min, max, mean, median}`` in ms (and
    ``throughput_qps``); one clear line when the output has none."""
    found_all = list(re.finditer(_STAT.format(name="GPU Compute Time"), text))
    match = found_all[-1] if found_all else None  # the last (--separateProfileRun prints two)
    if match is None:
        tail = " | ".join(text.strip().splitlines()[-3:])[-300:]
        raise DenseDepthError(f"trtexec printed no GPU Compute Time summary: {tail or 'nothing'}")
    found = {k: float(v) for k, v in match.groupdict().items()}
    qps = re.findall(r"Throughput: ([\d.eE+-]+) qps", text)
    if qps:
        found["throughput_qps"] = float(qps[-1])
    return found


def run_trtexec(cmd: list[str], timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Run ``cmd`` and return its GPU compute summary (``trtexec_gpu_median_ms`` ...) with
    the command line; a failed or timed-out run is one line naming the exit status."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise DenseDepthError(f"trtexec ran past {timeout_s:.0f} s: {' '.join(cmd)}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-2:])[-300:]
        raise DenseDepthError(f"trtexec exited with {done.returncode}: {tail}")
    stats = parse_gpu_compute(done.stdout)
    row = {f"trtexec_gpu_{k}_ms": v for k, v in stats.items() if k != "throughput_qps"}
    if "throughput_qps" in stats:
        row["trtexec_throughput_qps"] = stats["throughput_qps"]
    row["trtexec_command"] = " ".join(cmd)
    return row

"""``build-engine --target auto``: the format the bench recommends for this machine.

Either measured here (every format of the table that builds here, made from the float ONNX and
benched for latency and for accuracy on a test set; the fastest within ``max_drop`` δ1 of FP32
wins) or read from an earlier ``bench.json`` measured on this same machine.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.harness import BenchOptions, Log, gpu_name, run_bench
from bench.report import recommendation_line
from densedepth.cpu import cpu_capabilities, cpu_model
from densedepth.errors import DenseDepthError
from export.formats import DEPLOY_FORMATS


def buildable_here() -> tuple[str, ...]:
    """Keys of the formats built from ONNX that can be built and run on this machine."""
    return tuple(
        f.key for f in DEPLOY_FORMATS if f.builder is not None and f.unavailable_reason() is None
    )


def pick_for(picks: list[dict[str, Any]], meta: dict[str, Any], where: str) -> dict[str, Any]:
    """The recommendation for the model ``meta`` describes (backbone, input size)."""
    size = list(meta.get("input_size", []))
    for pick in picks:
        if pick.get("backbone") == meta.get("backbone") and list(pick["input_size"]) == size:
            return pick
    raise DenseDepthError(
        f"{where} recommends nothing for {meta.get('backbone')} "
        f"{'x'.join(map(str, size))}; bench that model here (or drop --from-bench)"
    )


def same_machine(env: dict[str, Any]) -> str | None:
    """Why a bench environment is not this machine's (CPU, its extensions, GPU), or None."""
    here = {"cpu": cpu_model(), "cpu_capabilities": cpu_capabilities()}
    for key, value in here.items():
        if env.get(key) != value:
            return f"its {key.replace('_', ' ')} is {env.get(key)!r}, here {value!r}"
    gpu = gpu_name()
    if env.get("gpu") != gpu:
        return f"its GPU is {env.get('gpu')!r}, here {gpu!r}"
    return None


def pick_from_bench(bench_json: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The recommendation an earlier bench made for this model on this machine."""
    try:
        result = json.loads(Path(bench_json).read_text())
        picks, env = result["recommended"], result["environment"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DenseDepthError(
            f"--from-bench {bench_json} is not a bench.json with recommendations; run "
            f"`cli.py bench` first"
        ) from None
    why = same_machine(env)
    if why:
        raise DenseDepthError(
            f"--from-bench {bench_json} was measured on another machine ({why}); bench here "
            f"or drop --from-bench"
        )
    return pick_for(picks, meta, str(bench_json))


def measure_and_pick(
    fp32_onnx: Path, meta: dict[str, Any], out: Path, opts: BenchOptions, log: Log
) -> dict[str, Any]:
    """Build and bench every format that builds here from ``fp32_onnx`` (report in ``out``);
    the recommendation for it."""
    keys = buildable_here()
    log(f"measuring {', '.join(keys)} on this machine (report in {out})")
    result = run_bench([fp32_onnx], out, replace(opts, build=keys), log=log)
    pick = pick_for(result["recommended"], meta, "the bench")
    log(recommendation_line(pick))
    return pick

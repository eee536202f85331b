"""Triton: repositories whose config.pbtxt Triton's own ModelConfig protobuf parses and whose
tensors match what independent readers (ONNX Runtime, OpenVINO) say of the files; and a real
Triton server (NVIDIA PyTriton, from the serving environment) started and stopped by the test
on 127.0.0.1, its answers compared with the local runner, its dynamic batching read from its
statistics, bad requests one line each. Every request loop is bounded in count and time."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from densedepth.util.errors import DenseDepthError

pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (.[triton])")
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb


def parsed(path: Path) -> pb.ModelConfig:
    """A config.pbtxt as Triton's ModelConfig (its protobuf, not our parser)."""
    return text_format.Parse(path.read_text(), pb.ModelConfig())


@pytest.fixture(scope="module")
def models(trained_tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model as a static-batch ONNX, a dynamic-batch ONNX, an OpenVINO IR, and two
    TensorRT engine files with the sidecars build-engine writes (a batch 1..4 profile and a
    static one): the engine bytes are not read, only its sidecar's shapes."""
    from export.onnx_export import export_onnx
    from export.openvino import export_openvino

    root = tmp_path_factory.mktemp("triton_models")
    static = root / "static.onnx"
    shutil.copyfile(trained_tiny["onnx"], static)
    dyn = root / "dyn.onnx"
    export_onnx(trained_tiny["ckpt"], dyn, dynamic_batch=True)
    ir = root / "ir.xml"
    export_openvino(static, ir)
    meta = json.loads(Path(str(trained_tiny["onnx"]) + ".json").read_text())
    engines = {}
    for name, lo in (("profile", 1), ("fixed", 4)):
        engine = root / f"{name}.engine"
        engine.write_bytes(b"not read")
        shapes = {"rgb": {"min": [lo, 3, 64, 64], "opt": [2 if lo == 1 else 4, 3, 64, 64],
                          "max": [4, 3, 64, 64]}}  # fmt: skip
        side = {"format": "tensorrt-fp16", "precision": "fp16", "shapes": shapes,
                "input_size": [64, 64], "backbone": "densenet121", "decoder_width": 0.125,
                "min_depth": 0.1, "max_depth": 10.0,
                "variant": meta.get("variant", {})}  # fmt: skip
        Path(str(engine) + ".json").write_text(json.dumps(side))
        engines[name] = engine
    return {"static": static, "dyn": dyn, "ir": ir, **engines}


def test_triton_repo_writes_what_the_files_say(models: dict[str, Path], tmp_path: Path) -> None:
    """One model per file in Triton's layout; each config parsed by Triton's ModelConfig and
    its names, types and dims equal to ONNX Runtime's / OpenVINO's reading of the file or the
    engine's profile: static batch -> max_batch_size 0 with the full dims, dynamic ->
    --max-batch (ONNX, IR) or the profile's largest batch (engine), with dynamic batching."""
    import onnxruntime as ort
    import openvino as ov
    from typer.testing import CliRunner

    from cli import app

    out = tmp_path / "repo"
    files = [models[k] for k in ("static", "dyn", "ir", "profile", "fixed")]
    result = CliRunner().invoke(app, ["triton-repo", *map(str, files), "--out", str(out),
                                      "--max-batch", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    cfg = {k: parsed(out / k / "config.pbtxt") for k in ("static", "dyn", "ir", "profile", "fixed")}
    for key in ("static", "dyn"):
        sess = ort.InferenceSession(str(models[key]), providers=["CPUExecutionProvider"])
        i, o = sess.get_inputs()[0], sess.get_outputs()[0]
        c = cfg[key]
        assert c.platform == "onnxruntime_onnx" and (out / key / "1" / "model.onnx").is_file()
        batched = not isinstance(i.shape[0], int)
        assert c.max_batch_size == (8 if batched else 0)
        want_in = [int(d) for d in (i.shape[1:] if batched else i.shape)]
        assert (c.input[0].name, list(c.input[0].dims)) == (i.name, want_in)
        assert i.type == "tensor(float)" and pb.DataType.Name(c.input[0].data_type) == "TYPE_FP32"
        assert c.output[0].name == o.name and c.output[0].dims[-2:] == [32, 32]
        assert c.HasField("dynamic_batching") == batched
        assert c.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert list(cfg["dyn"].dynamic_batching.preferred_batch_size) == [2, 4, 8]
    model = ov.Core().read_model(str(models["ir"]))
    ir = cfg["ir"]
    assert ir.backend == "openvino" and ir.max_batch_size == 0
    assert list(ir.input[0].dims) == [int(d) for d in model.inputs[0].get_shape()]
    assert ir.input[0].name == model.inputs[0].get_any_name()
    assert (out / "ir" / "1" / "model.bin").read_bytes() == models["ir"].with_suffix(
        ".bin"
    ).read_bytes()
    prof, fixed = cfg["profile"], cfg["fixed"]
    assert prof.platform == "tensorrt_plan" and prof.max_batch_size == 4
    assert list(prof.input[0].dims) == [3, 64, 64] and list(prof.output[0].dims) == [1, 32, 32]
    assert list(prof.dynamic_batching.preferred_batch_size) == [2, 4]
    assert prof.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert fixed.max_batch_size == 0 and list(fixed.input[0].dims) == [4, 3, 64, 64]
    assert not fixed.HasField("dynamic_batching")
    warm = prof.model_warmup[0]
    assert warm.inputs["rgb"].zero_data and list(warm.inputs["rgb"].dims) == [3, 64, 64]
    params = {k: v.string_value for k, v in prof.parameters.items()}
    assert params["depth_units"] == "metres" and (params["min_depth"], params["max_depth"]) == (
        "0.1",
        "10",
    )
    assert json.loads(params["variant"]) == json.loads(
        {k: v.string_value for k, v in cfg["static"].parameters.items()}["variant"])  # fmt: skip


def test_triton_repo_accelerators_and_refusals(models: dict[str, Path], tmp_path: Path) -> None:
    """--accelerator tensorrt / openvino on ONNX (ONNX Runtime's execution accelerators);
    refused in one line, with nothing written: a checkpoint, two files of one name, an
    accelerator on an IR, a folder of someone else's files."""
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    for accel, where in (("tensorrt", "gpu_execution_accelerator"),
                         ("openvino", "cpu_execution_accelerator")):  # fmt: skip
        out = tmp_path / accel
        result = runner.invoke(app, ["triton-repo", str(models["dyn"]), "--out", str(out),
                                     "--accelerator", accel])  # fmt: skip
        assert result.exit_code == 0, result.output
        c = parsed(out / "dyn" / "config.pbtxt")
        assert [a.name for a in getattr(c.optimization.execution_accelerators, where)] == [accel]
    twin = tmp_path / "other" / "dyn.onnx"
    twin.parent.mkdir()
    shutil.copyfile(models["dyn"], twin)
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"\0")
    cases = [
        ([str(ckpt)], "Triton serves"),
        ([str(models["dyn"]), str(twin)], "both be named 'dyn'"),
        ([str(models["ir"]), "--accelerator", "openvino"], "is for ONNX models"),
    ]
    for args, match in cases:
        out = tmp_path / "none"
        bad = runner.invoke(app, ["triton-repo", *args, "--out", str(out)])
        errors = [ln for ln in bad.output.splitlines() if ln.startswith("error:")]
        assert bad.exit_code == 1 and len(errors) == 1 and match in errors[0], bad.output
        assert not out.exists()
    bad = runner.invoke(app, ["triton-repo", str(models["dyn"]), "--out", str(foreign)])
    assert bad.exit_code == 1 and sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_a_config_that_disagrees_with_its_model_is_refused(models: dict[str, Path]) -> None:
    """check_config compares the parsed config with the file (dims, names, batch); Triton's
    parser names the line and column of a field that does not exist."""
    from serve.repository import RepositoryError, check_config, config_text, read_served_model

    model = read_served_model(models["dyn"])
    text = config_text(model)
    assert check_config(text, model).max_batch_size == 8
    with pytest.raises(RepositoryError, match="differs from the file"):
        check_config(text.replace("dims: [ 3, 64, 64 ]", "dims: [ 3, 64, 32 ]", 1), model)
    with pytest.raises(RepositoryError, match="max_batch_size"):
        check_config(text.replace("max_batch_size: 8", "max_batch_size: 4"), model)
    with pytest.raises(RepositoryError, match=r"not a valid Triton ModelConfig: \d+:\d+"):
        check_config(text.replace("max_queue_delay_microseconds", "max_queue_delay_us"), model)


# ---- a real Triton server -------------------------------------------------------------


def serving_python_or_skip() -> Path:
    from serve.launch import serving_python

    try:
        return serving_python()
    except DenseDepthError as exc:
        pytest.skip(f"no serving environment: {exc}")


@pytest.fixture(scope="module")
def server(models: dict[str, Path]) -> Iterator:
    """`serve`'s server for the dynamic-batch ONNX on free loopback ports, stopped after; a
    20 ms queue delay so that concurrent requests meet in the queue on a slow CPU."""
    from serve.launch import start_server

    python = serving_python_or_skip()
    srv = start_server(models["dyn"], "tiny", http_port=0, grpc_port=0, max_batch=8,
                       queue_delay_us=20_000, threads=1, python=python)  # fmt: skip
    try:
        yield srv
    finally:
        assert srv.stop() == 0  # a clean stop on SIGINT
        assert srv.process.poll() is not None


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 64, 64), dtype=np.float32)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_served_model_answers_as_the_local_runner(
    server, models: dict[str, Path], protocol: str
) -> None:
    """A batch of 5 through Triton (HTTP and gRPC) equals the local ONNX runner's depth to
    float32 rounding (the same ONNX Runtime graph in another process; batches of any size);
    the served model says what triton-repo's parameters say (backbone, precision, range)."""
    from engines.base import load_runner
    from engines.triton_runner import TritonRunner

    url = server.http_url if protocol == "http" else server.grpc_url
    x = frames(5)
    with TritonRunner(url, "tiny", protocol) as remote, load_runner(models["dyn"]) as local:
        assert remote.input_shape == local.input_shape and remote.max_batch == 8
        assert (remote.info.backbone, remote.precision) == ("densenet121", "fp32")
        assert remote.info.depth_range == local.info.depth_range
        np.testing.assert_allclose(remote(x), local(x), rtol=1e-5, atol=1e-6)


def test_dynamic_batching_forms_batches_under_concurrent_load(server) -> None:
    """16 single-image requests from 8 concurrent clients: Triton's statistics count 16
    inferences in fewer executions, with batches larger than one."""
    from bench.server_load import measure_level
    from engines.triton_runner import TritonRunner

    with TritonRunner(server.http_url, "tiny") as remote:
        row = measure_level(remote, frames(4), concurrency=8, requests=16, max_seconds=60)
    assert row["requests"] == 16 == row["server_inferences"], row
    assert row["server_executions"] < 16 and max(row["batches"]) > 1, row
    assert sum(size * n for size, n in row["batches"].items()) == 16
    assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_are_one_line_each(server, protocol: str) -> None:
    """A wrong shape and a wrong data type (sent as such: the server's own refusal), a model
    the server does not have, and a server that is not up: one line each."""
    import importlib

    from engines.triton_runner import TritonError, TritonRunner, triton_call
    from serve.launch import free_port

    client_mod = importlib.import_module(f"tritonclient.{protocol}")
    url = server.http_url if protocol == "http" else server.grpc_url
    lines = []
    with TritonRunner(url, "tiny", protocol) as remote:
        bad = (
            ([1, 3, 32, 32], np.float32, "unexpected shape"),
            ([1, 3, 64, 64], np.float64, "data-type is 'FP64'"),
        )
        for shape, dtype, match in bad:
            inp = client_mod.InferInput("rgb", shape, "FP64" if dtype == np.float64 else "FP32")
            inp.set_data_from_numpy(np.zeros(shape, dtype))
            with pytest.raises(TritonError, match=match) as err:
                triton_call("an inference request", url, remote.client.infer, "tiny", [inp])
            lines.append(str(err.value))
        with pytest.raises(DenseDepthError, match="expects batches of N x 3x64x64"):
            remote(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(TritonError, match="no ready model 'nope'") as err:
        TritonRunner(url, "nope", protocol)
    lines.append(str(err.value))
    with pytest.raises(TritonError, match="no Triton server answers") as err:
        TritonRunner(f"127.0.0.1:{free_port()}", "tiny", protocol, timeout=5)
    lines.append(str(err.value))
    assert all("\n" not in line for line in lines), lines


def test_bench_server_gives_the_served_model_a_row_and_a_sweep(
    server, models: dict[str, Path], tmp_path: Path
) -> None:
    """bench --server: the served model's row beside the local file's (same δ1: the same
    graph), the concurrency sweep in server_load.json / .md, and perf_analyzer's input JSON
    holding real frames (base64 float32 of the input's shape)."""
    from typer.testing import CliRunner

    from cli import app

    out = tmp_path / "bench"
    args = ["bench", str(models["dyn"]), "--server", server.http_url, "--model", "tiny",
            "--concurrency", "1", "--concurrency", "2", "--requests", "8", "--iters", "3",
            "--min-time", "0", "--warmup", "1", "--warmup-ms", "0", "--limit", "4", "--out",
            str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "bench.json").read_text())["rows"]
    served = next(r for r in rows if r["engine"] == "triton-http")
    local = next(r for r in rows if r["engine"] == "onnxruntime")
    assert served["delta1"] == pytest.approx(local["delta1"], abs=1e-6)
    sweep = json.loads((out / "server_load.json").read_text())
    assert [r["concurrency"] for r in sweep["levels"]] == [1, 2]
    assert all(r["requests"] == 8 == r["server_inferences"] for r in sweep["levels"])
    assert "| concurrency |" in (out / "server_load.md").read_text()
    data = json.loads((out / "perf_analyzer_input.json").read_text())["data"]
    first = np.frombuffer(base64.b64decode(data[0]["rgb"]["b64"]), np.float32)
    assert data[0]["rgb"]["shape"] == [3, 64, 64] and first.size == 3 * 64 * 64
    assert first.min() >= 0.0 and first.max() <= 1.0


def test_serve_refuses_bad_input_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve: a file that is not a model, a bad name, no serving environment: one line each,
    exit 1, no server started."""
    from typer.testing import CliRunner

    from cli import app

    model = tmp_path / "m.onnx"
    model.write_bytes(b"\0")
    runner = CliRunner()
    monkeypatch.setenv("DENSEDEPTH_SERVE_PYTHON", str(tmp_path / "no" / "python"))
    for args, match in ((["serve", str(tmp_path / "x.txt")], "not a model file"),
                        (["serve", str(model), "--name", "a b"], "Triton takes"),
                        (["serve", str(model)], "no serving environment")):  # fmt: skip
        bad = runner.invoke(app, args)
        errors = [ln for ln in bad.output.splitlines() if ln.startswith("error:")]
        assert bad.exit_code == 1 and len(errors) == 1 and match in errors[0], bad.output


def test_perf_analyzer_input_has_the_full_dims_of_a_model_without_batching(
    tmp_path: Path,
) -> None:
    """perf_analyzer reads an entry's shape as the request's tensor: without the batch for a
    batching model, the model's full dims for max_batch_size 0 (a fixed batch of 2 here: the
    three frames taken in turn fill two requests, the third frame first again)."""
    from bench.server_load import write_perf_analyzer_input

    frames = np.arange(3 * 3 * 4 * 5, dtype=np.float32).reshape(3, 3, 4, 5)
    path = write_perf_analyzer_input(tmp_path / "b.json", "rgb", frames)
    data = json.loads(path.read_text())["data"]
    assert [d["rgb"]["shape"] for d in data] == [[3, 4, 5]] * 3
    path = write_perf_analyzer_input(tmp_path / "f.json", "rgb", frames, fixed_batch=2)
    data = json.loads(path.read_text())["data"]
    assert [d["rgb"]["shape"] for d in data] == [[2, 3, 4, 5]] * 2
    got = [np.frombuffer(base64.b64decode(d["rgb"]["b64"]), np.float32).reshape(2, 3, 4, 5)
           for d in data]  # fmt: skip
    np.testing.assert_array_equal(np.concatenate(got), frames[[0, 1, 2, 0]])

"""The runner contract: every CPU runner (checkpoint, ONNX fp32, OpenVINO where installed) has
the whole ``engines.base.Runner`` protocol, reads its ModelInfo from what the file records,
closes, and ``load_runner`` honours ``format``, ``input_size`` and ``threads``."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from densedepth.camera import NYU_KINECT
from densedepth.checkpoint import load_checkpoint, save_checkpoint
from densedepth.util.errors import DenseDepthError
from densedepth.util.onnx_io import parity_input, read_metadata, set_metadata
from densedepth.variant import KITTI, ModelVariant
from engines import ModelInfo, Runner, as_runner, load_runner, model_info
from engines.onnx_runner import OnnxRunner
from engines.torch_runner import TorchRunner

CAMERA = {"name": "kinect-v1", "fx": 518.86, "fy": 519.47, "cx": 325.58, "cy": 253.74}


@pytest.fixture(scope="module")
def files(trained_tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The session's tiny checkpoint and its 64x64 fp32 ONNX (tests/conftest.py), copies of
    both that record more (published weights, a training camera, KITTI's depth range), and
    an OpenVINO IR of the ONNX where OpenVINO is installed."""
    root = tmp_path_factory.mktemp("runners")
    ckpt = load_checkpoint(trained_tiny["ckpt"])
    config = {**ckpt["config"], "variant": ModelVariant(depth=KITTI).to_dict(), "camera": CAMERA}
    recorded_ckpt = save_checkpoint(
        root / "recorded.pt",
        {**ckpt, "config": config, "source": {"format": "keras-h5", "file": "/w/nyu.h5"}},
    )
    proto = onnx.load(str(trained_tiny["onnx"]))
    set_metadata(proto, {"weights_origin": "published Keras nyu.h5", "camera": CAMERA})
    recorded_onnx = root / "recorded.onnx"
    onnx.save(proto, str(recorded_onnx))
    found = {"ckpt": trained_tiny["ckpt"], "onnx": trained_tiny["onnx"],
             "recorded_ckpt": recorded_ckpt, "recorded_onnx": recorded_onnx}  # fmt: skip
    if importlib.util.find_spec("openvino") is not None:
        from export.build import BuildOptions, build
        from export.formats import get_format

        src = root / "model_fp32.onnx"
        shutil.copy(trained_tiny["onnx"], src)
        found["xml"] = Path(
            build(get_format("openvino", "fp32"), src, root, BuildOptions())["path"]
        )
    return found


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """TorchRunner(threads=N) sets PyTorch's threads for the process: put them back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


KINDS = ["torch", "torch-bf16", "onnx", "openvino"]


def open_kind(files: dict[str, Path], kind: str, **kw: Any) -> Runner:
    if kind == "openvino" and "xml" not in files:
        pytest.skip("OpenVINO is not installed (pip install '.[openvino]')")
    path = {"torch": "ckpt", "torch-bf16": "ckpt", "onnx": "onnx", "openvino": "xml"}[kind]
    fmt = "torch-bf16" if kind == "torch-bf16" else None
    return load_runner(files[path], device="cpu", format=fmt, **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_every_cpu_runner_has_the_whole_protocol(files: dict[str, Path], kind: str) -> None:
    runner = open_kind(files, kind)
    assert isinstance(runner, Runner)
    assert isinstance(runner.name, str) and runner.name.split(":")[1]
    assert runner.precision == ("bf16" if kind == "torch-bf16" else "fp32")
    assert runner.device == "cpu"
    assert runner.input_shape == (1, 3, 64, 64)
    assert all(type(d) is int for d in runner.input_shape)
    assert runner.max_batch is None or (type(runner.max_batch) is int and runner.max_batch >= 1)
    assert type(runner.info) is ModelInfo
    assert type(runner.threads) is int and runner.threads >= 0
    providers = {"onnx": ["CPUExecutionProvider"], "openvino": ["CPU"]}.get(kind, [])
    assert runner.providers == providers and all(type(p) is str for p in runner.providers)
    assert type(runner.compile_seconds) is float and runner.compile_seconds == 0.0
    # info agrees with the runner's own attributes, and the old shortcuts still read it
    assert runner.info.precision == runner.precision
    assert runner.info.input_size == runner.input_shape[2:]
    assert (runner.backbone, runner.decoder_width) == ("densenet121", 0.125)  # type: ignore[attr-defined]
    assert runner.depth_range == runner.info.depth_range == (0.1, 10.0)  # type: ignore[attr-defined]
    depth = runner(parity_input((64, 64), batch=2))
    assert depth.shape == (2, 1, 32, 32) and depth.dtype == np.float32
    assert runner.__enter__() is runner
    runner.close()


def test_protocol_is_not_satisfied_by_a_bare_callable() -> None:
    class Bare:  # what older code called a runner: no info, close, threads ...
        name, precision, device, input_shape = "bare:x", "fp32", "cpu", (1, 3, 32, 32)
        backbone = "densenet121"

        def __call__(self, batch: np.ndarray) -> np.ndarray:
            return np.ones((batch.shape[0], 1, 16, 16), np.float32)

    bare = Bare()
    assert not isinstance(bare, Runner)
    runner = as_runner(bare)  # the one place that fills in the defaults
    assert isinstance(runner, Runner) and as_runner(runner) is runner
    assert (runner.max_batch, runner.threads, runner.providers) == (None, 0, [])
    assert runner.info.backbone == "densenet121" and runner.info.input_size == (32, 32)
    assert runner(np.zeros((3, 3, 32, 32), np.float32)).shape == (3, 1, 16, 16)
    with runner:
        pass
    with pytest.raises(DenseDepthError, match="closed"):
        runner(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(DenseDepthError, match="not a runner"):
        as_runner(object())


def test_info_is_what_the_files_record(files: dict[str, Path]) -> None:
    config = load_checkpoint(files["ckpt"])["config"]
    meta = read_metadata(files["onnx"])
    with load_runner(files["ckpt"], device="cpu") as t, load_runner(files["onnx"]) as o:
        assert t.info.backbone == config["backbone"] == meta["backbone"] == "densenet121"
        assert t.info.decoder_width == config["decoder_width"] == meta["decoder_width"]
        assert o.info.variant == meta["variant"]
        assert (o.info.min_depth, o.info.max_depth) == (meta["min_depth"], meta["max_depth"])
        assert o.info.depth_numerator == meta["depth_numerator"]
        assert o.info.input_size == tuple(meta["input_size"]) == tuple(config["input_size"])
        assert o.info.weights_origin == ""
        # a synthetic run records its generator's camera: the NYU Kinect's, scaled to 64x64
        kinect = {k: v for k, v in NYU_KINECT.scaled(64, 64).to_dict().items() if k != "source"}
        assert o.info.camera is not None and o.info.camera["source"].startswith("synthetic")
        assert {k: o.info.camera[k] for k in kinect} == pytest.approx(kinect)
        assert t.info == o.info  # the checkpoint and its export describe the same model
    # what only some files record: published weights, a training camera, another depth range
    with load_runner(files["recorded_ckpt"], device="cpu") as t:
        assert t.info.weights_origin == "published Keras nyu.h5"
        assert t.info.camera == CAMERA
        assert t.info.depth_range == (1.0, 80.0) and t.info.depth_numerator == 80.0
        assert t.info.variant == ModelVariant(depth=KITTI).to_dict()
        assert t.depth_norm == KITTI  # type: ignore[attr-defined]
    with load_runner(files["recorded_onnx"], device="cpu") as o:
        assert o.info.weights_origin == "published Keras nyu.h5"
        assert o.info.camera == CAMERA
        assert o.weights_origin == o.info.weights_origin  # type: ignore[attr-defined]


def test_model_info_from_a_sidecar_without_depth_numbers() -> None:
    """A TensorRT sidecar carries the variant but no depth_numerator: the variant's is used;
    with nothing at all recorded, NYU's range and the default variant."""
    kitti = ModelVariant(depth=KITTI).to_dict()
    sidecar = {"backbone": "densenet169", "precision": "int8", "input_size": [480, 640],
               "min_depth": 1.0, "max_depth": 80.0, "variant": kitti}  # fmt: skip
    info = model_info(sidecar)
    assert (info.precision, info.input_size, info.depth_norm) == ("int8", (480, 640), KITTI)
    bare = model_info({})
    assert bare.depth_range == (0.1, 10.0) and bare.variant == ModelVariant().to_dict()
    assert bare.backbone == "" and bare.input_size is None and bare.camera is None


@pytest.mark.parametrize("kind", ["torch", "onnx", "openvino"])
def test_with_block_closes_the_runner(files: dict[str, Path], kind: str) -> None:
    with open_kind(files, kind) as runner:
        assert runner(parity_input((64, 64))).shape == (1, 1, 32, 32)
    held = {"torch": "model", "onnx": "session", "openvino": "compiled"}[kind]
    assert getattr(runner, held) is None  # the session / model / compiled IR is let go
    with pytest.raises(DenseDepthError, match="closed"):
        runner(parity_input((64, 64)))
    runner.close()  # twice: harmless


def test_format_torch_bf16_is_a_bf16_torch_runner(files: dict[str, Path]) -> None:
    x = parity_input((64, 64))
    with load_runner(files["ckpt"], device="cpu", format="torch-bf16") as bf16:
        assert type(bf16) is TorchRunner and bf16.precision == "bf16"
        assert bf16.arith.dtype == torch.bfloat16  # type: ignore[attr-defined]
        got = bf16(x)
    with load_runner(files["ckpt"], device="cpu", format="torch-fp32") as fp32:
        assert fp32.precision == "fp32"
        want = fp32(x)
    assert not np.array_equal(got, want)  # really run in bf16 ...
    assert np.mean(np.abs(got - want)) < 0.05 * np.mean(want)  # ... and still the model


def test_input_size_runs_the_checkpoint_at_that_size(files: dict[str, Path]) -> None:
    with load_runner(files["ckpt"], device="cpu", input_size=(96, 128)) as runner:
        assert runner.input_shape == (1, 3, 96, 128) and runner.info.input_size == (96, 128)
        assert runner(parity_input((96, 128))).shape == (1, 1, 48, 64)
    with load_runner(files["onnx"], input_size=(64, 64)) as same:  # its own size: fine
        assert same.input_shape == (1, 3, 64, 64)
    with pytest.raises(DenseDepthError) as err:
        load_runner(files["onnx"], input_size=(96, 128))
    assert "fixed input size 64x64, not 96x128" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_torch_runner_threads_are_applied_and_reported(files: dict[str, Path]) -> None:
    torch.set_num_threads(2)
    runner = TorchRunner(files["ckpt"], device="cpu", threads=1)
    assert torch.get_num_threads() == 1 and runner.threads == 1
    torch.set_num_threads(2)
    with load_runner(files["ckpt"], device="cpu", threads=1) as again:
        assert torch.get_num_threads() == 1 and again.threads == 1
    with load_runner(files["ckpt"], device="cpu") as default:  # 0: left as it is
        assert default.threads == torch.get_num_threads() == 1
    with load_runner(files["onnx"], threads=1) as ort:
        assert type(ort) is OnnxRunner and ort.threads == 1


@pytest.mark.parametrize(
    ("file", "key", "words"),
    [
        ("onnx", "torch-bf16", "format torch-bf16 runs .pt/.pth files, not .onnx"),
        ("ckpt", "onnx-int8", "format onnx-int8 runs .onnx files, not .pt"),
        ("ckpt", "openvino-fp32", "for .pt use torch-fp32, torch-bf16, torch.compile-fp32"),
        ("onnx", "onnx-int8", "its precision is fp32"),
        ("onnx", "tensorrt_fp16", "unknown format 'tensorrt_fp16'; choose one of: torch-fp32"),
    ],
)
def test_a_format_that_does_not_fit_the_file_is_one_line(
    files: dict[str, Path], file: str, key: str, words: str
) -> None:
    with pytest.raises(DenseDepthError) as err:
        load_runner(files[file], device="cpu", format=key)
    assert words in str(err.value)
    assert len(str(err.value).splitlines()) == 1

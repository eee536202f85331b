"""TensorRT without a GPU: the builder and runner against NVIDIA's real Python API.

The API comes from manifests of the real bindings wheels (tests/tensorrt_api.py: 8.6, 10.0,
10.8, 10.16, 11.4, one per code path of ``build_plan``); ``fake_tensorrt`` builds a module with
exactly those names and signatures and simulates what a build and an inference need, and
``fake_cuda`` stands in for the GPU behind pycuda and cuda-python. A name, keyword or enum the
real bindings lack fails here as it would on a GPU machine.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import fake_cuda
import numpy as np
import onnx
import pytest
from fake_tensorrt import FakeTensorRT, parse_signature
from tensorrt_api import load_manifest, manifest_versions

from calib.calibration import CalibrationSet
from densedepth.util.errors import DenseDepthError, ExportError
from densedepth.util.onnx_io import read_sidecar
from densedepth.util.outputs import record_written
from engines import load_runner
from export.build import BuildOptions, build
from export.formats import get_format
from export.onnx_export import export_onnx
from export.tensorrt import build_engine, build_plan
from export.tensorrt_versions import parse_version

VERSIONS = manifest_versions()
LEGACY = [v for v in VERSIONS if parse_version(v) < (10, 1)]


@pytest.fixture(scope="module")
def sources(trained_tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny model's fp32 ONNX (static and dynamic batch), 4 calibration images, and the
    calibration ranges cache their INT8 builds share (copied into each build folder)."""
    root = tmp_path_factory.mktemp("trt-sources")
    static = root / "model_fp32.onnx"
    shutil.copy(trained_tiny["onnx"], static)
    shutil.copy(str(trained_tiny["onnx"]) + ".json", str(static) + ".json")
    dynamic = root / "dyn" / "model_fp32.onnx"
    export_onnx(trained_tiny["ckpt"], dynamic, dynamic_batch=True)
    calib = CalibrationSet(trained_tiny["calib"].images[:4].copy(), "trained-calib-4")
    warm = root / "warm"
    opts = BuildOptions(calib=calib, producer="onnxruntime", onnx_only=True, int8_float="fp32")
    build(get_format("tensorrt", "int8"), static, warm, opts)
    return {"static": static, "dynamic": dynamic, "calib": calib,
            "ranges": sorted(warm.glob("calib_*.json"))}  # fmt: skip


def onnx_reference(path: str, x: np.ndarray) -> np.ndarray:
    """What ONNX Runtime computes from the ONNX an engine was built from (the fake engine
    runs that same ONNX, so the runner must return exactly this)."""
    return load_runner(path, device="cpu")(x)


def stage(sources: dict, folder: Path, kind: str = "static") -> Path:
    """A build folder holding the fp32 ONNX (+ sidecar) and the shared ranges cache."""
    folder.mkdir(parents=True, exist_ok=True)
    src = sources[kind]
    shutil.copy(src, folder / src.name)
    shutil.copy(str(src) + ".json", folder / (src.name + ".json"))
    for cache in sources["ranges"]:
        record_written(Path(shutil.copy(cache, folder / cache.name)))  # ours: reused
    return folder / src.name


@pytest.fixture
def gpu_with(monkeypatch: pytest.MonkeyPatch):
    """``gpu_with(version, binding)``: a fake GPU behind the binding and the fake tensorrt of
    that version in ``sys.modules``; returns (FakeTensorRT, FakeGPU)."""

    def install(version: str, binding: str = "cuda-python", **options):
        gpu = fake_cuda.FakeGPU()
        fake_cuda.install(monkeypatch, gpu, binding)
        fake = FakeTensorRT(load_manifest(version), gpu, **options)
        monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
        return fake, gpu

    return install


def expected_flags(version: str, precision: str, int8_float: str, legacy: bool) -> list[str]:
    v = parse_version(version)
    if v >= (10, 12):
        return []
    if precision == "fp16":
        return ["FP16"]
    return ["INT8", "FP16"] if int8_float == "fp16" else ["INT8"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("precision", "int8_float"), [("fp16", "fp16"), ("int8", "fp16"), ("int8", "fp32")]
)
def test_build_and_run_on_every_tensorrt_path(
    version: str, precision: str, int8_float: str, sources: dict, gpu_with, tmp_path: Path
) -> None:
    fake, gpu = gpu_with(version, "cuda-python" if precision == "int8" else "pycuda")
    fp32 = stage(sources, tmp_path)
    opts = BuildOptions(calib=sources["calib"], producer="onnxruntime", int8_float=int8_float,
                        timing_cache=str(tmp_path / "timing.cache"))  # fmt: skip
    record = build(get_format("tensorrt", precision), fp32, tmp_path, opts)
    plan = build_plan(parse_version(version), precision, int8_float=int8_float)

    # the plan this version takes, as TensorRT saw it
    assert record["flags"] == expected_flags(version, precision, int8_float, False)
    assert record["strongly_typed"] == (parse_version(version) >= (10, 12))
    typed_bit = 1 << 1 if parse_version(version) >= (10, 12) and version[:2] == "10" else 0
    explicit_bit = 1 if version.startswith("8.") else 0
    assert f"Builder.create_network(flags={typed_bit | explicit_bit})" in fake.calls
    parsed = onnx.load(record["source_onnx"])
    names = {
        "fp32": "model_fp32.onnx",
        "fp16": "model_fp16.onnx",
        "int8-qdq-fp32": "model_int8_trt.onnx",
        "int8-qdq-fp16": "model_int8_fp16_trt.onnx",
    }
    assert Path(record["source_onnx"]).name == names[plan.onnx_kind]  # fmt: skip
    if plan.max_opset:
        assert parsed.opset_import[0].version <= plan.max_opset
    assert fake.used_deprecated() == []  # nothing this version deprecates, on its path
    assert record["tensorrt_version"] == version and record["gpu"] == gpu.name
    assert read_sidecar(record["path"])["source_onnx_sha256"] == record["source_onnx_sha256"]
    assert gpu.stack == [] and gpu.memory == {}  # contexts popped, nothing left allocated
    assert record["timing_cache"] == "new" and (tmp_path / "timing.cache").is_file()

    # the runner reads the engine back and runs it on the fake GPU
    runner = load_runner(record["path"])
    x = sources["calib"].images[:2]
    expected = onnx_reference(record["source_onnx"], x)
    got = runner(x)
    assert got.shape == (2, 1, 32, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert runner.precision == precision and runner.input_shape == (1, 3, 64, 64)
    assert gpu.stack == [] and gpu.launches == 2  # a static batch-1 engine: one launch each
    runner.close()
    assert gpu.memory == {} and gpu.streams == set()
    assert fake.used_deprecated() == []


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_calibrator_pulls_batches_from_device_memory(
    version: str, sources: dict, gpu_with, tmp_path: Path
) -> None:
    fake, gpu = gpu_with(version, "pycuda")
    fp32 = stage(sources, tmp_path)
    opts = BuildOptions(calib=sources["calib"], legacy_calibrator=True, int8_float="fp16")
    record = build(get_format("tensorrt", "int8"), fp32, tmp_path, opts)
    assert record["calibrator"] == "IInt8EntropyCalibrator2"
    assert record["source_onnx"].endswith("model_fp32.onnx")  # implicit INT8: the fp32 ONNX
    assert fake.options["calibration_batches"] == len(sources["calib"])
    caches = list(tmp_path.glob("trt_calib_*.cache"))
    assert len(caches) == 1 and caches[0].read_bytes().startswith(b"TRT-fake")
    assert gpu.stack == [] and gpu.memory == {}  # the calibrator's buffer was freed
    assert "Device.retain_primary_context" in gpu.calls
    # a second build reads the keyed cache instead of calibrating again
    build(get_format("tensorrt", "int8"), fp32, tmp_path, opts)
    assert fake.options["calibration_batches"] == 0
    # the calibrator allocates in the context the build holds; outside one, CUDA refuses
    from export.cuda import cuda_backend
    from export.tensorrt import make_entropy_calibrator

    with pytest.raises(fake_cuda.FakeCudaError, match="INVALID_CONTEXT"):
        make_entropy_calibrator(fake.module, cuda_backend(), sources["calib"], tmp_path / "c")


@pytest.mark.parametrize("version", ["10.8.0.43", "10.16.1.11"])
def test_the_deprecated_calibrator_still_builds_on_10_x(
    version: str, gpu_with, sources: dict, tmp_path: Path
) -> None:
    """TensorRT 10.1 .. 10.x deprecated the implicit calibrator but kept it: --legacy-calibrator
    builds there (weakly typed with the INT8 flag, even on 10.12+) and the sidecar says which
    path built the engine; 11 removed it."""
    fake, _gpu = gpu_with(version)
    fp32 = stage(sources, tmp_path)
    opts = BuildOptions(calib=sources["calib"], legacy_calibrator=True)
    record = build(get_format("tensorrt", "int8"), fp32, tmp_path, opts)
    assert record["int8_path"] == (
        "implicit calibrator (IInt8EntropyCalibrator2, deprecated since TensorRT 10.1)"
    )
    assert record["flags"] == ["INT8", "FP16"] and record["strongly_typed"] is False
    assert fake.options["calibration_batches"] == len(sources["calib"])
    deprecated = fake.used_deprecated()
    assert any(d.startswith("IInt8EntropyCalibrator2") for d in deprecated), deprecated
    qdq = build(get_format("tensorrt", "int8"), fp32, tmp_path / "qdq",
                BuildOptions(calib=sources["calib"], producer="onnxruntime"))  # fmt: skip
    assert qdq["int8_path"] == "explicit Q/DQ"


def test_no_calibrator_in_11(gpu_with, sources: dict, tmp_path: Path) -> None:
    gpu_with("11.4.0.106")
    fp32 = stage(sources, tmp_path)
    opts = BuildOptions(calib=sources["calib"], legacy_calibrator=True)
    with pytest.raises(ExportError, match="no implicit INT8 calibrator"):
        build(get_format("tensorrt", "int8"), fp32, tmp_path, opts)
    fake, _ = gpu_with("11.4.0.106")
    with pytest.raises(AttributeError, match="IInt8EntropyCalibrator2"):
        fake.module.IInt8EntropyCalibrator2  # noqa: B018 (removed in TensorRT 11)


@pytest.mark.parametrize("binding", ["pycuda", "cuda-python"])
@pytest.mark.parametrize(("max_batch", "opt_batch"), [(1, 1), (4, 1), (4, 2)])
def test_dynamic_batch_engine_sets_the_input_shape(
    binding: str, max_batch: int, opt_batch: int, sources: dict, gpu_with, tmp_path: Path
) -> None:
    fake, gpu = gpu_with("10.16.1.11", binding)
    fp32 = stage(sources, tmp_path, "dynamic")
    opts = BuildOptions(calib=sources["calib"], max_batch=max_batch, opt_batch=opt_batch)
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, opts)
    # kernels are tuned for the opt batch (default 1: single images, the camera), not the max
    assert record["shapes"]["rgb"] == {"min": [1, 3, 64, 64], "opt": [opt_batch, 3, 64, 64],
                                       "max": [max_batch, 3, 64, 64]}  # fmt: skip
    set_shape = [c for c in fake.calls if c.startswith("IOptimizationProfile.set_shape")]
    assert f"opt=[{opt_batch}, 3, 64, 64]" in set_shape[0]
    runner = load_runner(record["path"])
    assert runner.dynamic and runner.max_batch == max_batch
    x = np.concatenate([sources["calib"].images] * 2)[:6]
    got = runner(x)
    np.testing.assert_allclose(got, onnx_reference(record["source_onnx"], x), atol=1e-6)
    shapes = [c for c in fake.calls if c.startswith("IExecutionContext.set_input_shape")]
    if max_batch == 1:  # min = max = 1: the input still has batch -1, so its shape is set
        assert shapes == ["IExecutionContext.set_input_shape(name='rgb', shape=(1, 3, 64, 64))"]
        assert gpu.launches == 6
    else:  # 6 images in batches of at most 4: shapes 4, then 2
        assert [s.split("shape=")[1] for s in shapes] == ["(4, 3, 64, 64))", "(2, 3, 64, 64))"]
        assert gpu.launches == 2
    runner.close()
    assert gpu.memory == {}


@pytest.mark.parametrize(("io_dtype", "itemsize", "tol"), [("HALF", 2, 2e-3), ("BF16", 2, 2e-2)])
def test_buffers_follow_the_engine_io_dtypes(
    io_dtype: str, itemsize: int, tol: float, sources: dict, gpu_with, tmp_path: Path
) -> None:
    """FP16 and BF16 I/O (trtexec --inputIOFormats=fp16:chw / bf16:chw): buffers of the
    engine's element size, values converted both ways (BF16 by bit patterns: trt.nptype has
    no numpy type for it and raises, as the fake's nptype does)."""
    fake, gpu = gpu_with("11.4.0.106", io_dtypes={"rgb": io_dtype, "depth": io_dtype})
    if io_dtype == "BF16":
        with pytest.raises(TypeError, match="Could not resolve"):
            fake.module.nptype(fake.module.DataType.BF16)
    fp32 = stage(sources, tmp_path)
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, BuildOptions())
    runner = load_runner(record["path"])
    got = runner(sources["calib"].images[:1])
    sizes = sorted(len(b) for b in gpu.memory.values())
    assert sizes == sorted([1 * 3 * 64 * 64 * itemsize, 1 * 1 * 32 * 32 * itemsize])
    assert got.dtype == np.float32 and got.shape == (1, 1, 32, 32)
    # the values survive at the I/O type's precision (bf16: 8 bits of mantissa, 2^-8 relative)
    want = onnx_reference(record["source_onnx"], sources["calib"].images[:1])
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_bf16_conversion_matches_ml_dtypes() -> None:
    import ml_dtypes

    from engines.tensorrt_runner import bf16_bits_to_float32, float32_to_bf16_bits

    x = np.random.default_rng(0).normal(0, 3, 10_000).astype(np.float32)
    x[:4] = [0.0, 1.0, 1 + 2**-8, 1 + 3 * 2**-8]  # exact ties: round to even
    ours = float32_to_bf16_bits(x)
    theirs = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(bf16_bits_to_float32(ours), theirs.view(ml_dtypes.bfloat16)
                                  .astype(np.float32))  # fmt: skip


@pytest.mark.parametrize("tensor", ["rgb", "depth"])
def test_int8_io_engines_are_refused_not_misread(
    tensor: str, sources: dict, gpu_with, tmp_path: Path
) -> None:
    """An engine with an INT8 input or output (trtexec --inputIOFormats=int8:chw) reads and
    writes codes at a scale fixed at build that the engine does not expose: casting RGB to
    int8, or returning the codes as metres, would be wrong by that scale. One line instead."""
    _fake, _gpu = gpu_with("11.4.0.106", io_dtypes={tensor: "INT8"},
                           io_scales={tensor: 0.05})  # fmt: skip
    fp32 = stage(sources, tmp_path)
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, BuildOptions())
    with pytest.raises(DenseDepthError, match=rf"tensor '{tensor}' is INT8; the runner takes"):
        load_runner(record["path"])


def test_engine_without_sidecar_loads_with_a_warning(
    sources: dict, gpu_with, tmp_path: Path
) -> None:
    _fake, _gpu = gpu_with("10.16.1.11")
    fp32 = stage(sources, tmp_path, "dynamic")
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, BuildOptions(max_batch=2))
    engine = Path(record["path"])
    trtexec = tmp_path / "trtexec.engine"
    shutil.copy(engine, trtexec)  # what trtexec --saveEngine leaves: no sidecar
    with pytest.warns(UserWarning, match="no sidecar"):
        runner = load_runner(trtexec)
    assert runner.input_shape == (1, 3, 64, 64) and runner.max_batch == 2
    assert runner.precision == "unknown"
    x = sources["calib"].images[:3]
    np.testing.assert_allclose(runner(x), onnx_reference(record["source_onnx"], x), atol=1e-6)


def test_sidecar_from_another_tensorrt_or_gpu_is_refused(
    sources: dict, gpu_with, tmp_path: Path
) -> None:
    _fake, _gpu = gpu_with("10.16.1.11")
    fp32 = stage(sources, tmp_path)
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, BuildOptions())
    side = Path(record["path"] + ".json")
    data = json.loads(side.read_text())
    side.write_text(json.dumps({**data, "tensorrt_version": "10.3.0.26"}))
    with pytest.raises(DenseDepthError, match=r"TensorRT 10\.3\.0\.26, this is TensorRT 10\.16"):
        load_runner(record["path"])
    side.write_text(json.dumps({**data, "gpu": "Orin (nvgpu)"}))
    with pytest.raises(DenseDepthError, match=r"built for Orin \(nvgpu\), this GPU is NVIDIA H100"):
        load_runner(record["path"])
    # and an engine from another TensorRT without a sidecar: TensorRT itself refuses it
    side.unlink()
    gpu_with("10.8.0.43")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DenseDepthError, match="cannot deserialize"):
            load_runner(record["path"])


def test_timing_cache_is_reused_or_replaced(sources: dict, gpu_with, tmp_path: Path) -> None:
    fake, _gpu = gpu_with("11.4.0.106")
    fp32 = stage(sources, tmp_path)
    cache = tmp_path / "timing.cache"
    opts = BuildOptions(timing_cache=str(cache))
    assert build(get_format("tensorrt", "fp16"), fp32, tmp_path, opts)["timing_cache"] == "new"
    assert build(get_format("tensorrt", "fp16"), fp32, tmp_path, opts)["timing_cache"] == "reused"
    before = len(fake.calls)
    cache.write_bytes(b"TIMING 11.4.0.106 NVIDIA A100-SXM4-40GB entries\n")  # another GPU's
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, opts)
    assert record["timing_cache"] == "replaced"
    assert cache.read_bytes().startswith(fake.timing_signature)  # rewritten for this GPU
    third = [c for c in fake.calls[before:] if "timing_cache(" in c]
    assert [c.split("(")[0] for c in third] == [
        "IBuilderConfig.create_timing_cache",  # the file's bytes: refused
        "IBuilderConfig.set_timing_cache",
        "IBuilderConfig.create_timing_cache",  # a new, empty one
        "IBuilderConfig.set_timing_cache",
        "IBuilderConfig.get_timing_cache",
    ]
    assert all("ignore_mismatch=False" in c for c in third if "set_timing" in c)


def test_wrong_onnx_for_the_plan_and_rule_breakers_are_refused(
    sources: dict, gpu_with, tmp_path: Path, trained_tiny: dict
) -> None:
    _fake, _gpu = gpu_with("11.4.0.106")
    fp32 = stage(sources, tmp_path)
    # TensorRT 11 builds INT8 with FP16 float layers from the FP16-float Q/DQ ONNX only
    opts = BuildOptions(calib=sources["calib"], producer="onnxruntime", int8_float="fp32",
                        onnx_only=True)  # fmt: skip
    qdq_fp32 = build(get_format("tensorrt", "int8"), fp32, tmp_path, opts)["path"]
    with pytest.raises(ExportError, match=r"from the int8-qdq-fp16 ONNX, but .* is int8-qdq-fp32"):
        build_engine(qdq_fp32, tmp_path / "x.engine", "int8", int8_float="fp16")
    # the ONNX Runtime CPU flavour is refused before TensorRT sees it
    from export.quantize import quantize_int8

    cpu = quantize_int8(fp32, sources["calib"], tmp_path / "cpu.onnx", "cpu")["path"]
    with pytest.raises(ExportError, match="CPU INT8 flavour"):
        build_engine(cpu, tmp_path / "x.engine", "int8")
    # a Q/DQ file that breaks TensorRT's rules never reaches the parser
    model = onnx.load(qdq_fp32)
    for init in model.graph.initializer:
        if init.name.endswith("_zero_point") and init.data_type == onnx.TensorProto.INT8:
            shape = onnx.numpy_helper.to_array(init).shape  # a well-formed tensor, zero point 3
            init.CopyFrom(onnx.numpy_helper.from_array(np.full(shape, 3, np.int8), init.name))
            break
    broken = tmp_path / "model_int8_trt_broken.onnx"
    onnx.save(model, str(broken))
    shutil.copy(qdq_fp32 + ".json", str(broken) + ".json")
    gpu_with("10.8.0.43")
    with pytest.raises(ExportError, match=r"breaks \d+ rule\(s\) of TensorRT 10\.8.*zero point"):
        build_engine(broken, tmp_path / "x.engine", "int8", int8_float="fp32")
    assert not (tmp_path / "x.engine").exists()


# ------------------------------------------------------------------------------------------
# The fakes hold to the real API (they would catch what TensorRT would refuse)
# ------------------------------------------------------------------------------------------


def test_fake_tensorrt_refuses_what_the_real_bindings_refuse(gpu_with) -> None:
    fake, _ = gpu_with("10.16.1.11")
    trt = fake.module
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    with pytest.raises(AttributeError):
        trt.BuilderFlag.INT4_WEIGHTS  # noqa: B018 (no such member)
    with pytest.raises(AttributeError):
        config.set_int8_calibrator(None)  # no such method
    with pytest.raises(TypeError, match="unexpected keyword 'ignore'"):
        config.set_timing_cache(config.create_timing_cache(b""), ignore=False)
    with pytest.raises(TypeError, match="is not BuilderFlag"):
        config.set_flag(trt.MemoryPoolType.WORKSPACE)
    with pytest.raises(TypeError, match="missing 'pool_size'"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE)
    network = builder.create_network(0)
    with pytest.raises(AttributeError, match="read-only"):
        network.num_inputs = 3
    with pytest.raises(AttributeError):
        network.made_up_field = 1
    with pytest.raises(TypeError, match="No constructor"):
        trt.ICudaEngine()
    config.set_flag(trt.BuilderFlag.FP16)
    assert any("Deprecated in TensorRT 10.12" in d for d in fake.used_deprecated())
    fake11, _ = gpu_with("11.4.0.106")
    with pytest.raises(AttributeError):
        fake11.module.BuilderFlag.FP16  # noqa: B018 (removed in 11)


def test_fake_cuda_python_matches_the_real_signatures() -> None:
    real = pytest.importorskip("cuda.bindings.driver", reason="needs cuda-python (dev extra)")
    for name, params in fake_cuda.CUDA_PYTHON_SIGNATURES.items():
        first = getattr(real, name).__doc__.splitlines()[0]
        listed = first[first.index("(") + 1 : -1].split(",")
        real_params = tuple(p.split(":")[0].split()[-1] for p in listed if p)  # "mode: T"
        assert real_params == params, (name, first)
    for fake_enum in (fake_cuda.CUresult, fake_cuda.CUstreamCaptureMode):  # the same codes
        real_enum = getattr(real, fake_enum.__name__)
        for member in fake_enum:
            assert int(getattr(real_enum, member.name)) == int(member), member


def test_cuda_python_without_a_driver_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cuda.bindings.driver", reason="needs cuda-python (dev extra)")
    from export.cuda import CudaError, cuda_backend, cuda_device_count
    from export.formats import get_format

    monkeypatch.setenv("DD_CUDA_BACKEND", "cuda-python")
    with pytest.raises(CudaError, match=r"cuda-python.*cannot start"):
        cuda_backend()
    assert cuda_device_count() == 0
    if "tensorrt" not in sys.modules:
        reason = get_format("tensorrt", "int8").unavailable_reason()
        assert reason is not None and "tensorrt" in reason


def test_signature_parser() -> None:
    params = parse_signature(
        "(self: IBuilderConfig, cache: ITimingCache, ignore_mismatch: bool) -> bool"
    )
    assert [p.name for p in params] == ["self", "cache", "ignore_mismatch"]
    params = parse_signature(
        "(self: Logger, min_severity: ILogger.Severity = <Severity.WARNING: 2>) -> None"
    )
    assert params[1].type == "ILogger.Severity" and params[1].has_default
    nested = parse_signature("(self: X, shapes: dict[str, tuple[int, int]], n: int = 1) -> None")
    assert [p.name for p in nested] == ["self", "shapes", "n"]
    assert parse_signature("(*args, **kwargs)") is None


@pytest.mark.slow
def test_manifests_match_the_wheels_on_the_registry(tmp_path: Path) -> None:
    """Regenerate every manifest from NVIDIA's wheels; a drift means the API moved."""
    import subprocess

    from tensorrt_api import MANIFEST_DIR, WHEELS, generate

    if shutil.which("g++") is None:
        pytest.skip("needs g++ to compile the stand-in TensorRT libraries")
    try:
        generate(list(WHEELS), tmp_path)
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        if "download" in " ".join(map(str, exc.cmd)):
            pytest.skip(f"the bindings wheels cannot be fetched here: {stderr.strip()[-200:]}")
        raise
    for version in WHEELS:
        fresh = json.loads((tmp_path / f"manifest-{version}.json").read_text())
        assert fresh == load_manifest(version, MANIFEST_DIR), f"manifest {version} drifted"


def test_calls_in_order_with_contexts_around_the_work(
    sources: dict, gpu_with, tmp_path: Path
) -> None:
    fake, gpu = gpu_with("10.8.0.43", "pycuda")
    fp32 = stage(sources, tmp_path)
    opts = BuildOptions(calib=sources["calib"], producer="onnxruntime", int8_float="fp16")
    record = build(get_format("tensorrt", "int8"), fp32, tmp_path, opts)
    build_calls = [c.split("(")[0] for c in fake.calls if "." in c and "ITensor" not in c]
    assert build_calls == [
        "Logger.__init__", "Builder.__init__", "Builder.create_network", "OnnxParser.__init__",
        "OnnxParser.parse", "Builder.create_builder_config", "MemoryPoolType.WORKSPACE",
        "IBuilderConfig.set_memory_pool_limit", "BuilderFlag.INT8", "IBuilderConfig.set_flag",
        "BuilderFlag.FP16", "IBuilderConfig.set_flag", "IBuilderConfig.create_timing_cache",
        "IBuilderConfig.set_timing_cache",
        "ProfilingVerbosity.DETAILED",  # detailed enough for the inspector
        "IBuilderConfig.profiling_verbosity = ProfilingVerbosity.DETAILED",
        "INetworkDefinition.get_input", "Builder.build_serialized_network",
        "Logger.log", "Logger.log",  # TensorRT's messages reach the logger it was given
        # the engine read back for the inspector's per-layer JSON
        "Logger.__init__", "Runtime.__init__", "Runtime.deserialize_cuda_engine",
        "ICudaEngine.create_engine_inspector", "LayerInformationFormat.JSON",
        "EngineInspector.get_engine_information",
    ]  # fmt: skip
    assert gpu.calls[:2] == ["Device.retain_primary_context", "Context.push"]
    assert gpu.calls.count("Context.push") == gpu.calls.count("Context.pop") == 1
    del fake.calls[:]
    runner = load_runner(record["path"])
    runner(sources["calib"].images[:1])
    run_calls = [c.split("(")[0] for c in fake.calls if c.split("(")[0].split(".")[0] in
                 ("Runtime", "ICudaEngine", "IExecutionContext")]  # fmt: skip
    assert run_calls == [
        "Runtime.__init__", "Runtime.deserialize_cuda_engine",
        "ICudaEngine.create_execution_context", "ICudaEngine.num_io_tensors",
        "ICudaEngine.get_tensor_name", "ICudaEngine.get_tensor_name",
        "ICudaEngine.get_tensor_mode", "ICudaEngine.get_tensor_mode",
        "ICudaEngine.get_tensor_shape",  # the input's dims
        "ICudaEngine.get_tensor_dtype", "ICudaEngine.get_tensor_dtype",  # float I/O, at load
        "ICudaEngine.get_tensor_shape",  # a -1 to set?
        "IExecutionContext.get_tensor_shape", "IExecutionContext.set_tensor_address",
        "IExecutionContext.get_tensor_shape", "IExecutionContext.set_tensor_address",
        "IExecutionContext.execute_async_v3",
    ]  # fmt: skip
    pushes = [c for c in gpu.calls if c.startswith("Context.")]
    assert pushes == ["Context.push", "Context.pop"] * 3  # build, load, one inference


def test_a_tensorrt_build_reports_its_real_seconds(
    sources: dict, gpu_with, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The artifact step times the engine build: a build TensorRT takes 0.3 s over is
    recorded (record, sidecar) and announced as at least 0.3 s, never as 0.0 s."""
    import time

    from export.artifact import saved_line
    from export.build import build_from

    build_network = FakeTensorRT.Builder__build_serialized_network

    def slow_build(self: FakeTensorRT, *args: object, **kwargs: object) -> object:
        time.sleep(0.3)
        return build_network(self, *args, **kwargs)

    monkeypatch.setattr(FakeTensorRT, "Builder__build_serialized_network", slow_build)
    gpu_with(VERSIONS[-1])
    fp32 = stage(sources, tmp_path)
    lines: list[str] = []
    record = build_from(fp32, get_format("tensorrt", "fp16"), tmp_path, BuildOptions(),
                        log=lines.append)  # fmt: skip
    assert record["path"] == str(tmp_path / "model_fp16.engine")  # named by the format row
    assert 0.3 <= record["seconds"] < 60 and "build_seconds" not in record
    assert read_sidecar(record["path"])["seconds"] == record["seconds"]
    assert record["bytes"] == Path(record["path"]).stat().st_size > 0
    assert lines == [saved_line(record)]
    mb, seconds = lines[0].rsplit("(", 1)[1].rstrip(")").split(", ")
    assert float(seconds.removesuffix(" s")) >= 0.3 and mb.endswith(" MB")


def static_batch_onnx(sources: dict, folder: Path, batch: int) -> Path:
    """The dynamic export with its batch fixed at ``batch`` (what trtexec --shapes makes of
    it): a static batch-N engine."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(sources["dynamic"])
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    path = folder / "model_fp32.onnx"
    onnx.save(model, path)
    shutil.copy(str(sources["dynamic"]) + ".json", str(path) + ".json")
    return path


def test_a_static_batch_n_engine_takes_fewer_images(
    sources: dict, gpu_with, tmp_path: Path
) -> None:
    """A static batch-4 engine is fed 4 images per launch: fewer are padded (with the last
    image) and only their outputs returned; more are split into launches of 4. (TensorRT
    10.8: FP16 by the builder flag from this fp32 ONNX, as trtexec --fp16 would.)"""
    _fake, gpu = gpu_with("10.8.0.43")
    fp32 = static_batch_onnx(sources, tmp_path, 4)
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, BuildOptions())
    runner = load_runner(record["path"])
    assert not runner.dynamic and runner.max_batch == runner.min_batch == 4
    for images in (1, 3, 4, 6):
        x = np.concatenate([sources["calib"].images] * 2)[:images]
        before = gpu.launches
        got = runner(x)
        assert got.shape == (images, 1, 32, 32)
        # ORT at batch 4 vs batch N sums in another order (its blocking depends on the batch
        # and the CPU's kernels): float32 rounding, far below the metres a wrong pad shows
        np.testing.assert_allclose(got, onnx_reference(str(sources["dynamic"]), x), rtol=1e-5,
                                   atol=1e-5)  # fmt: skip
        assert gpu.launches - before == -(-images // 4)
    runner.close()
    assert gpu.memory == {}


@pytest.mark.parametrize(
    ("version", "max_batch", "opt_batch"), [(LEGACY[0], 4, 2), (LEGACY[-1], 4, 1)]
)
def test_legacy_calibrator_fills_the_calibration_profiles_opt_shape(
    version: str, max_batch: int, opt_batch: int, sources: dict, gpu_with, tmp_path: Path
) -> None:
    """With a dynamic batch TensorRT calibrates at the calibration profile's opt shape and
    reads that many images from each buffer: the calibrator gives batches of opt_batch in a
    buffer of exactly that size, and the calibration profile is set."""
    fake, gpu = gpu_with(version, "cuda-python")
    fp32 = stage(sources, tmp_path, "dynamic")
    opts = BuildOptions(calib=sources["calib"], legacy_calibrator=True, int8_float="fp16",
                        max_batch=max_batch, opt_batch=opt_batch)  # fmt: skip
    build(get_format("tensorrt", "int8"), fp32, tmp_path, opts)
    assert fake.options["calibration_shape"] == (opt_batch, 3, 64, 64)
    assert fake.options["calibration_batches"] == len(sources["calib"]) // opt_batch
    assert any(c.startswith("IBuilderConfig.set_calibration_profile") for c in fake.calls)
    assert gpu.memory == {}


def test_calibration_needs_a_full_opt_batch(sources: dict, gpu_with, tmp_path: Path) -> None:
    gpu_with("8.6.1")
    fp32 = stage(sources, tmp_path, "dynamic")
    opts = BuildOptions(calib=sources["calib"], legacy_calibrator=True, max_batch=8, opt_batch=8)
    with pytest.raises(ExportError, match=r"4 calibration images cannot fill one batch of 8"):
        build(get_format("tensorrt", "int8"), fp32, tmp_path, opts)
    with pytest.raises(ExportError, match=r"--opt-batch 5 must be between 1 and --max-batch 4"):
        build(get_format("tensorrt", "fp16"), fp32, tmp_path,
              BuildOptions(max_batch=4, opt_batch=5))  # fmt: skip


@pytest.mark.parametrize(
    ("driver", "binding", "refused"),
    [
        (12080, "12.9.10", False),
        (12080, "13.0.1", True),
        (13000, "13.0.1", False),
        (11080, "12.9.10", True),
    ],
)
def test_a_cuda_python_newer_than_the_driver_is_refused_in_one_line(
    driver: int, binding: str, refused: bool, gpu_with, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NVIDIA's rule: a CUDA-M binding needs a driver for CUDA M (cuDriverGetVersion >=
    M * 1000); R535-R570 drivers (CUDA 12.2-12.8) cannot run cuda-python 13."""
    import export.cuda as shim

    _fake, gpu = gpu_with("10.16.1.11", "cuda-python")
    gpu.driver_cuda = driver
    monkeypatch.setattr(shim, "binding_version", lambda: binding)
    if not refused:
        assert shim.cuda_backend().device_count() == 1
        return
    with pytest.raises(shim.CudaUnavailable) as info:
        shim.cuda_backend()
    major = binding.split(".")[0]
    assert f"cuda-python {binding} needs a driver for CUDA {major}" in str(info.value)
    assert f"pip install 'cuda-python<{major}'" in str(info.value)
    assert shim.DRIVER_FOR_CUDA[int(major)] in str(info.value)
    # and the TensorRT rows are "not available" with that reason
    assert "needs a driver for CUDA" in (shim.gpu_unavailable_reason() or "")


@pytest.mark.parametrize("binding", ["pycuda", "cuda-python"])
def test_device_index_is_honoured(binding: str, sources: dict, gpu_with, tmp_path: Path) -> None:
    _fake, gpu = gpu_with("10.16.1.11", binding)
    gpu.count = 2
    fp32 = stage(sources, tmp_path)
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, BuildOptions())
    gpu.ordinals.clear()
    runner = load_runner(record["path"], device="cuda:1")
    assert runner.device == "cuda:1" and set(gpu.ordinals) == {1}
    runner.close()
    from densedepth.util.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match=r"cuda:3 asked for, 2 CUDA device\(s\) visible"):
        load_runner(record["path"], device="cuda:3")
    with pytest.raises(DenseDepthError, match="is not a CUDA device"):
        load_runner(record["path"], device="cpu")


def test_out_of_memory_is_a_failed_row_not_a_missing_backend(
    sources: dict, gpu_with, tmp_path: Path
) -> None:
    """A CUDA failure at run time is the row's failure; only no driver / no device is
    "not available"."""
    from bench.harness import BenchOptions, run_bench

    _fake, gpu = gpu_with("10.16.1.11", "cuda-python")
    fp32 = stage(sources, tmp_path)
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, BuildOptions())
    gpu.memory_limit = 1024  # less than one input buffer
    opts = BenchOptions(iters=2, min_time=0.0, warmup=1, data=None, device="cuda")
    row = run_bench([Path(record["path"])], tmp_path / "bench", opts)["rows"][0]
    assert row["status"] == "failed", row
    assert "CUDA_ERROR_OUT_OF_MEMORY" in row["reason"]


def test_builder_knobs_are_set_and_recorded(sources: dict, gpu_with, tmp_path: Path) -> None:
    """Optimisation level, hardware compatibility, version compatibility (its engine loads
    on a later 10.x with engine_host_code_allowed, and is refused by 11), the verbose build
    log to a file, and the inspector's per-layer JSON beside the engine."""
    fake, gpu = gpu_with("10.8.0.43")
    fp32 = stage(sources, tmp_path)
    log = tmp_path / "build.log"
    opts = BuildOptions(opt_level=5, hardware_compat="ampere_plus", version_compatible=True,
                        build_log=str(log))  # fmt: skip
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, opts)
    assert "IBuilderConfig.builder_optimization_level = 5" in fake.calls
    assert ("IBuilderConfig.hardware_compatibility_level = HardwareCompatibilityLevel.AMPERE_PLUS"
            in fake.calls)  # fmt: skip
    assert "IBuilderConfig.set_flag(flag=BuilderFlag.VERSION_COMPATIBLE)" in fake.calls
    assert (record["opt_level"], record["hardware_compatibility"]) == (5, "ampere_plus")
    assert record["version_compatible"] is True and record["build_log"] == str(log)
    lines = log.read_text().splitlines()
    assert lines[0] == "[VERBOSE] Original: 1 layers" and any("[INFO]" in ln for ln in lines)
    layers = json.loads(Path(record["layer_info"]).read_text())
    assert {"Name", "LayerType"} <= set(layers["Layers"][0])  # DETAILED: more than names
    # a version-compatible engine: a later 10.x runs it (with its host code allowed), 11 does not
    fake_later, _ = gpu_with("10.16.1.11")
    fake_later.gpu.name = gpu.name
    runner = load_runner(record["path"])
    assert "Runtime.engine_host_code_allowed = True" in fake_later.calls
    runner.close()
    gpu_with("11.4.0.106")
    with pytest.raises(DenseDepthError, match=r"TensorRT 10\.8\.0\.43, this is TensorRT 11"):
        load_runner(record["path"])
    with pytest.raises(ExportError, match="no hardware compatibility level 'turing_plus'"):
        build(get_format("tensorrt", "fp16"), fp32, tmp_path / "x",
              BuildOptions(hardware_compat="turing_plus"))  # fmt: skip


def test_bench_builds_the_engine_batch_it_measures(
    trained_tiny: dict, gpu_with, tmp_path: Path
) -> None:
    """A batch sweep 1, 4 with --build: the checkpoint is exported with a dynamic batch and
    the engine's profile reaches batch 4 (opt 1), so the batch-4 row is one launch of 4."""
    from bench.harness import BenchOptions, run_bench

    _fake, _gpu = gpu_with("10.16.1.11")
    opts = BenchOptions(iters=2, min_time=0.0, warmup=1, batches=(1, 4), data=None,
                        build=("tensorrt-fp16",), device="cuda")  # fmt: skip
    row = run_bench([trained_tiny["ckpt"]], tmp_path / "b", opts)["rows"][0]
    assert row["status"] == "ok", row
    sidecar = read_sidecar(row["path"])
    assert sidecar["shapes"]["rgb"]["max"][0] == 4 and sidecar["shapes"]["rgb"]["opt"][0] == 1
    sweep = {t["batch"]: (t["engine_batch"], t["calls_per_batch"]) for t in row["throughput"]}
    assert sweep == {1: (1, 1), 4: (4, 1)}


# ---------------------------------------------------------------- GPU timing (issue 23 item 3)
KERNEL_MS = 2.0  # the fake engine's GPU time per image (virtual clock, not this machine's)


def fp16_engine(sources: dict, gpu_with, folder: Path, binding: str = "cuda-python", **options):
    """A static batch-1 FP16 engine of TensorRT 10.16 on a fake GPU, and its runner."""
    fake, gpu = gpu_with("10.16.1.11", binding, kernel_ms_per_image=KERNEL_MS, **options)
    fp32 = stage(sources, folder)
    record = build(get_format("tensorrt", "fp16"), fp32, folder, BuildOptions())
    return fake, gpu, record, load_runner(record["path"])


def test_gpu_compute_time_is_events_around_the_launch_without_copies(
    sources: dict, gpu_with, tmp_path: Path
) -> None:
    """Events around execute_async_v3 on device-resident buffers time the kernels and the
    host's launch gap, never the copies (the virtual clock charges each copy its bytes);
    a CUDA graph (captured after one plain enqueue, trtexec's protocol) removes the gap and
    still computes: its output buffer holds the engine's answer."""
    fake, gpu, record, runner = fp16_engine(sources, gpu_with, tmp_path)
    copies = gpu.copy_ms(3 * 64 * 64 * 4) + gpu.copy_ms(32 * 32 * 4)
    assert copies > 0.0
    times, info = runner.time_gpu_compute(1, iters=5, min_time=0.0, warmup_s=0.0)
    assert len(times) == 5 and info == {"cuda_graph": False, "launch_batch": 1}
    np.testing.assert_allclose(times, KERNEL_MS + gpu.launch_gap_ms, rtol=1e-9)
    # end to end on the same stream: copies + gap + kernel, what the host timer includes
    stream, before = runner.stream, gpu.clock[runner.stream]
    runner(sources["calib"].images[:1])
    assert gpu.clock[stream] - before == pytest.approx(KERNEL_MS + gpu.launch_gap_ms + copies)

    enqueues = sum(c.startswith("IExecutionContext.execute_async_v3") for c in fake.calls)
    times, info = runner.time_gpu_compute(1, iters=4, min_time=0.0, warmup_s=0.0,
                                          cuda_graph=True)  # fmt: skip
    assert info["cuda_graph"] is True and "cuda_graph_note" not in info
    np.testing.assert_allclose(times, KERNEL_MS, rtol=1e-9)  # no launch gap in a graph
    calls = [c for c in gpu.calls if c.startswith(("cuStreamBeginCapture", "cuGraphLaunch"))]
    assert calls == ["cuStreamBeginCapture"] + ["cuGraphLaunch"] * 4
    # one plain enqueue (buffers, deferred setup) + the captured one; the 4 runs were graphs
    assert sum(c.startswith("IExecutionContext.execute_async_v3") for c in fake.calls) == (
        enqueues + 2
    )
    host_out, device_out = runner._buffers[runner.output_name]
    x = parity_input_for(runner)
    gpu.push("test")  # (a device read needs a context, as cuMemcpyDtoH does)
    got = np.frombuffer(gpu.read(device_out, host_out.nbytes), np.float32).reshape(1, 1, 32, 32)
    gpu.pop()
    np.testing.assert_allclose(got, onnx_reference(record["source_onnx"], x), atol=1e-6)
    runner.close()
    assert gpu.memory == {} and gpu.events == {} and gpu.capturing == {}


def parity_input_for(runner) -> np.ndarray:
    from densedepth.util.onnx_io import parity_input

    return parity_input(tuple(runner.input_shape[2:]), batch=1)


@pytest.mark.parametrize("binding", ["pycuda", "cuda-python"])
def test_a_failed_capture_times_plain_launches_and_says_why(
    binding: str, sources: dict, gpu_with, tmp_path: Path
) -> None:
    """trtexec --useCudaGraph's rule: when the capture fails (an engine with ops not
    permitted under capture; a binding without graphs), the capture is ended and plain
    launches are timed, with the reason in the row."""
    _fake, gpu, _record, runner = fp16_engine(sources, gpu_with, tmp_path, binding,
                                              capturable=False)  # fmt: skip
    times, info = runner.time_gpu_compute(1, iters=3, min_time=0.0, warmup_s=0.0,
                                          cuda_graph=True)  # fmt: skip
    assert info["cuda_graph"] is False
    reason = "enqueue failed under capture" if binding == "cuda-python" else "not offered"
    assert reason in info["cuda_graph_note"], info
    np.testing.assert_allclose(times, KERNEL_MS + gpu.launch_gap_ms, rtol=1e-9)
    assert gpu.capturing == {} and gpu.invalidated == set()
    runner.close()


def test_the_fake_driver_keeps_cudas_event_and_capture_rules(monkeypatch) -> None:
    """cuEventElapsedTime before the events complete is NOT_READY, on an event never
    recorded or made without timing INVALID_HANDLE; a synchronize inside a capture is
    STREAM_CAPTURE_UNSUPPORTED and the capture ends INVALIDATED (cuda-python's docs)."""
    gpu = fake_cuda.FakeGPU()
    fake_cuda.install(monkeypatch, gpu, "cuda-python")
    import cuda.bindings.driver as drv

    codes = drv.CUresult
    drv.cuInit(0)
    _, dev = drv.cuDeviceGet(0)
    _, ctx = drv.cuDevicePrimaryCtxRetain(dev)
    drv.cuCtxPushCurrent(ctx)
    _, stream = drv.cuStreamCreate(0)
    _, a = drv.cuEventCreate(0)
    _, b = drv.cuEventCreate(0)
    _, untimed = drv.cuEventCreate(2)  # CU_EVENT_DISABLE_TIMING
    assert drv.cuEventElapsedTime(a, b)[0] == codes.CUDA_ERROR_INVALID_HANDLE  # not recorded
    drv.cuEventRecord(a, stream)
    drv.cuEventRecord(b, stream)
    assert drv.cuEventElapsedTime(a, b)[0] == codes.CUDA_ERROR_NOT_READY
    drv.cuEventSynchronize(b)  # b done: by stream order a (recorded before it) is done too
    assert drv.cuEventElapsedTime(a, b) == (codes.CUDA_SUCCESS, 0.0)
    drv.cuEventRecord(untimed, stream)
    drv.cuStreamSynchronize(stream)
    assert drv.cuEventElapsedTime(a, untimed)[0] == codes.CUDA_ERROR_INVALID_HANDLE
    mode = drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
    assert drv.cuStreamBeginCapture(stream, mode) == (codes.CUDA_SUCCESS,)
    assert drv.cuStreamSynchronize(stream)[0] == codes.CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    assert drv.cuStreamEndCapture(stream) == (codes.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, None)
    drv.cuCtxPopCurrent()


def test_bench_rows_carry_both_timings_labelled(sources: dict, gpu_with, tmp_path: Path) -> None:
    """Every TensorRT row: host end-to-end (p50_ms, ``timing``) and GPU compute (gpu_p50_ms,
    ``gpu_timing``: the fake's kernel time exactly, as CUDA graph launches), the warm-up by
    time, and what ran it (``accelerator``)."""
    from bench.harness import BenchOptions, run_bench
    from bench.latency import GPU_TIMING, TIMING

    _fake, _gpu, record, runner = fp16_engine(sources, gpu_with, tmp_path)
    runner.close()
    opts = BenchOptions(iters=3, min_time=0.0, warmup=1, warmup_ms=0.0, data=None,
                        device="cuda", cuda_graph=True)  # fmt: skip
    row = run_bench([Path(record["path"])], tmp_path / "b", opts)["rows"][0]
    assert row["status"] == "ok", row
    assert row["timing"] == TIMING and row["gpu_timing"] == GPU_TIMING
    assert row["gpu_p50_ms"] == pytest.approx(KERNEL_MS) and row["cuda_graph"] is True
    assert row["gpu_runs"] >= 3 and row["accelerator"] == "gpu"
    assert row["gpu_fps"] == pytest.approx(1e3 / KERNEL_MS)


FAKE_TRTEXEC = """#!{python}
import sys
args = sys.argv[1:]
open({log!r}, "w").write(" ".join(args))
print("[I] === Performance summary ===")
print("[I] Throughput: 140.021 qps")
print("[I] GPU Compute Time: min = 5.34595 ms, max = 13.3388 ms, mean = 7.58404 ms, "
      "median = 7.14139 ms, percentile(90%) = 10.2881 ms, percentile(95%) = 10.8175 ms, "
      "percentile(99%) = 12.9485 ms")
sys.exit({code})
"""


def install_trtexec(folder: Path, monkeypatch, code: int = 0) -> Path:
    """A ``trtexec`` on PATH printing NVIDIA's summary format (the lines of a real run,
    NVIDIA/TensorRT#4177) and logging its arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "args.txt"
    exe = folder / "trtexec"
    exe.write_text(FAKE_TRTEXEC.format(python=sys.executable, log=str(log), code=code))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{__import__('os').environ['PATH']}")
    return log


def test_bench_trtexec_puts_nvidias_figure_beside_ours(
    sources: dict, gpu_with, tmp_path: Path, monkeypatch
) -> None:
    """``bench --trtexec``: trtexec --loadEngine on the row's engine, at the row's batch,
    warm-up, duration and iterations, with --useCudaGraph when graphs are timed; its GPU
    Compute Time median beside ours, the command in the row. A dynamic engine gets --shapes
    at the launch batch; without trtexec on PATH, one line before anything is written."""
    from bench.harness import BenchOptions, run_bench
    from bench.trtexec import parse_gpu_compute, trtexec_command

    gpu_with("10.16.1.11", kernel_ms_per_image=KERNEL_MS)
    fp32 = stage(sources, tmp_path / "dyn", "dynamic")
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path / "dyn",
                   BuildOptions(max_batch=4))  # fmt: skip
    log = install_trtexec(tmp_path / "bin", monkeypatch)
    opts = BenchOptions(iters=3, min_time=0.5, warmup=1, warmup_ms=200.0, batches=(4,),
                        data=None, device="cuda", cuda_graph=True, trtexec=True)  # fmt: skip
    row = run_bench([Path(record["path"])], tmp_path / "b", opts)["rows"][0]
    assert row["status"] == "ok", row
    assert row["trtexec_gpu_median_ms"] == 7.14139 and row["trtexec_throughput_qps"] == 140.021
    expected = (f"--loadEngine={record['path']} --warmUp=200 --duration=1 --iterations=3 "
                f"--avgRuns=10 --shapes=rgb:4x3x64x64 --useCudaGraph")  # fmt: skip
    assert log.read_text() == expected
    assert row["trtexec_command"].endswith(expected)
    cmd = trtexec_command("m.engine", "rgb", None, 200.0, 3.0, 10, dla_core=1,
                          version_compatible=True)  # fmt: skip
    assert cmd == [
        "trtexec",
        "--loadEngine=m.engine",
        "--warmUp=200",
        "--duration=3",
        "--iterations=10",
        "--avgRuns=10",
        "--useDLACore=1",
        "--versionCompatible",
    ]
    with pytest.raises(DenseDepthError, match="printed no GPU Compute Time summary"):
        parse_gpu_compute("[E] Engine deserialization failed")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(DenseDepthError, match="trtexec is not on PATH"):
        run_bench([Path(record["path"])], tmp_path / "c", opts)
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- DLA (issue 23 item 5)
def test_dla_builds_refuse_what_dla_cannot_run_and_fall_back_when_asked(
    sources: dict, gpu_with, tmp_path: Path
) -> None:
    """--dla-core on a Jetson Orin (2 DLA cores, TensorRT 10.x weakly typed as JetPack 6):
    the align_corners model's 5 layers DLA cannot run refuse the build in one line (before
    TensorRT is asked); with --gpu-fallback TensorRT puts the same 5 on the GPU (the fake
    counts them from NVIDIA's rules, our check from its own), the runtime runs the engine
    on its core and bench says dla:1. A device without DLA, INT8 from Q/DQ and a dynamic
    profile are refused or made static."""
    from bench.harness import BenchOptions, run_bench

    fake, _gpu = gpu_with("10.8.0.43", dla_cores=2)
    fp32 = stage(sources, tmp_path)
    with pytest.raises(ExportError, match=r"5 layer\(s\) of .* cannot run on DLA .*--gpu-fallback"):
        build(get_format("tensorrt", "fp16"), fp32, tmp_path, BuildOptions(dla_core=1))
    assert not any(c.startswith("Builder.build_serialized_network") for c in fake.calls)
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path,
                   BuildOptions(dla_core=1, gpu_fallback=True))  # fmt: skip
    assert (record["dla_core"], record["dla_gpu_fallback_layers"]) == (1, 5)
    assert len(fake.options["dla_fallback_layers"]) == 5
    assert "IBuilderConfig.default_device_type = DeviceType.DLA" in fake.calls
    assert "IBuilderConfig.DLA_core = 1" in fake.calls
    assert "IBuilderConfig.set_flag(flag=BuilderFlag.GPU_FALLBACK)" in fake.calls
    opts = BenchOptions(iters=2, min_time=0.0, warmup=1, data=None, device="cuda")
    row = run_bench([Path(record["path"])], tmp_path / "b", opts)["rows"][0]
    assert row["status"] == "ok" and row["accelerator"] == "dla:1", row
    assert "Runtime.DLA_core = 1" in fake.calls

    gpu_with("10.8.0.43", dla_cores=0)  # a desktop GPU
    with pytest.raises(ExportError, match="--dla-core 0: this device has no DLA"):
        build(get_format("tensorrt", "fp16"), fp32, tmp_path / "x",
              BuildOptions(dla_core=0, gpu_fallback=True))  # fmt: skip
    with pytest.raises(DenseDepthError, match="runs on DLA core 1, this device has no DLA"):
        load_runner(record["path"])
    with pytest.raises(ExportError, match="DLA runs INT8 from calibration scales only"):
        build(get_format("tensorrt", "int8"), fp32, tmp_path / "y",
              BuildOptions(dla_core=0, gpu_fallback=True, calib=sources["calib"]))  # fmt: skip

    fake, _gpu = gpu_with("10.8.0.43", dla_cores=2)
    dynamic = stage(sources, tmp_path / "dyn", "dynamic")
    record = build(get_format("tensorrt", "fp16"), dynamic, tmp_path / "dyn",
                   BuildOptions(dla_core=0, gpu_fallback=True, max_batch=2))  # fmt: skip
    assert record["shapes"]["rgb"]["min"] == record["shapes"]["rgb"]["opt"] == [2, 3, 64, 64]


def test_dla_options_are_refused_before_anything_is_written(sources: dict, tmp_path: Path) -> None:
    """--gpu-fallback without --dla-core and DLA INT8 from Q/DQ are one line each, with no
    TensorRT here (--onnx-only) and no file written."""
    fp32 = stage(sources, tmp_path / "src")
    for precision, opts, message in (
        ("fp16", BuildOptions(gpu_fallback=True, onnx_only=True), "add --dla-core N"),
        ("int8", BuildOptions(dla_core=0, onnx_only=True, calib=sources["calib"]),
         "add --legacy-calibrator"),
    ):  # fmt: skip
        out = tmp_path / precision
        with pytest.raises(ExportError, match=message):
            build(get_format("tensorrt", precision), fp32, out, opts)
        assert not out.exists() or not any(out.iterdir())


def test_the_dla_variant_builds_whole_on_dla(gpu_with, tmp_path: Path) -> None:
    """The DLA variant's export needs no GPU fallback: the build without --gpu-fallback
    passes our check and TensorRT's (the fake's own rules find no layer to fall back)."""
    from test_dla_variant import tiny_checkpoint

    from densedepth.variant import preset

    fake, _gpu = gpu_with("10.8.0.43", dla_cores=2)
    ckpt = tiny_checkpoint(tmp_path / "dla.pt", preset("dla"))
    fp32 = Path(export_onnx(ckpt, tmp_path / "model_fp32.onnx")["path"])
    record = build(get_format("tensorrt", "fp16"), fp32, tmp_path, BuildOptions(dla_core=0))
    assert (record["dla_core"], record["dla_gpu_fallback_layers"]) == (0, 0)
    assert fake.options["dla_fallback_layers"] == []
    assert "IBuilderConfig.set_flag(flag=BuilderFlag.GPU_FALLBACK)" not in fake.calls

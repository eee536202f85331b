"""Calibration ranges (calib/ranges.py) against references we did not write: numpy's histogram,
ONNX Runtime's percentile code and its own min/max and percentile calibrators."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from calib.calibration import CalibrationSet
from calib.ranges import CalibrationError, _quantizable_op_types, compute_ranges
from densedepth.histogram import HISTOGRAM_BINS, PERCENTILE, AbsHistogram, percentile_threshold


def _ambiguous(values: np.ndarray, width: float) -> np.ndarray:
    """Values within float32 rounding of a bin edge (either neighbour is a right answer)."""
    k = np.abs(values.astype(np.float64)) / width
    return np.abs(k - np.round(k)) < 1e-4


def test_histogram_equals_numpy_over_the_final_edges() -> None:
    """Batches whose range grows (and a first batch of zeros) give numpy's histogram of all
    the values over the final edges: width fixed by the first non-zero batch, bins appended."""
    rng = np.random.default_rng(3)
    batches = [
        np.zeros((2, 5, 7), np.float32),
        rng.standard_normal((2, 5, 7, 9)).astype(np.float32),
        rng.standard_normal(200_000).astype(np.float32) * 3.5,  # beyond: bins appended
        rng.standard_normal(70_001).astype(np.float32) * 0.1,  # more than one chunk
    ]
    h = AbsHistogram()
    for b in batches:
        h.add(b.copy())
    every = np.concatenate([b.ravel() for b in batches])
    assert h.width == pytest.approx(np.abs(batches[1]).max() / HISTOGRAM_BINS)
    assert len(h.counts) > HISTOGRAM_BINS and h.edges[-1] >= np.abs(every).max()
    assert (h.lowest, h.highest) == (every.min(), every.max())
    reference, _ = np.histogram(np.abs(every.astype(np.float64)), bins=h.edges.astype(np.float64))
    assert h.counts.sum() == every.size == reference.sum()
    moved = np.abs(h.counts - reference).sum()
    assert moved <= 2 * _ambiguous(every, h.width).sum(), moved
    assert h.counts[0] >= batches[0].size  # the zeros before the width was known


def test_histogram_of_zeros_only_and_minmax_only() -> None:
    h = AbsHistogram()
    h.add(np.zeros(10, np.float32))
    assert h.counts.tolist() == [10] and h.width == 0.0 and (h.lowest, h.highest) == (0, 0)
    m = AbsHistogram()
    m.add(np.array([-2.0, 5.0], np.float32), histogram=False)
    assert m.counts.size == 0 and (m.lowest, m.highest) == (-2.0, 5.0)
    with pytest.raises(ValueError, match="not finite"):
        m.add(np.array([1.0, np.nan], np.float32))


def test_percentile_threshold_is_onnx_runtimes() -> None:
    """The same histogram through ONNX Runtime's HistogramCollector.compute_percentile."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    rng = np.random.default_rng(0)
    collector = HistogramCollector("percentile", True, HISTOGRAM_BINS, 128, PERCENTILE, "same")
    ours = {}
    for name, values in {
        "normal": rng.standard_normal(300_000),
        "heavy": rng.standard_cauchy(300_000),
        "relu": np.maximum(rng.standard_normal(300_000), 0),
    }.items():
        h = AbsHistogram()
        h.add(values.astype(np.float32))
        collector.histogram_dict[name] = (h.counts, h.edges, np.float32(h.lowest),
                                          np.float32(h.highest))  # fmt: skip
        ours[name] = percentile_threshold(h.counts, h.edges, PERCENTILE)
    for name, (_, hi, *_) in collector.compute_percentile().items():
        assert float(hi) == pytest.approx(min(ours[name], collector.histogram_dict[name][3]))


@pytest.fixture(scope="module")
def tiny(trained_tiny: dict) -> dict:
    return trained_tiny


def _ort_ranges(model: Path, calib: CalibrationSet, method: str, tmp: Path) -> tuple:
    """ONNX Runtime's own calibrator (its session, its collector) over the same images, one at
    a time in the set's order (``CalibrationSet.batches``, what production iterates); ONNX
    Runtime reads them through its reader protocol, ``get_next`` until None."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    feeds = ({"rgb": batch} for batch in calib.batches(1))
    reader = SimpleNamespace(get_next=lambda: next(feeds, None))
    calibrator = create_calibrator(
        model,
        _quantizable_op_types(),
        augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=getattr(CalibrationMethod, method),
        extra_options={"symmetric": True, "num_bins": HISTOGRAM_BINS, "percentile": PERCENTILE}
        if method != "MinMax"
        else {},
    )
    calibrator.collect_data(reader)
    return calibrator.compute_data(), calibrator


def test_minmax_is_onnx_runtimes(tiny: dict, tmp_path: Path) -> None:
    """Every tensor ONNX Runtime's MinMax calibrator ranges, the same range (ours runs the graph
    optimised, so float rounding apart)."""
    calib = CalibrationSet(tiny["calib"].images[:8].copy(), "eight")
    ours = compute_ranges(tiny["onnx"], calib, "minmax", "rgb", scratch=tmp_path / "a")
    (tmp_path / "ort").mkdir()
    ref, _ = _ort_ranges(tiny["onnx"], calib, "MinMax", tmp_path / "ort")
    assert ours.keys() == ref.keys() and len(ours.keys()) > 100
    for name in sorted(ref.keys()):
        for side in ("lowest", "highest"):
            a = np.asarray(getattr(ours[name], side), np.float64)
            b = np.asarray(getattr(ref[name], side), np.float64)
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"{name} {side}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ort"]  # our scratch removed


def test_percentile_is_onnx_runtimes_to_a_bin(tiny: dict, tmp_path: Path) -> None:
    """ONNX Runtime's percentile calibrator bins from min|x| of its first chunk of 8 images,
    ours from 0 by the first image: the thresholds agree to about a bin of either."""
    calib = CalibrationSet(tiny["calib"].images[:8].copy(), "eight")
    ours = compute_ranges(tiny["onnx"], calib, "percentile", "rgb", scratch=tmp_path / "a")
    (tmp_path / "ort").mkdir()
    ref, calibrator = _ort_ranges(tiny["onnx"], calib, "Percentile", tmp_path / "ort")
    assert ours.keys() == ref.keys()
    clipped = 0
    for name in sorted(ref.keys()):
        ort_width = float(np.diff(calibrator.collector.histogram_dict[name][1][:2])[0])
        a, b = float(ours[name].highest), float(ref[name].highest)
        assert abs(a - b) <= 2 * max(ort_width, a / HISTOGRAM_BINS) + 1e-6, (name, a, b)
        clipped += b < float(calibrator.collector.histogram_dict[name][3])
    assert clipped > 10  # the percentile does clip, so the comparison means something


def _model(dynamic: bool, nan: bool = False) -> onnx.ModelProto:
    """x -> Mul(2) -> Conv(1x1, 4 channels) -> Relu; with ``nan``, Sqrt(x - 2) first."""
    batch = "N" if dynamic else 1
    w = numpy_helper.from_array(np.full((4, 3, 1, 1), 0.5, np.float32), "w")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [helper.make_node("Mul", ["x", "two"], ["m"])]
    if nan:
        nodes = [helper.make_node("Sub", ["x", "two"], ["s"])]
        nodes.append(helper.make_node("Sqrt", ["s"], ["m"]))
    nodes += [helper.make_node("Conv", ["m", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, 8, 8])], [w, two],
    )  # fmt: skip
    # IR 8: what torch.onnx writes at opset 17, and what every supported onnxruntime (1.20+) loads
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("dynamic", [False, True])
def test_every_image_counts_in_batches(tmp_path: Path, dynamic: bool) -> None:
    """11 images, one at a time (fixed batch 1) or in batches (any batch: 1, then 8, then 2):
    the ranges are those of all 11, computed directly."""
    path = tmp_path / "m.onnx"
    onnx.save(_model(dynamic), str(path))
    images = np.random.default_rng(1).random((11, 3, 8, 8), dtype=np.float32)
    images[10, 0, 0, 0] = 7.0  # the last image holds the maximum
    ranges = compute_ranges(path, CalibrationSet(images, "r"), "minmax", "x")
    conv = np.einsum("nchw->nhw", 2 * images) * 0.5  # 1x1 conv, all weights 0.5
    assert float(ranges["x"].highest) == 7.0 and float(ranges["x"].lowest) == images.min()
    assert float(ranges["c"].highest) == pytest.approx(conv.max(), rel=1e-6)
    assert float(ranges["c"].lowest) == pytest.approx(conv.min(), rel=1e-6)


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_non_finite_activations_are_one_clear_error(tmp_path: Path, method: str) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model(False, nan=True), str(path))
    images = np.full((3, 3, 8, 8), 3.0, np.float32)
    images[1] = 0.5  # sqrt(0.5 - 2) on the second image
    with pytest.raises(CalibrationError, match=r"not finite on calibration images 2\.\.2"):
        compute_ranges(path, CalibrationSet(images, "r"), method, "x", scratch=tmp_path / "s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # scratch removed

"""δ1 and rel per ground-truth depth range: binning, pooling, protocols, evaluate and bench."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench.harness import BenchOptions, run_bench
from bench.report import range_lines, row_label
from densedepth.data.readers import open_dataset
from densedepth.evaluation import evaluate_dataset
from densedepth.metrics import (
    KITTI_RANGES,
    NYU_RANGES,
    compute_metrics,
    eigen_evaluate,
    metrics_by_range,
    protocol_ranges,
)
from densedepth.util.errors import DataError

# one pixel per row: (gt, pred) with pred 1.3 x gt in the 5-10 m band only; 2 and 5 m sit on
# the lower edges of their bands and 10 m on the closed upper edge of the last
BAND_GT = np.array([0.5, 1.5, 2.0, 3.0, 4.9, 5.0, 7.0, 10.0])
BAND_PRED = np.where(BAND_GT >= 5.0, BAND_GT * 1.3, BAND_GT)


def pooled_from_ranges(by_range: list[dict], key: str) -> float:
    """A pixel-weighted mean of the ranges' figures (what pooling the union gives)."""
    filled = [e for e in by_range if e["pixels"]]
    return sum(e[key] * e["pixels"] for e in filled) / sum(e["pixels"] for e in filled)


def test_a_far_band_error_shows_in_its_range_only() -> None:
    got = metrics_by_range(BAND_GT, BAND_PRED)
    assert [tuple(e["range_m"]) for e in got] == [(0, 2), (2, 5), (5, 10)]
    assert [e["pixels"] for e in got] == [2, 3, 3]
    assert [e["delta1"] for e in got] == [1.0, 1.0, 0.0]  # ratio 1.3 >= 1.25
    assert got[0]["rel"] == got[1]["rel"] == 0.0
    assert got[2]["rel"] == pytest.approx(0.3, abs=1e-12)
    pooled = compute_metrics(BAND_GT, BAND_PRED)  # 5 of 8 pixels right, rel 3 x 0.3 / 8
    assert pooled["delta1"] == 5 / 8 and pooled["rel"] == pytest.approx(0.9 / 8)


def test_the_union_of_the_ranges_is_the_pooled_set() -> None:
    rng = np.random.default_rng(3)
    gt = rng.uniform(0.2, 10.0, (6, 40, 50))
    gt[rng.random(gt.shape) < 0.1] = 0.0  # holes
    gt[0, 0, :5] = np.nan
    gt[1, 0, :3] = 10.0  # the closed upper edge
    pred = np.clip(gt * rng.uniform(0.7, 1.4, gt.shape), 0.1, 10)
    pred[~(gt > 0)] = 1.0
    got = metrics_by_range(gt, pred)
    pooled = compute_metrics(gt, pred)
    valid = np.count_nonzero(np.isfinite(gt) & (gt > 0))
    assert sum(e["pixels"] for e in got) == valid
    assert [e["pixels"] for e in got] == [
        np.count_nonzero((gt > 0) & (gt < 2)),
        np.count_nonzero((gt >= 2) & (gt < 5)),
        np.count_nonzero((gt >= 5) & (gt <= 10)),
    ]
    for key in ("delta1", "rel"):
        assert pooled_from_ranges(got, key) == pytest.approx(pooled[key], rel=1e-12)


def test_an_empty_range_has_zero_pixels_and_no_figures() -> None:
    gt = np.full((4, 4), 1.0)
    got = metrics_by_range(gt, gt * 1.1)
    assert [e["pixels"] for e in got] == [16, 0, 0]
    assert got[0]["delta1"] == 1.0 and got[0]["rel"] == pytest.approx(0.1)
    assert all(e["delta1"] is None and e["rel"] is None for e in got[1:])
    text = json.dumps(got, allow_nan=False)  # null, never NaN
    assert '"delta1": null' in text


def test_ranges_are_checked() -> None:
    for bad in ([(2, 0)], [(0, 5), (2, 10)], [], [(0, float("inf"))], [(0,)]):
        with pytest.raises(DataError, match="depth ranges"):
            metrics_by_range(BAND_GT, BAND_PRED, bad)
    got = metrics_by_range(BAND_GT, BAND_PRED, [(0, 3), (3, 20)])  # custom bins
    assert [e["pixels"] for e in got] == [3, 5]


def test_protocols_choose_their_ranges() -> None:
    assert protocol_ranges("eigen") == protocol_ranges("densedepth") == NYU_RANGES
    assert protocol_ranges("kitti-garg") == protocol_ranges("kitti-eigen") == KITTI_RANGES
    assert NYU_RANGES == ((0, 2), (2, 5), (5, 10))
    assert KITTI_RANGES == ((0, 10), (10, 20), (20, 40), (40, 80))


# --- through eigen_evaluate: one constant depth per image ---------------------------------------


def constant_set(depths: list[float], size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Image i: RGB all 40 * i (how the predictor knows it), depth ``depths[i]`` everywhere."""
    rgb = np.stack([np.full((size, size, 3), 40 * i, np.uint8) for i in range(len(depths))])
    depth = np.stack([np.full((size, size), d, np.float32) for d in depths])
    return rgb, depth


def predictor(answers: list[float]):
    """Half-resolution metres: ``answers[i]`` everywhere for image i (flip-invariant)."""

    def predict(x: np.ndarray) -> np.ndarray:
        ids = np.rint(x[:, 0, 0, 0] * 255 / 40).astype(int)
        out = np.empty((x.shape[0], 1, x.shape[2] // 2, x.shape[3] // 2), np.float32)
        out[:] = np.array([answers[i] for i in ids], np.float32)[:, None, None, None]
        return out

    return predict


def test_eigen_protocol_bins_each_image_by_its_ground_truth() -> None:
    depths = [1.0, 3.0, 7.0, 0.05, 12.0]  # 0.05 and 12 m are clamped to 0.1 and 10 m
    rgb, depth = constant_set(depths)
    answers = [1.0, 3.0, 7.0 * 1.3, 0.1, 10.0]
    got = eigen_evaluate(predictor(answers), rgb, depth, crop=None, ranges=NYU_RANGES)
    by = got["by_range"]
    assert [e["pixels"] for e in by] == [128, 64, 128]  # 1 + 0.05 m, 3 m, 7 + 12 m
    assert [e["images"] for e in by] == [2, 1, 2]
    assert [e["delta1"] for e in by] == [1.0, 1.0, 0.5]
    assert by[2]["rel"] == pytest.approx(0.3 / 2)  # 7 m 30% off, 12 m (10 after clamp) exact
    for key in ("delta1", "rel"):
        assert pooled_from_ranges(by, key) == pytest.approx(got[key], rel=1e-12)
    assert "by_range" not in eigen_evaluate(predictor(answers), rgb, depth, crop=None)


def test_densedepth_protocol_bins_by_the_ground_truth_not_its_swapped_pair() -> None:
    """The densedepth protocol passes (prediction, ground truth) to the metrics: a 1.8 m pixel
    predicted at 2.34 m stays in 0-2 m, and its rel divides by the prediction."""
    rgb, depth = constant_set([1.8, 1.8, 6.0, 6.0])
    answers = [1.8 * 1.3, 1.8, 6.0, 6.0]
    got = eigen_evaluate(
        predictor(answers), rgb, depth, crop=None, protocol="densedepth", ranges=NYU_RANGES
    )
    by = got["by_range"]
    assert [e["pixels"] for e in by] == [128, 0, 128]
    assert by[1]["delta1"] is None
    assert by[0]["delta1"] == 0.5 and by[2]["delta1"] == 1.0
    assert by[0]["rel"] == pytest.approx((0.3 / 1.3) / 2)  # |gt - pred| / pred, half the pixels
    for key in ("delta1", "rel"):
        assert pooled_from_ranges(by, key) == pytest.approx(got[key], rel=1e-12)


def test_kitti_ranges_average_images_as_the_kitti_protocol_does() -> None:
    """KITTI's metrics are per image, averaged over images: each range likewise, over the
    images with a pixel in it, whatever their pixel counts."""
    size = 16  # Garg crop rows 6..15, cols 0..15 (end exclusive): the points below are inside
    rgb = np.stack([np.full((size, size, 3), 40 * i, np.uint8) for i in range(2)])
    depth = np.zeros((2, size, size), np.float32)  # 0: no lidar return
    depth[0, 8:14, 2:12] = 5.0  # 60 points at 5 m ...
    depth[0, 8, 2:6] = 30.0  # ... 4 of them at 30 m
    depth[1, 10, 4:7] = 5.0  # 3 points at 5 m
    answers = [5.0, 5.0 * 1.3]  # image 0 right at 5 m, image 1 30% far
    got = eigen_evaluate(predictor(answers), rgb, depth, protocol="kitti-garg", ranges=KITTI_RANGES)
    by = got["by_range"]
    assert [e["pixels"] for e in by] == [56 + 3, 0, 4, 0]
    assert [e["images"] for e in by] == [2, 0, 1, 0]
    assert by[0]["delta1"] == pytest.approx(0.5)  # (1 + 0) / 2, not 56 / 59
    assert by[0]["rel"] == pytest.approx((0.0 + 0.3) / 2)
    assert by[2]["delta1"] == 0.0 and by[2]["rel"] == pytest.approx(25 / 30)
    assert by[1]["delta1"] is None and by[3]["rel"] is None
    # one image: the union of its ranges is its pooled figures
    one = eigen_evaluate(
        predictor(answers), rgb[:1], depth[:1], protocol="kitti-garg", ranges=KITTI_RANGES
    )
    for key in ("delta1", "rel"):
        assert pooled_from_ranges(one["by_range"], key) == pytest.approx(one[key], rel=1e-12)


class KittiLike(list):
    """A KITTI-kind dataset of (rgb, depth) samples."""

    depth_kind = "kitti"
    name = "kitti-like"


def test_evaluate_dataset_gives_by_range_for_the_datas_protocol() -> None:
    ds = open_dataset("synthetic", "test", n=4, height=64, width=64)
    got = evaluate_dataset(lambda x: np.full((len(x), 32, 32), 3.0), ds, (64, 64))
    assert got["protocol"] == "eigen"
    assert [tuple(e["range_m"]) for e in got["by_range"]] == list(NYU_RANGES)
    gt = np.stack([np.asarray(ds[i][1], np.float64) for i in range(len(ds))])
    valid = np.count_nonzero(np.isfinite(gt) & (gt > 0))  # no crop at 64x64
    assert sum(e["pixels"] for e in got["by_range"]) == valid
    for key in ("delta1", "rel"):
        assert pooled_from_ranges(got["by_range"], key) == pytest.approx(got[key], rel=1e-12)
    json.dumps(got, allow_nan=False)
    rgb = np.full((16, 16, 3), 0, np.uint8)
    kitti = KittiLike([(rgb, np.full((16, 16), 25.0, np.float32))])
    got = evaluate_dataset(predictor([25.0]), kitti, (16, 16))
    assert got["protocol"] == "kitti-garg"
    assert [tuple(e["range_m"]) for e in got["by_range"]] == list(KITTI_RANGES)
    assert [e["pixels"] > 0 for e in got["by_range"]] == [False, False, True, False]
    custom = evaluate_dataset(predictor([25.0]), kitti, (16, 16), ranges=[(0, 80)])
    assert custom["by_range"][0]["pixels"] == got["by_range"][2]["pixels"]


# --- bench -------------------------------------------------------------------------------------


class ConstantRunner:
    """A runner predicting ``metres`` everywhere, at a given precision."""

    name, device = "const", "cpu"
    input_shape = (1, 3, 32, 32)
    max_batch: int | None = None

    def __init__(self, metres: float, precision: str) -> None:
        self.metres, self.precision = metres, precision

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.full((batch.shape[0], 1, 16, 16), self.metres, np.float32)


def test_bench_md_has_the_range_table_and_the_csv_still_writes(tmp_path: Path) -> None:
    opts = BenchOptions(iters=1, min_time=0.0, warmup=1, warmup_ms=0.0, energy=False,
                        data_kwargs={"n": 4, "height": 64, "width": 64})  # fmt: skip
    result = run_bench([ConstantRunner(3.0, "fp32"), ConstantRunner(2.0, "int8")], tmp_path, opts)
    fp32, int8 = result["rows"]
    assert fp32["status"] == int8["status"] == "ok"
    md = (tmp_path / "bench.md").read_text()
    assert "δ1 and rel by depth range (ground truth):" in md
    assert "| model | input | 0-2 m δ1 | 0-2 m rel | 0-2 m Δδ1 | 2-5 m δ1 |" in md
    section = md.split("δ1 and rel by depth range (ground truth):")[1].split("\n\n")[1]
    for row in (fp32, int8):
        (line,) = [x for x in section.splitlines() if x.startswith(f"| {row_label(row)} |")]
        for mine, ref in zip(row["by_range"], fp32["by_range"], strict=True):
            if mine["pixels"]:
                assert f"{mine['delta1']:.4f} | {mine['rel']:.4f} |" in line
                drop = format(ref["delta1"] - mine["delta1"], "+.4f")
                assert (drop.replace("-", "+") if float(drop) == 0 else drop) in line
    assert f"{fp32['by_range'][0]['pixels']:,}" in md
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["rows"][1]["by_range"] == int8["by_range"]
    with (tmp_path / "bench.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and float(table[1]["delta1"]) == pytest.approx(int8["delta1"])


def test_the_range_table_leaves_empty_ranges_blank_and_is_absent_without_ranges() -> None:
    def row(precision: str, far: float | None) -> dict:
        def entry(lo: float, hi: float, n: int, d1: float | None, rel: float | None) -> dict:
            return {"range_m": [lo, hi], "pixels": n, "images": int(n > 0), "delta1": d1,
                    "rel": rel}  # fmt: skip

        by = [entry(0, 10, 9, 0.9, 0.1), entry(10, 20, 0, None, None), entry(20, 40, 3, far, 0.2)]
        return {"status": "ok", "p50_ms": 1.0, "engine": "onnxruntime", "backbone": "b",
                "decoder_width": 0.5, "input_size": [8, 8], "precision": precision,
                "by_range": by}  # fmt: skip

    lines = range_lines([row("fp32", 0.8), row("int8", 0.5)], "kitti-garg")
    assert lines[1] == "δ1 and rel by depth range (ground truth):"
    int8 = next(x for x in lines if x.startswith("| b onnxruntime int8 |"))
    # 0-10 m: same as fp32; 10-20 m: empty, so blank; 20-40 m: 0.3 lost
    assert int8 == (
        "| b onnxruntime int8 | 8x8 | 0.9000 | 0.1000 | +0.0000 |  |  |  | 0.5000 | 0.2000 "
        "| +0.3000 |"
    )
    assert "10-20 m 0" in lines[-1] and "averaged over the images" in lines[-1]
    assert range_lines([{**row("fp32", 0.8), "by_range": []}], "eigen") == []

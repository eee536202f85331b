"""Metrics, crop, upsampling and the two evaluation protocols (eigen, densedepth)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from densedepth.metrics import (
    EIGEN_CROP,
    METRIC_KEYS,
    compute_metrics,
    eigen_crop,
    eigen_evaluate,
    kitti_crop,
    upsample2x,
    upsample2x_skimage,
)
from densedepth.util.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def ref_metrics(gt: np.ndarray, pred: np.ndarray, rel_by_pred: bool = False) -> dict[str, float]:
    """A plain pixel loop over the valid pixels (gt > 0 and finite)."""
    n = c1 = c2 = c3 = 0
    rel = sq = lg = 0.0
    for g, p in zip(gt.ravel().tolist(), pred.ravel().tolist(), strict=True):
        if not (math.isfinite(g) and g > 0):
            continue
        n += 1
        r = max(g / p, p / g)
        c1 += r < 1.25
        c2 += r < 1.5625
        c3 += r < 1.953125
        rel += abs(g - p) / (p if rel_by_pred else g)
        sq += (g - p) ** 2
        lg += abs(math.log10(g) - math.log10(p))
    return {
        "delta1": c1 / n,
        "delta2": c2 / n,
        "delta3": c3 / n,
        "rel": rel / n,
        "rms": math.sqrt(sq / n),
        "log10": lg / n,
    }


def assert_metrics(got: dict, expected: dict, rel: float = 1e-9) -> None:
    for k in METRIC_KEYS:
        assert got[k] == pytest.approx(expected[k], rel=rel, abs=1e-12), k


# --- compute_metrics --------------------------------------------------------------------------


def test_hand_computed_2x2() -> None:
    gt = np.array([[1.0, 2.0], [4.0, 0.5]])
    pred = np.array([[1.0, 2.5], [2.0, 0.9]])
    # pixel    ratio  |err|/gt      err^2  |log10 ratio|
    # 1 vs 1   1      0             0      0
    # 2 vs 2.5 1.25   0.25          0.25   log10 1.25   (1.25 is NOT < 1.25: fails delta1)
    # 4 vs 2   2      0.5           4      log10 2      (fails all: 2 > 1.953125)
    # .5 vs .9 1.8    0.8           0.16   log10 1.8    (only delta3: 1.5625 < 1.8 < 1.953125)
    # delta1 = 1/4, delta2 = 2/4, delta3 = 3/4, rel = 1.55/4, rms = sqrt(4.41/4) = 1.05,
    # log10 = log10(1.25 * 2 * 1.8) / 4 = log10(4.5) / 4
    expected = {
        "delta1": 0.25,
        "delta2": 0.5,
        "delta3": 0.75,
        "rel": 0.3875,
        "rms": 1.05,
        "log10": math.log10(4.5) / 4,
    }
    got = compute_metrics(gt, pred)
    assert set(got) == set(METRIC_KEYS)
    assert all(isinstance(v, float) for v in got.values())
    assert_metrics(got, expected, rel=1e-12)
    # float32 inputs are computed in float64: same numbers
    assert_metrics(compute_metrics(gt.astype(np.float32), pred.astype(np.float32)), expected, 1e-7)


def test_random_against_a_pixel_loop() -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 10.0, (3, 12, 16))
    pred = gt * rng.uniform(0.5, 1.8, gt.shape)
    gt[0, :2] = 0.0
    gt[1, 3, :5] = np.nan
    gt[2, 5, 5] = np.inf
    assert_metrics(compute_metrics(gt, pred), ref_metrics(gt, pred))


def test_invalid_ground_truth_and_mask_are_ignored() -> None:
    gt = np.array([[2.0, 0.0], [np.nan, 3.0]])
    # predictions at invalid pixels may be anything, NaN and 0 included
    pred = np.array([[2.0, np.nan], [0.0, 6.0]])
    got = compute_metrics(gt, pred)
    assert got["delta1"] == 0.5 and got["rel"] == pytest.approx(0.5)  # (0 + 3/3) / 2
    masked = compute_metrics(gt, pred, mask=np.array([[True, True], [True, False]]))
    assert masked["delta1"] == 1.0 and masked["rel"] == 0.0 and masked["rms"] == 0.0


def test_pooled_over_the_set_not_averaged_per_image() -> None:
    gt = np.zeros((2, 2, 2))
    gt[0, 0, 0] = 2.0  # image 0: one valid pixel, predicted 3 (rel 0.5)
    gt[1] = 1.0  # image 1: four valid pixels, predicted exactly
    pred = np.ones((2, 2, 2))
    pred[0, 0, 0] = 3.0
    got = compute_metrics(gt, pred)
    # pooled over 5 pixels: rel 0.5 / 5, delta1 4 / 5, rms sqrt(1 / 5)
    assert got["rel"] == pytest.approx(0.1)
    assert got["delta1"] == pytest.approx(0.8)
    assert got["rms"] == pytest.approx(math.sqrt(0.2))
    per_image = np.mean([compute_metrics(gt[i], pred[i])["rel"] for i in range(2)])
    assert per_image == pytest.approx(0.25) and per_image != pytest.approx(got["rel"])


@pytest.mark.parametrize(
    ("gt", "pred", "match"),
    [
        (np.ones((2, 3)), np.ones((3, 2)), "differ in shape"),
        (np.zeros((2, 2)), np.ones((2, 2)), "no valid"),
        (np.full((2, 2), np.nan), np.ones((2, 2)), "no valid"),
        (np.ones((2, 2)), np.array([[1.0, np.nan], [1.0, 1.0]]), "clamp predictions"),
        (np.ones((2, 2)), np.array([[1.0, np.inf], [1.0, 1.0]]), "clamp predictions"),
        (np.ones((2, 2)), np.array([[1.0, 0.0], [1.0, 1.0]]), "clamp predictions"),
        (np.ones((2, 2)), np.array([[1.0, -1.0], [1.0, 1.0]]), "clamp predictions"),
    ],
)
def test_compute_metrics_errors(gt: np.ndarray, pred: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        compute_metrics(gt, pred)


def test_mask_of_wrong_shape() -> None:
    with pytest.raises(DataError, match="mask"):
        compute_metrics(np.ones((2, 2)), np.ones((2, 2)), mask=np.ones(4, bool))


def test_pure_numpy() -> None:
    code = "import sys, densedepth.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_depth_range_matches_densedepth_depth() -> None:
    from densedepth import depth, metrics

    assert (metrics.MIN_DEPTH, metrics.MAX_DEPTH) == (depth.MIN_DEPTH, depth.MAX_DEPTH)


# --- crop and upsampling ----------------------------------------------------------------------


def test_eigen_crop() -> None:
    x = np.arange(2 * 480 * 640, dtype=np.float32).reshape(2, 480, 640)
    assert EIGEN_CROP == (20, 459, 24, 615)
    c = eigen_crop(x)
    assert c.shape == (2, 440, 592)
    assert c[0, 0, 0] == x[0, 20, 24] and c[1, -1, -1] == x[1, 459, 615]
    assert eigen_crop(x[0]).shape == (440, 592)
    with pytest.raises(DataError, match="does not fit"):
        eigen_crop(np.zeros((240, 320)))


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (6, 4), (1, 1, 1, 5)])
def test_upsample2x_matches_torch_bilinear(shape: tuple[int, ...]) -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).uniform(0.1, 10, shape).astype(np.float32)
    x4 = x.reshape((-1, 1, *shape[-2:]))
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(x4), scale_factor=2, mode="bilinear", align_corners=False
    ).numpy()
    out = upsample2x(x)
    assert out.shape == (*shape[:-2], 2 * shape[-2], 2 * shape[-1])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(ref.shape), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 5, 7), (6, 4), (1, 2, 5), (1, 5)])
def test_upsample2x_skimage_matches_resize(shape: tuple[int, ...]) -> None:
    transform = pytest.importorskip("skimage.transform")
    x = np.random.default_rng(2).uniform(0.1, 10, shape)
    x3 = x.reshape((-1, *shape[-2:]))
    ref = np.stack(
        [
            transform.resize(
                img,
                (2 * img.shape[0], 2 * img.shape[1]),
                order=1,
                preserve_range=True,
                mode="reflect",
                anti_aliasing=True,
            )
            for img in x3
        ]
    )
    out = upsample2x_skimage(x)
    np.testing.assert_allclose(out.reshape(ref.shape), ref, rtol=1e-6, atol=1e-6)
    # and it really differs from the edge-clamped variant at the border only
    diff = np.abs(upsample2x(x) - out).reshape(ref.shape)
    assert np.all(diff[:, 1:-1, 1:-1] < 1e-12) and diff.max() > 1e-3


# --- eigen_evaluate ---------------------------------------------------------------------------

H, W = 16, 20
CROP = (2, 13, 3, 16)


def make_set(n: int, depth: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    return rgb, np.full((n, H, W), depth, dtype=np.float32)


def constant(value: float, channel_dim: bool = True):
    def predict(x: np.ndarray) -> np.ndarray:
        assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1] == 3
        assert x.min() >= 0.0 and x.max() <= 1.0
        shape = (x.shape[0], 1, x.shape[2] // 2, x.shape[3] // 2)
        return np.full(shape if channel_dim else (shape[0], *shape[2:]), value, np.float32)

    return predict


def test_perfect_constant_predictor_and_holes_ignored() -> None:
    rgb, depth = make_set(3)
    depth[0, 5, 5] = 0.0  # holes: ignored (the mask is taken before the clamp)
    depth[1, 6, 7] = np.nan
    for channel_dim in (True, False):
        got = eigen_evaluate(constant(2.0, channel_dim), rgb, depth, crop=CROP, batch_size=2)
        assert got["delta1"] == 1.0 and got["rel"] == 0.0 and got["rms"] == 0.0
        assert got["n_images"] == 3 and got["protocol"] == "eigen"


def test_default_eigen_crop_at_480x640() -> None:
    rgb = np.zeros((1, 480, 640, 3), np.uint8)
    depth = np.full((1, 480, 640), 3.0, np.float32)
    depth[:, :20] = depth[:, 460:] = depth[:, :, :24] = depth[:, :, 616:] = 9.0  # cropped away
    got = eigen_evaluate(constant(3.0), rgb, depth)
    assert got["delta1"] == 1.0 and got["rms"] == 0.0


def test_flip_averaging_of_a_ramp_is_constant() -> None:
    # The prediction ignores the image: a left-to-right ramp 1 + 0.5 j at half resolution.
    # Its upsampling is mirror-symmetric, so averaging it with its mirror gives the constant
    # mean 1 + 0.5 * 4.5 = 3.25 everywhere; without flip averaging rel would be ~0.4.
    def ramp(x: np.ndarray) -> np.ndarray:
        w2 = x.shape[3] // 2
        return np.broadcast_to(1.0 + 0.5 * np.arange(w2), (x.shape[0], 1, x.shape[2] // 2, w2))

    rgb, depth = make_set(2, depth=3.25)
    got = eigen_evaluate(ramp, rgb, depth, crop=None)
    assert got["delta1"] == 1.0 and got["rel"] < 1e-12
    unflipped = compute_metrics(
        depth, np.clip(upsample2x(ramp(np.zeros((2, 3, H, W)))[:, 0]), 0, 10)
    )
    assert unflipped["rel"] > 0.3


def test_flip_averaging_matches_a_manual_computation() -> None:
    calls: list[np.ndarray] = []

    def predict(x: np.ndarray) -> np.ndarray:  # depends on the image, not flip-equivariant
        calls.append(x.copy())
        half = x[:, :, ::2, ::2].mean(axis=1)
        cols = np.arange(half.shape[-1]) / half.shape[-1]
        return (0.05 + 12.0 * half * (0.5 + cols))[:, None]  # spills outside 0.1..10

    rgb, depth = make_set(3, seed=3)
    depth = np.random.default_rng(4).uniform(0.5, 9.0, depth.shape).astype(np.float32)
    got = eigen_evaluate(predict, rgb, depth, crop=CROP, batch_size=3)
    assert len(calls) == 2
    np.testing.assert_array_equal(calls[1], calls[0][..., ::-1])
    x = rgb.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    p = upsample2x(np.clip(predict(x)[:, 0].astype(np.float64), 0.1, 10.0))
    pf = upsample2x(np.clip(predict(x[..., ::-1])[:, 0].astype(np.float64), 0.1, 10.0))
    expected = eigen_crop(0.5 * p + 0.5 * pf[..., ::-1], CROP)
    assert_metrics(got, ref_metrics(eigen_crop(depth, CROP).astype(np.float64), expected))


def test_eigen_scores_the_remainder_batch_and_reads_memmaps(tmp_path: Path) -> None:
    rgb, depth = make_set(5)
    depth[4] = 4.0  # the remainder image: predicted 2 (rel 0.5) where the rest are exact
    np.save(tmp_path / "rgb.npy", rgb)
    rgb_mm = np.load(tmp_path / "rgb.npy", mmap_mode="r")
    sizes: list[int] = []

    def predict(x: np.ndarray) -> np.ndarray:
        sizes.append(x.shape[0])
        return constant(2.0)(x)

    got = eigen_evaluate(predict, rgb_mm, depth, crop=CROP, batch_size=2)
    assert got["n_images"] == 5 and sizes == [2, 2, 2, 2, 1, 1]
    assert got["rel"] == pytest.approx(0.5 / 5) and got["delta1"] == pytest.approx(4 / 5)


# --- the densedepth protocol ------------------------------------------------------------------


def original_evaluate(predict, rgb, depth, crop, batch_size):
    """The original DenseDepth evaluate() (utils.py), with skimage, on an NCHW predictor."""
    from skimage.transform import resize

    def compute_errors(gt, pred):
        thresh = np.maximum((gt / pred), (pred / gt))
        return {
            "delta1": (thresh < 1.25).mean(),
            "delta2": (thresh < 1.25**2).mean(),
            "delta3": (thresh < 1.25**3).mean(),
            "rel": np.mean(np.abs(gt - pred) / gt),
            "rms": np.sqrt(((gt - pred) ** 2).mean()),
            "log10": (np.abs(np.log10(gt) - np.log10(pred))).mean(),
        }

    def model_predict(x_nhwc):  # utils.predict: clip(1000 / out, 10, 1000) / 1000
        out = predict(x_nhwc.transpose(0, 3, 1, 2).astype(np.float32))[:, 0] * 100.0
        return np.clip(out, 10, 1000) / 1000

    def scale_up(scale, images):
        return np.stack(
            [
                resize(
                    img,
                    (scale * img.shape[0], scale * img.shape[1]),
                    order=1,
                    preserve_range=True,
                    mode="reflect",
                    anti_aliasing=True,
                )
                for img in images
            ]
        )

    predictions, truths = [], []
    bs = batch_size
    for i in range(len(rgb) // bs):
        x = rgb[i * bs : (i + 1) * bs]
        true_y = depth[i * bs : (i + 1) * bs]
        pred_y = scale_up(2, model_predict(x / 255)) * 10.0
        pred_y_flip = scale_up(2, model_predict(x[..., ::-1, :] / 255)) * 10.0
        true_y = true_y[:, crop[0] : crop[1] + 1, crop[2] : crop[3] + 1]
        pred_y = pred_y[:, crop[0] : crop[1] + 1, crop[2] : crop[3] + 1]
        pred_y_flip = pred_y_flip[:, crop[0] : crop[1] + 1, crop[2] : crop[3] + 1]
        for j in range(len(true_y)):
            predictions.append(0.5 * pred_y[j] + 0.5 * np.fliplr(pred_y_flip[j]))
            truths.append(true_y[j])
    return compute_errors(np.stack(predictions), np.stack(truths))


def test_densedepth_reproduces_the_original_evaluate() -> None:
    pytest.importorskip("skimage")

    def predict(x: np.ndarray) -> np.ndarray:
        half = x[:, :, ::2, ::2].mean(axis=1)
        cols = np.arange(half.shape[-1]) / half.shape[-1]
        return (0.05 + 12.0 * half * (0.5 + cols))[:, None]  # metres, spills outside 0.1..10

    rgb, _ = make_set(6, seed=5)
    depth = np.random.default_rng(6).uniform(0.5, 9.0, (6, H, W)).astype(np.float32)
    got = eigen_evaluate(predict, rgb, depth, crop=CROP, protocol="densedepth")
    assert got["n_images"] == 4 and got["protocol"] == "densedepth"
    assert_metrics(got, original_evaluate(predict, rgb, depth, CROP, 4), rel=1e-6)
    ours = eigen_evaluate(predict, rgb, depth, crop=CROP)
    assert ours["rel"] != pytest.approx(got["rel"], rel=1e-3)


def authors_metres(raw: np.ndarray) -> np.ndarray:
    """The authors' code on a raw network output, written out in their units: utils.predict
    ``np.clip(DepthNorm(y, maxDepth=1000), 10, 1000) / 1000`` (DepthNorm(x) = 1000 / x), then
    evaluate.py's ``* 10``."""
    with np.errstate(divide="ignore"):
        return np.clip(1000.0 / raw.astype(np.float64), 10, 1000) / 1000 * 10.0


class RawNetwork:
    """A deployable-graph stand-in: ``__call__`` gives clamp-first metres (as our ONNX does),
    ``predict_target`` the raw output, which holds negatives, +0, -0 and values beyond the
    valid targets (1..100)."""

    def __init__(self) -> None:
        from densedepth.depth import NYU_RANGE

        self.depth_norm = NYU_RANGE

    def predict_target(self, x: np.ndarray) -> np.ndarray:
        half = x[:, :, ::2, ::2].mean(axis=1, keepdims=True)
        raw = 160.0 * half - 40.0  # -40 .. 120
        raw[..., 0, 0] = 0.0
        raw[..., 0, 1] = -0.0
        raw[..., 1, 0] = 0.5
        return raw.astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return 10.0 / np.clip(self.predict_target(x), 1.0, 100.0)


def test_densedepth_protocol_converts_the_raw_output_as_the_authors() -> None:
    from densedepth.depth import authors_target_to_depth, target_to_depth
    from densedepth.evaluation import AUTHORS, evaluate_dataset

    raw = np.array([-50.0, -0.5, -0.0, 0.0, 0.05, 1.0, 2.0, 50.0, 100.0, 250.0], np.float32)
    authors = authors_target_to_depth(raw)
    np.testing.assert_allclose(authors, authors_metres(raw), rtol=1e-6)
    np.testing.assert_allclose(authors[:4], [0.1, 0.1, 0.1, 10.0])  # negatives: nearest
    assert (target_to_depth(raw)[:3] == 10.0).all()  # ours, clamp first: farthest

    net = RawNetwork()
    rgb, _ = make_set(8, seed=3)
    depth = np.random.default_rng(4).uniform(0.3, 9.0, (8, H, W)).astype(np.float32)
    dataset = [(rgb[i], depth[i]) for i in range(8)]
    got = evaluate_dataset(net, dataset, (H, W), protocol="densedepth")
    assert got["depth_conversion"] == AUTHORS and got["n_images"] == 8
    expected = eigen_evaluate(
        lambda x: authors_metres(net.predict_target(x)), rgb, depth, crop=None,
        protocol="densedepth",
    )  # fmt: skip
    assert_metrics(got, expected, rel=1e-6)
    clamp_first = eigen_evaluate(net, rgb, depth, crop=None, protocol="densedepth")
    assert got["rms"] != pytest.approx(clamp_first["rms"], rel=1e-3)
    # the default protocol keeps clamp-first
    eigen = evaluate_dataset(net, dataset, (H, W), protocol="eigen")
    assert "depth_conversion" not in eigen
    assert_metrics(eigen, eigen_evaluate(net, rgb, depth, crop=None), rel=1e-9)


def test_densedepth_drops_the_remainder_and_divides_rel_by_the_prediction() -> None:
    rgb, depth = make_set(10)  # gt 2 m, predicted 4 m
    depth[8:] = 5.0  # the two images the densedepth protocol drops (10 // 4 = 2 batches)
    dd = eigen_evaluate(constant(4.0), rgb, depth, crop=CROP, protocol="densedepth")
    assert dd["n_images"] == 8
    assert dd["rel"] == pytest.approx(0.5)  # |2 - 4| / 4: divided by the prediction
    assert dd["rms"] == pytest.approx(2.0)
    eig = eigen_evaluate(constant(4.0), rgb, depth, crop=CROP, batch_size=4)
    assert eig["n_images"] == 10
    assert eig["rel"] == pytest.approx((8 * 2 / 2 + 2 * 1 / 5) / 10)  # |gt - 4| / gt, pooled
    assert eig["rms"] == pytest.approx(math.sqrt((8 * 4 + 2 * 1) / 10))


def test_densedepth_needs_filled_ground_truth_and_a_full_batch() -> None:
    rgb, depth = make_set(4)
    depth[1, 5, 5] = 0.0
    with pytest.raises(DataError, match="filled ground truth"):
        eigen_evaluate(constant(2.0), rgb, depth, crop=CROP, protocol="densedepth")
    with pytest.raises(DataError, match="full batches"):
        eigen_evaluate(constant(2.0), rgb[:3], depth[:3], protocol="densedepth", crop=CROP)


# --- bad inputs -------------------------------------------------------------------------------


def _bad_cases() -> list[tuple[dict, str]]:
    rgb, depth = make_set(2)
    return [
        ({"protocol": "nyu"}, "unknown protocol"),
        ({"rgb": rgb.astype(np.float32)}, "uint8"),
        ({"rgb": rgb[0]}, "uint8"),
        ({"rgb": np.zeros((2, H, W, 4), np.uint8)}, "channels"),
        ({"depth": depth[:1]}, "matching rgb"),  # one map for two images
        ({"depth": [depth[0], depth[1][0]]}, "matching rgb"),  # a row is not a map
        ({"depth": depth.astype(np.int32)}, "float"),
        ({"rgb": rgb[:, :-1], "depth": depth[:, :-1]}, "even"),
        ({"rgb": rgb[:0], "depth": depth[:0]}, "empty"),
        ({"predict": lambda x: np.ones((x.shape[0], H, W))}, "half resolution"),
        ({"crop": (0, H, 0, W)}, "does not fit"),
        ({"batch_size": 0}, "batch_size"),
    ]


@pytest.mark.parametrize(("kwargs", "match"), _bad_cases())
def test_eigen_evaluate_errors(kwargs: dict, match: str) -> None:
    rgb, depth = make_set(2)
    args = {"predict": constant(2.0), "rgb": rgb, "depth": depth, "crop": CROP, **kwargs}
    with pytest.raises(DataError, match=match):
        eigen_evaluate(**args)


def test_nan_predictions_are_reported() -> None:
    rgb, depth = make_set(2)
    for protocol in ("eigen", "densedepth"):
        with pytest.raises(DataError, match="NaN"):
            eigen_evaluate(constant(np.nan), rgb, depth, crop=CROP, protocol=protocol, batch_size=2)


def test_metrics_at_ground_truth_resolution_for_any_input_size() -> None:
    from densedepth.data.readers import open_dataset
    from densedepth.evaluation import evaluate_dataset, evaluation_arrays

    test = open_dataset("synthetic", "test", n=3, height=480, width=640, seed=7)

    def rows(x: np.ndarray) -> np.ndarray:
        """Depth as a function of the image row only: the same picture at any resolution."""
        n, _, h, w = x.shape
        y = (np.arange(h // 2) + 0.5) / (h // 2)
        return np.broadcast_to((1.0 + 5.0 * y)[None, None, :, None], (n, 1, h // 2, w // 2))

    rgb, depth, crop = evaluation_arrays(test, (240, 320))
    assert rgb.shape == (3, 240, 320, 3) and depth.shape == (3, 480, 640)  # gt not resized
    assert crop == EIGEN_CROP  # the Eigen crop of NYU-sized ground truth, whatever the input
    full = evaluate_dataset(rows, test, (480, 640))
    half = evaluate_dataset(rows, test, (240, 320))
    quarter = evaluate_dataset(rows, test, (128, 160))
    for k in METRIC_KEYS:
        assert half[k] == pytest.approx(full[k], rel=1e-6, abs=1e-9), k
        assert quarter[k] == pytest.approx(full[k], rel=1e-6, abs=1e-9), k
    # ground truth of mixed sizes is scored image by image at its own size, without a crop
    mixed = [open_dataset("synthetic", "test", n=1, height=h, width=w, seed=3)[0] for h, w in
             ((96, 128), (120, 160))]  # fmt: skip
    rgb, depth, crop = evaluation_arrays(mixed, (64, 64))
    assert crop is None and [d.shape for d in depth] == [(96, 128), (120, 160)]
    got = eigen_evaluate(rows, rgb, depth, crop=None)
    assert got["n_images"] == 2 and 0 <= got["delta1"] <= 1


def test_resize_bilinear_matches_opencv() -> None:
    import cv2

    from densedepth.metrics import resize_bilinear

    x = np.random.default_rng(0).random((7, 9)).astype(np.float32)
    for size in ((14, 18), (21, 27), (5, 4), (7, 9)):
        want = cv2.resize(x, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(resize_bilinear(x, size), want, atol=1e-5)


def _bts_kitti_metrics(gt: np.ndarray, pred: np.ndarray, crop: str) -> np.ndarray:
    """KITTI as BTS's eval_with_pngs.py writes it, per image (a reference written from its
    text, not from ours): valid 1e-3 < gt < 80, the crop as a mask of int() fractions,
    predictions clipped to [1e-3, 80]; delta1..3, abs rel, rms, log10."""
    h, w = gt.shape
    valid = np.logical_and(gt > 1e-3, gt < 80)
    mask = np.zeros(gt.shape)
    if crop == "garg":
        mask[
            int(0.40810811 * h) : int(0.99189189 * h), int(0.03594771 * w) : int(0.96405229 * w)
        ] = 1
    else:
        mask[int(0.3324324 * h) : int(0.91351351 * h), int(0.0359477 * w) : int(0.96405229 * w)] = 1
    valid = np.logical_and(valid, mask)
    p = pred.copy()
    p[p < 1e-3], p[p > 80] = 1e-3, 80
    g, p = gt[valid], p[valid]
    thresh = np.maximum(g / p, p / g)
    return np.array([
        (thresh < 1.25).mean(), (thresh < 1.25**2).mean(), (thresh < 1.25**3).mean(),
        np.mean(np.abs(g - p) / g), np.sqrt(((g - p) ** 2).mean()),
        np.mean(np.abs(np.log10(g) - np.log10(p))),
    ])  # fmt: skip


@pytest.mark.parametrize("crop", ["garg", "eigen"])
def test_kitti_protocols_match_bts_per_image_means(crop: str) -> None:
    """Sparse ground truth at KITTI's 375 x 1242 (holes, points beyond 80 m), a constant depth
    per image from a model run at 64 x 192 (so upsampling and resizing keep it exact), one
    prediction beyond the cap and one image with no valid pixel in the crop: the metrics are
    BTS's per-image values averaged over the images that have valid pixels."""
    rng = np.random.default_rng(7)
    n, (gh, gw) = 4, (375, 1242)
    gt = np.where(rng.random((n, gh, gw)) < 0.06, rng.uniform(0.5, 95.0, (n, gh, gw)), 0.0)
    gt[3] = 0.0  # no lidar points at all: skipped, as BTS would have nothing to score
    constant = np.array([7.5, 30.0, 120.0, 12.0])  # 120 m: clipped to the 80 m cap
    rgb = np.zeros((n, 64, 192, 3), np.uint8)
    rgb[:, 0, 0, 0] = np.arange(n)  # tells the predictor which image it has (flip-safe)
    rgb[:, 0, -1, 0] = np.arange(n)

    def predict(x: np.ndarray) -> np.ndarray:
        ids = np.rint(x[:, 0, 0, 0] * 255).astype(int)
        return np.broadcast_to(constant[ids][:, None, None, None], (len(x), 1, 32, 96)).copy()

    got = eigen_evaluate(predict, rgb, gt.astype(np.float32), protocol=f"kitti-{crop}")
    ref = np.mean([_bts_kitti_metrics(gt[i], np.full((gh, gw), constant[i]), crop)
                   for i in range(3)], axis=0)  # fmt: skip
    assert got["n_images"] == 3 and got["protocol"] == f"kitti-{crop}"
    keys = ("delta1", "delta2", "delta3", "rel", "rms", "log10")
    np.testing.assert_allclose([got[k] for k in keys], ref, rtol=1e-5)
    assert kitti_crop("kitti-garg", 375, 1242) == (153, 371, 44, 1197)


def test_kitti_protocol_scores_to_80_m_where_nyus_is_blind_beyond_10() -> None:
    """40 m of ground truth: a 40 m prediction is perfect under KITTI's protocol and a 15 m one
    is wrong; NYU's protocol clamps both sides to 10 m and calls the wrong one perfect too."""
    gt = np.full((1, 64, 192), 40.0, np.float32)
    rgb = np.zeros((1, 64, 192, 3), np.uint8)

    def constant(metres: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: np.full((len(x), 1, 32, 96), metres, np.float32)

    assert eigen_evaluate(constant(40.0), rgb, gt, protocol="kitti-garg")["delta1"] == 1.0
    assert eigen_evaluate(constant(15.0), rgb, gt, protocol="kitti-garg")["delta1"] == 0.0
    assert eigen_evaluate(constant(15.0), rgb, gt, crop=None, protocol="eigen")["delta1"] == 1.0
    with pytest.raises(DataError, match="no image has a ground-truth pixel between"):
        eigen_evaluate(constant(40.0), rgb, np.zeros_like(gt), protocol="kitti-eigen")

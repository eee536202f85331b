"""Depth metrics and the Eigen evaluation protocol, in pure numpy (no torch).

``compute_metrics(gt, pred)`` gives delta1..3, rel, rms and log10 pooled over every valid pixel
of a whole set (valid: ``gt > 0`` and finite), computed in float64.

``eigen_evaluate(predict, rgb, depth)`` runs a predictor (RGB float32 NCHW in [0,1] -> metres
at half resolution) over a test set batch by batch. Two protocols:

- ``"eigen"`` (ours, the default): every image is scored, the remainder batch included; the
  half-resolution predictions are clamped to [0.1, 10] m and upsampled 2x bilinearly with
  half-pixel centres and edge clamping (``upsample2x``, torch's ``align_corners=False``); the
  prediction is averaged with the mirrored prediction of the mirrored image; prediction and
  ground truth are cropped (inclusive Eigen crop 20..459 x 24..615 at 480x640) and clamped to
  [0.1, 10] m; only valid ground-truth pixels (``gt > 0`` and finite, decided before the clamp)
  count; ``rel = mean(|gt - pred| / gt)``.
- ``"densedepth"`` reproduces the original DenseDepth ``evaluate()`` (evaluate.py), quirks
  included, so tables compare with the paper:

  1. batch size 4 by default, and only ``N // batch_size`` full batches are scored: the last
     ``N % batch_size`` images are dropped (654 test images, bs 4: 652 scored);
  2. upsampling is ``skimage.transform.resize(order=1, mode='reflect', anti_aliasing=True)``:
     bilinear with half-pixel centres but mirrored at the border, so the outermost output
     pixels are ``0.75 * edge + 0.25 * next`` instead of the edge value
     (``upsample2x_skimage``);
  3. predictions are clipped to [0.1, 10] m before upsampling but the ground truth is never
     clamped;
  4. no validity mask: every cropped pixel counts, holes included, so the ground truth must be
     filled (a zero makes log10 infinite; we raise instead);
  5. the metric function is called with its arguments swapped
     (``compute_errors(predictions, ground_truth)``), so ``rel = mean(|gt - pred| / pred)``
     divides by the prediction; delta, rms and log10 are symmetric and unaffected;
  6. the network's output ``y`` becomes metres as ``clip(10 / y, 0.1, 10)`` (invert, then clip:
     a negative ``y`` gives 0.1 m), not clamp-first; ``eigen_evaluate`` takes metres, so
     ``densedepth.evaluation.evaluate_dataset`` applies it from a predictor's raw output
     (``predict_target``) where there is one.

  Flip averaging (0.5 * pred + 0.5 * mirrored flip prediction), the crop and the pooling over
  every pixel of the set are the same in both protocols.

- ``"kitti-garg"`` and ``"kitti-eigen"``: KITTI as BTS and AdaBins evaluate it (the numbers
  the literature and the DenseDepth paper's KITTI table compare). Depth is capped at 80 m:
  predictions are clamped to [0.001, 80] m, and only ground-truth pixels with
  0.001 < gt < 80 m count (KITTI's ground truth is sparse: 0 means no lidar return), inside the
  Garg crop (rows 0.40810811..0.99189189, columns 0.03594771..0.96405229 of the ground truth's
  height and width, truncated to integers, end exclusive) or the Eigen crop (rows
  0.3324324..0.91351351, columns 0.0359477..0.96405229). The flip-averaged prediction is
  brought to the ground truth's resolution, the metrics are computed per image and averaged
  over the images that have a valid pixel (the pixels of an image are not pooled with other
  images'); ``rel`` divides by the ground truth.

Depth ranges: with ``ranges`` (``protocol_ranges``: NYU 0-2, 2-5, 5-10 m; KITTI 0-10, 10-20,
20-40, 40-80 m) ``eigen_evaluate`` also gives delta1 and rel per range of the GROUND-TRUTH depth
(``by_range``), accumulated as the pooled metrics are: pixel-pooled over the set under eigen and
densedepth, per image and averaged over the images with a pixel in the range under KITTI.
``metrics_by_range(gt, pred)`` does the same, pixel-pooled, for arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from densedepth.depth import MAX_DEPTH, MIN_DEPTH  # numpy only, like this module
from densedepth.util.errors import DataError
from densedepth.util.progress import progress

EIGEN_CROP = (20, 459, 24, 615)  # rows top..bottom, cols left..right, inclusive, at 480x640
METRIC_KEYS = ("delta1", "delta2", "delta3", "rel", "rms", "log10")
PROTOCOLS = ("eigen", "densedepth", "kitti-garg", "kitti-eigen")
DEFAULT_BATCH_SIZE = {"eigen": 8, "densedepth": 4, "kitti-garg": 8, "kitti-eigen": 8}
KITTI_MIN_DEPTH, KITTI_MAX_DEPTH = 1e-3, 80.0  # metres: the cap every KITTI table uses
# (top, bottom, left, right) as fractions of the ground truth's height and width
KITTI_CROPS = {
    "kitti-garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),  # Garg et al., ECCV 2016
    "kitti-eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),  # Eigen et al., NIPS 2014
}

# ground-truth depth bins in metres: [low, high), the last one [low, high]
NYU_RANGES = ((0.0, 2.0), (2.0, 5.0), (5.0, 10.0))
KITTI_RANGES = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, 80.0))

Crop = tuple[int, int, int, int]
DepthRange = tuple[float, float]
Predictor = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------
# Metrics


def _sums(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Sufficient statistics of the metrics over paired 1-D float64 arrays.

    ``[count, n(delta<1.25), n(<1.25^2), n(<1.25^3), sum rel, sum sq err, sum |log10 ratio|]``,
    with ``rel`` dividing by ``gt``.
    """
    ratio = np.maximum(gt / pred, pred / gt)
    err = gt - pred
    return np.array(
        [
            gt.size,
            np.count_nonzero(ratio < 1.25),
            np.count_nonzero(ratio < 1.25**2),
            np.count_nonzero(ratio < 1.25**3),
            np.sum(np.abs(err) / gt),
            np.sum(err * err),
            np.sum(np.abs(np.log10(gt) - np.log10(pred))),
        ],
        dtype=np.float64,
    )


def _finish(sums: np.ndarray) -> dict[str, float]:
    n = sums[0]
    return {
        "delta1": float(sums[1] / n),
        "delta2": float(sums[2] / n),
        "delta3": float(sums[3] / n),
        "rel": float(sums[4] / n),
        "rms": float(np.sqrt(sums[5] / n)),
        "log10": float(sums[6] / n),
    }


def _valid_sums(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Checked ``_sums`` over the valid pixels of ``gt`` (> 0, finite, and ``mask``)."""
    return _sums(*_valid_pairs(gt, pred, mask))


def _valid_pairs(
    gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The valid pixels of ``gt`` (> 0, finite, and ``mask``) and their predictions, 1-D
    float64; shapes and predictions checked."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise DataError(
            f"ground truth {gt.shape} and prediction {pred.shape} differ in shape; "
            "bring the prediction to the ground truth's resolution first"
        )
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > 0)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != gt.shape:
            raise DataError(
                f"mask {mask.shape} and ground truth {gt.shape} differ in shape; "
                "pass a boolean mask of the ground truth's shape"
            )
        valid &= mask.astype(bool)
    g = gt[valid].astype(np.float64)
    p = pred[valid].astype(np.float64)
    bad = np.count_nonzero(~(np.isfinite(p) & (p > 0)))
    if bad:
        raise DataError(
            f"{bad} predictions at valid pixels are NaN, infinite or <= 0; clamp predictions "
            f"to the valid range [{MIN_DEPTH}, {MAX_DEPTH}] m before computing metrics"
        )
    return g, p


def compute_metrics(
    gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """delta1..3, rel, rms, log10 pooled over every valid pixel of ``gt`` (any shape).

    Valid: ``gt > 0``, finite, and ``mask`` where given. ``rel = mean(|gt - pred| / gt)``,
    ``rms = sqrt(mean((gt - pred)^2))``, ``log10 = mean(|log10 gt - log10 pred|)``,
    ``delta_k`` the fraction with ``max(gt/pred, pred/gt) < 1.25**k``. float64 throughout.
    """
    sums = _valid_sums(gt, pred, mask)
    if sums[0] == 0:
        raise DataError(
            "no valid ground-truth pixels (none is finite and > 0, or the mask excludes all); "
            "check the depth maps and the mask"
        )
    return _finish(sums)


# --------------------------------------------------------------------------------------------
# Metrics per depth range


def protocol_ranges(protocol: str) -> tuple[DepthRange, ...]:
    """The default ground-truth depth ranges of ``protocol``: NYU's 0-2, 2-5, 5-10 m (eigen,
    densedepth), KITTI's 0-10, 10-20, 20-40, 40-80 m (kitti-garg, kitti-eigen)."""
    return KITTI_RANGES if protocol.startswith("kitti") else NYU_RANGES


def check_ranges(ranges: Sequence[Sequence[float]]) -> tuple[DepthRange, ...]:
    """``ranges`` as float pairs, checked: at least one, each low < high, in increasing order
    and not overlapping (so every pixel falls in at most one)."""
    try:
        pairs = tuple((float(lo), float(hi)) for lo, hi in ranges)
    except (TypeError, ValueError):
        raise DataError(f"depth ranges {ranges!r} are not (low, high) pairs of metres") from None
    ends = [e for pair in pairs for e in pair]
    ok = bool(pairs) and all(np.isfinite(ends)) and all(lo < hi for lo, hi in pairs)
    if not ok or any(a > b for a, b in zip(ends[1::2], ends[2::2], strict=False)):
        raise DataError(
            f"depth ranges {ranges!r} must be finite (low, high) pairs in metres, low < high, "
            "in increasing order without overlap, e.g. ((0, 2), (2, 5), (5, 10))"
        )
    return pairs


def _range_masks(depth: np.ndarray, ranges: Sequence[DepthRange]) -> list[np.ndarray]:
    """Which pixels of ``depth`` (the ground truth) fall in each range: low <= d < high, the
    last range closed (low <= d <= high, so NYU's 10 m cap is in 5-10 m)."""
    last = len(ranges) - 1
    return [
        (depth >= lo) & ((depth <= hi) if i == last else (depth < hi))
        for i, (lo, hi) in enumerate(ranges)
    ]


def _range_sums(
    first: np.ndarray, second: np.ndarray, depth: np.ndarray, ranges: Sequence[DepthRange]
) -> np.ndarray:
    """``_sums(first, second)`` of the pixels in each range of ``depth``: (ranges, 7)."""
    return np.stack([_sums(first[m], second[m]) for m in _range_masks(depth, ranges)])


class RangeSums:
    """delta1 and rel per ground-truth depth range, accumulated image by image as the pooled
    metrics are: pixel-pooled sums over the set, or (``per_image``, the KITTI protocols) each
    image's figures averaged over the images with a pixel in the range.

    Binned by the ground truth, never the prediction: a pixel stays in its range whatever the
    model predicts, so rows of one test set compare range by range.
    """

    def __init__(self, ranges: Sequence[Sequence[float]], per_image: bool = False) -> None:
        self.ranges = check_ranges(ranges)
        self.per_image = per_image
        self.sums = np.zeros((len(self.ranges), 7), dtype=np.float64)
        self.image_means = np.zeros((len(self.ranges), 2), dtype=np.float64)  # delta1, rel
        self.images = np.zeros(len(self.ranges), dtype=np.int64)

    def add(self, first: np.ndarray, second: np.ndarray, depth: np.ndarray) -> None:
        """One image's scored pixels: the pair ``_sums`` takes, and the ground truth binning
        them (``first`` itself except under densedepth, whose pair is swapped)."""
        image = _range_sums(first, second, depth, self.ranges)
        self.sums += image
        for i in np.flatnonzero(image[:, 0]):
            scores = _finish(image[i])
            self.image_means[i] += (scores["delta1"], scores["rel"])
            self.images[i] += 1

    def result(self) -> list[dict[str, Any]]:
        """JSON-able, one entry per range: ``range_m`` [low, high], ``pixels``, ``images``
        (with a pixel in the range), ``delta1`` and ``rel`` (None for an empty range)."""
        out = []
        for i, (lo, hi) in enumerate(self.ranges):
            entry: dict[str, Any] = {
                "range_m": [lo, hi],
                "pixels": int(self.sums[i, 0]),
                "images": int(self.images[i]),
                "delta1": None,
                "rel": None,
            }
            if self.images[i]:
                if self.per_image:
                    d1, rel = self.image_means[i] / self.images[i]
                else:
                    scores = _finish(self.sums[i])
                    d1, rel = scores["delta1"], scores["rel"]
                entry.update(delta1=float(d1), rel=float(rel))
            out.append(entry)
        return out


def metrics_by_range(
    gt: np.ndarray,
    pred: np.ndarray,
    ranges: Sequence[Sequence[float]] = NYU_RANGES,
    mask: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """delta1 and rel per range of the ground truth ``gt``, pooled over its valid pixels as
    ``compute_metrics`` pools them (``RangeSums.result``'s entries); pixels outside every range
    count in none."""
    g, p = _valid_pairs(gt, pred, mask)
    sums = RangeSums(ranges)
    sums.add(g, p, g)
    return sums.result()


# --------------------------------------------------------------------------------------------
# Crop and upsampling


def _check_crop(crop: Crop, h: int, w: int) -> tuple[int, int, int, int]:
    try:
        top, bottom, left, right = (int(c) for c in crop)
    except (TypeError, ValueError):
        raise DataError(
            f"crop {crop!r} is not four integers (top, bottom, left, right; inclusive)"
        ) from None
    if not (0 <= top <= bottom < h and 0 <= left <= right < w):
        raise DataError(
            f"crop {crop!r} (top, bottom, left, right; inclusive) does not fit {h}x{w} images; "
            "pass a crop inside the image or crop=None"
        )
    return top, bottom, left, right


def eigen_crop(x: np.ndarray, crop: Crop = EIGEN_CROP) -> np.ndarray:
    """``x[..., top:bottom+1, left:right+1]`` (inclusive bounds; 480x640 -> 440x592)."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise DataError(f"eigen_crop needs an array of at least 2 dims, got shape {x.shape}")
    top, bottom, left, right = _check_crop(crop, *x.shape[-2:])
    return x[..., top : bottom + 1, left : right + 1]


def _float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _upsample_axis(x: np.ndarray, axis: int, pad_mode: str) -> np.ndarray:
    """2x linear upsampling of one axis with half-pixel centres.

    Output ``2k`` samples input coordinate ``k - 0.25`` and ``2k + 1`` samples ``k + 0.25``,
    so the weights are always 0.25 / 0.75; the border sample comes from ``np.pad``'s
    ``pad_mode`` (``edge``: clamp; ``reflect``: mirror about the edge pixel's centre).
    """
    n = x.shape[axis]
    if n == 0:
        raise DataError(f"cannot upsample an empty axis (shape {x.shape})")
    widths = [(0, 0)] * x.ndim
    widths[axis] = (1, 1)
    p = np.pad(x, widths, mode=pad_mode if n > 1 else "edge")
    prev = np.take(p, np.arange(0, n), axis=axis)
    mid = np.take(p, np.arange(1, n + 1), axis=axis)
    nxt = np.take(p, np.arange(2, n + 2), axis=axis)
    even = 0.25 * prev + 0.75 * mid
    odd = 0.75 * mid + 0.25 * nxt
    out = np.stack([even, odd], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] = 2 * n
    return out.reshape(shape).astype(x.dtype, copy=False)


def _upsample2x(x: np.ndarray, pad_mode: str) -> np.ndarray:
    x = _float(x)
    if x.ndim < 2:
        raise DataError(f"upsampling needs an array (..., h, w), got shape {x.shape}")
    return _upsample_axis(_upsample_axis(x, x.ndim - 2, pad_mode), x.ndim - 1, pad_mode)


def upsample2x(depth_half: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling of (..., h, w) to (..., 2h, 2w), half-pixel centres, edge-clamped
    (torch ``interpolate(mode="bilinear", align_corners=False)``). Keeps a float dtype."""
    return _upsample2x(depth_half, "edge")


def upsample2x_skimage(depth_half: np.ndarray) -> np.ndarray:
    """The original DenseDepth ``scale_up(2, ...)``: ``skimage.transform.resize(order=1,
    mode='reflect', anti_aliasing=True, preserve_range=True)`` to (..., 2h, 2w), i.e. bilinear
    with half-pixel centres, mirrored about the edge pixel (anti-aliasing does nothing when
    upsampling)."""
    return _upsample2x(depth_half, "reflect")


def _axis_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis: source indices i0, i1 and the weight of i1."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(np.intp)
    return i0, np.minimum(i0 + 1, n_in - 1), src - i0


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (..., h, w) to (..., H, W) with half-pixel centres and edge clamping
    (OpenCV's INTER_LINEAR, torch's ``align_corners=False``, no anti-aliasing)."""
    x = _float(x)
    i0, i1, wy = _axis_taps(x.shape[-2], int(size[0]))
    j0, j1, wx = _axis_taps(x.shape[-1], int(size[1]))
    rows = x[..., i0, :] * (1 - wy)[:, None] + x[..., i1, :] * wy[:, None]
    return (rows[..., j0] * (1 - wx) + rows[..., j1] * wx).astype(x.dtype, copy=False)


# --------------------------------------------------------------------------------------------
# The evaluation protocols


def _check_inputs(
    rgb: np.ndarray, depth: np.ndarray | Sequence[np.ndarray]
) -> tuple[int, int, int]:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 4:
        raise DataError(
            f"rgb must be a uint8 array N x H x W x 3, got "
            f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}; "
            "pass the images as loaded (0..255), not normalised"
        )
    n, h, w, c = rgb.shape
    if c != 3:
        raise DataError(f"rgb must be N x H x W x 3, got shape {rgb.shape} ({c} channels)")
    if isinstance(depth, np.ndarray):
        ok = depth.ndim == 3 and depth.shape[0] == n
        dtypes = {depth.dtype}
    else:
        ok = len(depth) == n and all(getattr(d, "ndim", 0) == 2 for d in depth)
        dtypes = {d.dtype for d in depth} if ok else set()
    if not ok:
        raise DataError(
            f"depth must be {n} maps (N x H x W, or one H x W array per image) matching rgb, "
            f"got {getattr(depth, 'shape', f'{len(depth)} items')}"
        )
    if not all(np.issubdtype(t, np.floating) for t in dtypes):
        raise DataError(f"depth must be float metres, got dtype {sorted(map(str, dtypes))}")
    if n == 0:
        raise DataError("the test set is empty; pass at least one image")
    if h % 2 or w % 2:
        raise DataError(
            f"images are {h}x{w}; the network predicts at half resolution, so H and W must be "
            "even: resize or crop the inputs"
        )
    return n, h, w


def _predict_half(predict: Predictor, x: np.ndarray, h: int, w: int) -> np.ndarray:
    """``predict(x)`` as float64 (n, h/2, w/2) metres, shape-checked."""
    out = np.asarray(predict(np.ascontiguousarray(x)))
    n = x.shape[0]
    if out.ndim == 4 and out.shape[1] == 1:
        out = out[:, 0]
    if out.shape != (n, h // 2, w // 2):
        raise DataError(
            f"the predictor returned shape {out.shape} for a batch {x.shape}; it must return "
            f"depth in metres at half resolution, ({n}, 1, {h // 2}, {w // 2}) or "
            f"({n}, {h // 2}, {w // 2})"
        )
    return out.astype(np.float64)


def protocol_depth_range(protocol: str) -> tuple[float, float]:
    """The metres predictions are clamped to under ``protocol``: NYU's 0.1..10, KITTI's
    0.001..80."""
    if protocol.startswith("kitti"):
        return KITTI_MIN_DEPTH, KITTI_MAX_DEPTH
    return MIN_DEPTH, MAX_DEPTH


def kitti_crop(protocol: str, height: int, width: int) -> tuple[int, int, int, int]:
    """The KITTI crop of ``protocol`` for a ground truth of ``height`` x ``width``:
    (top, bottom, left, right), end exclusive."""
    top, bottom, left, right = KITTI_CROPS[protocol]
    return int(top * height), int(bottom * height), int(left * width), int(right * width)


def _flip_averaged(
    predict: Predictor,
    rgb_batch: np.ndarray,
    h: int,
    w: int,
    upsample: Callable,
    depth_range: tuple[float, float] = (MIN_DEPTH, MAX_DEPTH),
) -> np.ndarray:
    """Clamped, upsampled prediction averaged with the mirrored prediction of the mirror."""
    x = rgb_batch.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255.0)
    pred = np.clip(_predict_half(predict, x, h, w), *depth_range)
    pred_flip = np.clip(_predict_half(predict, x[..., ::-1], h, w), *depth_range)
    return 0.5 * upsample(pred) + 0.5 * upsample(pred_flip)[..., ::-1]


def eigen_evaluate(
    predict: Predictor,
    rgb: np.ndarray,
    depth: np.ndarray | Sequence[np.ndarray],
    crop: Crop | None = EIGEN_CROP,
    batch_size: int | None = None,
    protocol: str = "eigen",
    ranges: Sequence[Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Metrics of ``predict`` on a test set under ``protocol`` (see the module docstring).

    ``predict``: float32 NCHW RGB in [0,1] -> metres at half resolution, (N,1,h,w) or (N,h,w).
    ``rgb``: N x h x w x 3 uint8 at the predictor's input size (a memmap is read batch by
    batch). ``depth``: metres at the ground truth's own resolution, N x H x W or one H x W map
    per image; the prediction, upsampled 2x to h x w, is resized (bilinear) to each map's size
    when it differs, so every input size is scored at ground-truth resolution.
    ``crop``: inclusive (top, bottom, left, right) in ground-truth pixels, or None (the KITTI
    protocols use their own crop, ``kitti_crop``, and ignore it).
    ``batch_size``: None for the protocol's default (eigen 8, densedepth 4).
    ``ranges``: (low, high) metres of ground-truth depth (e.g. ``protocol_ranges(protocol)``);
    where given, ``by_range`` holds delta1 and rel per range (``RangeSums``), binned by the
    ground truth and pooled as the protocol pools (pixels under eigen and densedepth, images
    under KITTI).
    Returns the six metrics plus ``n_images`` (images scored) and ``protocol``.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    n, h, w = _check_inputs(rgb, depth)
    bs = DEFAULT_BATCH_SIZE[protocol] if batch_size is None else int(batch_size)
    if bs < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    kitti = protocol.startswith("kitti")
    if protocol == "eigen" or kitti:
        n_scored = n
        upsample = upsample2x
    else:
        n_scored = (n // bs) * bs  # the original's `for i in range(N // bs)`
        upsample = upsample2x_skimage
        if n_scored == 0:
            raise DataError(
                f"the densedepth protocol scores only full batches: {n} images < batch size "
                f"{bs}; pass more images or a smaller batch_size"
            )

    sums = np.zeros(7, dtype=np.float64)
    per_image: list[np.ndarray] = []  # KITTI: each image's metrics, averaged at the end
    by_range = None if ranges is None else RangeSums(ranges, per_image=kitti)
    depth_range = protocol_depth_range(protocol)
    with progress("evaluating", n_scored) as advance:
        for start in range(0, n_scored, bs):
            stop = min(start + bs, n_scored)
            rgb_batch = np.asarray(rgb[start:stop])
            preds = _flip_averaged(predict, rgb_batch, h, w, upsample, depth_range)
            for k, pred in enumerate(preds):
                gt = np.asarray(depth[start + k], dtype=np.float64)
                if pred.shape != gt.shape:
                    pred = resize_bilinear(pred, gt.shape)
                first, second, truth = _image_pairs(pred, gt, protocol, crop, start + k)
                image = _sums(first, second)
                if by_range is not None:
                    by_range.add(first, second, truth)
                if not kitti:
                    sums += image
                elif image[0]:
                    scores = _finish(image)
                    per_image.append(np.array([scores[k] for k in METRIC_KEYS]))
            advance(stop - start)
    extra = {} if by_range is None else {"by_range": by_range.result()}

    if kitti:
        if not per_image:
            raise DataError(
                "no image has a ground-truth pixel between 0.001 and 80 m inside the KITTI "
                "crop; check the depth maps (metres, 0 = no measurement)"
            )
        means = np.mean(per_image, axis=0)
        return {**dict(zip(METRIC_KEYS, map(float, means), strict=True)),
                "n_images": len(per_image), "protocol": protocol, **extra}  # fmt: skip
    if sums[0] == 0:
        raise DataError(
            "no valid ground-truth pixels in the crop of any image (none finite and > 0); "
            "check the depth maps and the crop"
        )
    return {**_finish(sums), "n_images": n_scored, "protocol": protocol, **extra}


def _image_pairs(
    pred: np.ndarray, gt: np.ndarray, protocol: str, crop: Crop | None, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What one image (at ground-truth resolution) is scored on under ``protocol``: the 1-D
    pair ``_sums`` takes and the ground truth of those pixels (what ``RangeSums`` bins)."""
    if protocol.startswith("kitti"):
        top, bottom, left, right = kitti_crop(protocol, *gt.shape)
        g, p = _kitti_pairs(pred[top:bottom, left:right], gt[top:bottom, left:right])
        return g, p, g
    if crop is not None:
        top, bottom, left, right = _check_crop(crop, *gt.shape)
        pred = pred[top : bottom + 1, left : right + 1]
        gt = gt[top : bottom + 1, left : right + 1]
    return _score_pairs(pred, gt, protocol, index)


def _kitti_pairs(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scored pixels of one cropped KITTI image, (gt, pred): pixels with
    0.001 < gt < 80 m, the prediction clamped to that range."""
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > KITTI_MIN_DEPTH) & (gt < KITTI_MAX_DEPTH)
    return gt[valid], np.clip(pred[valid], KITTI_MIN_DEPTH, KITTI_MAX_DEPTH)


def _score_pairs(
    pred: np.ndarray, gt: np.ndarray, protocol: str, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One cropped NYU image under ``protocol``: the pair ``_sums`` takes and the ground
    truth of its pixels (eigen: clamped to 0.1..10 m as scored; densedepth: as is)."""
    if protocol == "eigen":
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(gt) & (gt > 0)
        gt = np.clip(gt, MIN_DEPTH, MAX_DEPTH)
        pred = np.clip(pred, MIN_DEPTH, MAX_DEPTH)
        g, p = _valid_pairs(gt, pred, valid)
        return g, p, g
    bad = np.count_nonzero(~(np.isfinite(gt) & (gt > 0)))
    if bad:
        raise DataError(
            f"{bad} ground-truth pixels in the crop of image {index} are 0, negative or not "
            "finite; the densedepth protocol has no validity mask and needs filled ground "
            "truth (use protocol='eigen' for raw depth)"
        )
    if not np.isfinite(pred).all():
        raise DataError(
            f"the predictor returned NaN or infinite depth for image {index}; check the model "
            "and its inputs"
        )
    # compute_errors(gt=predictions, pred=ground truth): rel divides by the prediction.
    return pred.ravel(), gt.ravel(), gt.ravel()


__all__ = [
    "EIGEN_CROP",
    "KITTI_RANGES",
    "METRIC_KEYS",
    "NYU_RANGES",
    "PROTOCOLS",
    "RangeSums",
    "check_ranges",
    "compute_metrics",
    "eigen_crop",
    "eigen_evaluate",
    "kitti_crop",
    "metrics_by_range",
    "protocol_depth_range",
    "protocol_ranges",
    "resize_bilinear",
    "upsample2x",
    "upsample2x_skimage",
]

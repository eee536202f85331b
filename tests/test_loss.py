"""DepthLoss: every term against an independent numpy implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from densedepth.loss import DepthLoss, image_gradients, ssim
from densedepth.util.errors import DataError


def pair(shape: tuple[int, ...] = (2, 1, 16, 20), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A target in the reciprocal range [1, 100] and a noisy prediction of it."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(1.0, 100.0, shape)
    pred = np.clip(true + rng.normal(0.0, 15.0, shape), 1.0, 100.0)
    return pred, true


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


# --- independent references -------------------------------------------------------------------


def ref_gaussian_2d(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size) - (size - 1) / 2.0
    yy, xx = np.meshgrid(r, r, indexing="ij")
    g = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    return g / g.sum()


def ref_ssim_image(a: np.ndarray, b: np.ndarray, max_val: float, size: int) -> float:
    """SSIM of two 2-D images, window by window (explicit loops), VALID region, averaged."""
    w = ref_gaussian_2d(size, 1.5)
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    vals = []
    for i in range(a.shape[0] - size + 1):
        for j in range(a.shape[1] - size + 1):
            pa, pb = a[i : i + size, j : j + size], b[i : i + size, j : j + size]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va = (w * (pa - ma) ** 2).sum()
            vb = (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append(
                (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(vals))


def ref_ssim(a: np.ndarray, b: np.ndarray, max_val: float = 100.0) -> float:
    size = min(11, a.shape[-2], a.shape[-1])
    per_image = [
        np.mean([ref_ssim_image(a[n, c], b[n, c], max_val, size) for c in range(a.shape[1])])
        for n in range(a.shape[0])
    ]
    return float(np.mean(per_image))


def ref_ssim_correlate(a: np.ndarray, b: np.ndarray, max_val: float = 100.0) -> float:
    """The same with scipy's 2-D correlation (one image pair)."""
    w = ref_gaussian_2d(11, 1.5)

    def f(x: np.ndarray) -> np.ndarray:
        return correlate2d(x, w, mode="valid")

    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    ma, mb = f(a), f(b)
    va, vb, cov = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
    s = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return float(s.mean())


def ref_gradients(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dy = np.zeros_like(x)
    dx = np.zeros_like(x)
    h, w = x.shape[-2:]
    for i in range(h - 1):
        dy[..., i, :] = x[..., i + 1, :] - x[..., i, :]
    for j in range(w - 1):
        dx[..., :, j] = x[..., :, j + 1] - x[..., :, j]
    return dy, dx


def ref_terms(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    dyp, dxp = ref_gradients(pred)
    dyt, dxt = ref_gradients(true)
    return {
        "l1": float(np.abs(pred - true).mean()),
        "grad": float((np.abs(dyp - dyt) + np.abs(dxp - dxt)).mean()),
        "ssim": float(np.clip((1 - ref_ssim(true, pred)) / 2, 0, 1)),
    }


# --- tests ------------------------------------------------------------------------------------


def test_image_gradients_match_forward_differences() -> None:
    x, _ = pair((2, 1, 5, 7))
    dy, dx = image_gradients(t(x))
    rdy, rdx = ref_gradients(x)
    assert dy.shape == dx.shape == x.shape
    np.testing.assert_allclose(dy.numpy(), rdy, atol=1e-12)
    np.testing.assert_allclose(dx.numpy(), rdx, atol=1e-12)
    assert not dy[:, :, -1].any() and not dx[..., -1].any()


def test_ssim_matches_window_loops_and_scipy() -> None:
    pred, true = pair()
    ours = float(ssim(t(true), t(pred)))
    assert ours == pytest.approx(ref_ssim(true, pred), abs=1e-10)
    by_scipy = np.mean([ref_ssim_correlate(true[n, 0], pred[n, 0]) for n in range(2)])
    assert ours == pytest.approx(by_scipy, abs=1e-10)
    # float32 agrees closely too
    ours32 = float(ssim(t(true).float(), t(pred).float()))
    assert ours32 == pytest.approx(ours, abs=1e-5)


def test_ssim_matches_skimage_on_the_valid_region() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    pred, true = pair()
    # skimage pads with 'reflect' and then averages the map cropped by (win - 1) / 2 = 5 on
    # every side: exactly the VALID region, so its mean SSIM is ours per image.
    sk = [
        metrics.structural_similarity(
            true[n, 0],
            pred[n, 0],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=100,
        )
        for n in range(2)
    ]
    assert float(ssim(t(true), t(pred))) == pytest.approx(float(np.mean(sk)), abs=1e-10)


def test_ssim_small_images_use_a_smaller_window_and_channels_average() -> None:
    pred, true = pair((2, 2, 6, 9), seed=1)  # 6 px high: a 6x6 window
    assert float(ssim(t(true), t(pred))) == pytest.approx(ref_ssim(true, pred), abs=1e-10)


def test_identical_inputs_give_ssim_one_and_loss_zero() -> None:
    _, true = pair()
    x = t(true).float()
    assert float(ssim(x, x.clone())) == pytest.approx(1.0, abs=1e-6)
    loss_fn = DepthLoss()
    assert float(loss_fn(x, x.clone())) == pytest.approx(0.0, abs=1e-6)


def test_each_term_and_the_total_match_numpy() -> None:
    pred, true = pair()
    loss_fn = DepthLoss()
    total = float(loss_fn(t(pred), t(true)))
    terms = loss_fn.last_terms
    ref = ref_terms(pred, true)
    assert set(terms) == {"l1", "grad", "ssim"}
    for k in ref:
        assert terms[k] == pytest.approx(ref[k], rel=1e-9), k
    assert total == pytest.approx(0.1 * ref["l1"] + ref["grad"] + ref["ssim"], rel=1e-9)
    assert total == pytest.approx(0.1 * terms["l1"] + terms["grad"] + terms["ssim"], rel=1e-12)
    other = float(DepthLoss(l1_weight=1.0)(t(pred), t(true)))
    assert other == pytest.approx(ref["l1"] + ref["grad"] + ref["ssim"], rel=1e-9)


def test_backward_gives_finite_gradients() -> None:
    pred, true = pair()
    p = t(pred).float().requires_grad_(True)
    loss = DepthLoss()(p, t(true).float())
    loss.backward()
    assert p.grad is not None
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_autocast_computes_in_float32() -> None:
    pred, true = pair()
    p, y = t(pred).float(), t(true).float()
    expected = float(DepthLoss()(p, y))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = DepthLoss()(p, y)
        half = DepthLoss()(p.bfloat16(), y.bfloat16())
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert torch.isfinite(half) and half.dtype == torch.float32


@pytest.mark.parametrize(
    ("a", "b"),
    [((2, 1, 16, 20), (2, 1, 16, 21)), ((1, 16, 20), (1, 16, 20)), ((2, 1, 8, 8), (1, 1, 8, 8))],
)
def test_shape_errors(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    with pytest.raises(DataError, match="same shape"):
        DepthLoss()(torch.ones(a), torch.ones(b))
    with pytest.raises(DataError, match="same shape"):
        ssim(torch.ones(a), torch.ones(b))


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    pred, true = pair()
    p, y = t(pred).float(), t(true).float()
    cpu = DepthLoss()(p, y)
    loss_fn = DepthLoss()
    with torch.autocast("cuda", dtype=torch.float16):
        gpu = loss_fn(p.cuda().requires_grad_(True), y.cuda())
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    assert float(gpu) == pytest.approx(float(cpu), rel=1e-4)
    gpu.backward()


def _hand_masked_loss(p: np.ndarray, t: np.ndarray, m: np.ndarray, smap: np.ndarray) -> float:
    """The masked loss written out pixel by pixel (one image, one channel), from its definition:
    L1 over valid pixels; forward differences where both pixels are valid, summed over pixels
    and divided by the valid count; SSIM averaged over the windows without a hole."""
    h, w = p.shape
    valid = m.sum()
    l1 = sum(abs(p[i, j] - t[i, j]) for i in range(h) for j in range(w) if m[i, j]) / valid
    grad = 0.0
    for i in range(h):
        for j in range(w):
            if i + 1 < h and m[i, j] and m[i + 1, j]:
                grad += abs((p[i + 1, j] - p[i, j]) - (t[i + 1, j] - t[i, j]))
            if j + 1 < w and m[i, j] and m[i, j + 1]:
                grad += abs((p[i, j + 1] - p[i, j]) - (t[i, j + 1] - t[i, j]))
    grad /= valid
    clean = [smap[a, b] for a in range(smap.shape[0]) for b in range(smap.shape[1])
             if m[a : a + 11, b : b + 11].all()]  # fmt: skip
    ssim_term = min(max((1 - np.mean(clean)) / 2, 0.0), 1.0)
    return 0.1 * l1 + grad + ssim_term


def test_masked_loss_matches_a_hand_computation_on_a_map_with_holes() -> None:
    from densedepth.loss import _ssim_map

    rng = np.random.default_rng(5)
    t = torch.from_numpy(rng.uniform(1, 100, (1, 1, 24, 28)))
    p = torch.from_numpy(rng.uniform(1, 100, (1, 1, 24, 28)))
    m = torch.ones_like(t, dtype=torch.bool)
    m[0, 0, 3:6, 4:9] = False  # a hole near the top left
    m[0, 0, 20, 25] = False  # and one pixel
    t_holes = t.clone()
    t_holes[~m] = 0.0  # what the hole holds must not matter
    got = DepthLoss()(p, t_holes, m)
    smap = _ssim_map(t, p, 100.0, 11, 1.5)[0, 0].numpy()
    want = _hand_masked_loss(p[0, 0].numpy(), t[0, 0].numpy(), m[0, 0].numpy(), smap)
    assert float(got) == pytest.approx(want, rel=1e-10)
    # gradients never reach the prediction through a hole pixel's own L1 term
    q = p.clone().requires_grad_(True)
    DepthLoss(l1_weight=1.0)(q, t_holes, m).backward()
    assert torch.isfinite(q.grad).all()


def test_mask_changes_nothing_on_hole_free_data() -> None:
    rng = np.random.default_rng(6)
    t = torch.from_numpy(rng.uniform(1, 100, (2, 1, 32, 40)).astype(np.float32))
    p = torch.from_numpy(rng.uniform(1, 100, (2, 1, 32, 40)).astype(np.float32))
    loss = DepthLoss()
    plain = loss(p, t)
    assert torch.equal(loss(p, t, torch.ones_like(t, dtype=torch.bool)), plain)
    forced = loss._masked(p, t, torch.ones_like(t, dtype=torch.bool))  # the masked formula
    assert float(forced) == pytest.approx(float(plain), rel=1e-5)
    nothing = loss(p, t * float("nan"), torch.zeros_like(t, dtype=torch.bool))
    assert float(nothing) == 0.0  # a batch without valid depth teaches nothing (and no NaN)
    with pytest.raises(DataError, match="mask shape"):
        loss(p, t, torch.ones(2, 1, 32, 39, dtype=torch.bool))

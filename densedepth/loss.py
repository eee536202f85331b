"""The DenseDepth training loss (Alhashim & Wonka 2018, eq. 1-4), as in the official Keras code.

On the network's reciprocal target (``densedepth.depth``, values in [1, 100]), NCHW tensors::

    loss = l1_weight * L1 + L_grad + L_ssim        (l1_weight = 0.1, the paper's lambda)

- ``L1 = mean |pred - true|``;
- ``L_grad = mean(|dy_pred - dy_true| + |dx_pred - dx_true|)`` with ``tf.image.image_gradients``
  (forward differences, last row of dy / last column of dx zero);
- ``L_ssim = clamp((1 - SSIM(true, pred)) / 2, 0, 1)`` with ``tf.image.ssim``'s definition:
  11x11 Gaussian window (sigma 1.5), k1 0.01, k2 0.03, ``max_val = MAX_TARGET`` (100; 1000/10
  in the original), VALID convolution, the SSIM map averaged per image, the per-image terms
  averaged over the batch. Images under 11 px on a side use a ``min(11, H, W)`` window, as the
  official PyTorch port does (TensorFlow would refuse them).

SSIM is always computed in float32 (float64 if given float64), with autocast disabled.

Missing depth: ``mask`` (True where the ground truth is valid: depth > 0 and finite) makes the
holes contribute nothing: L1 is the mean over valid pixels; a forward difference counts only
when both of its pixels are valid (the sum over pixels divided by the number of valid pixels,
so on hole-free data the terms are exactly the unmasked ones); SSIM is averaged over the window
positions whose 11x11 window holds no hole, per image, then over the images that have one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densedepth.depth import MAX_TARGET
from densedepth.util.errors import DataError

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(a: Tensor, b: Tensor, what: str) -> None:
    if a.dim() != 4 or a.shape != b.shape:
        raise DataError(
            f"{what}: expected two NCHW tensors of the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}; pass the prediction and its target at the same resolution"
        )


def _work_dtype(*xs: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half inputs are promoted)."""
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def gaussian_window_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A 1-D Gaussian of ``size`` taps centred at ``(size - 1) / 2``, normalised to sum 1."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def _ssim_map(img1: Tensor, img2: Tensor, max_val: float, window_size: int, sigma: float) -> Tensor:
    """The SSIM map (N, C, H', W') of two batches: Gaussian window, VALID convolution."""
    _check_pair(img1, img2, "ssim")
    _, c, h, w = img1.shape
    if h < 1 or w < 1:
        raise DataError(f"ssim: images of size {h}x{w} are empty; pass images of at least 1x1")
    dtype = _work_dtype(img1, img2)
    size = min(window_size, h, w)
    with torch.autocast(device_type=img1.device.type, enabled=False):
        x = img1.to(dtype)
        y = img2.to(dtype)
        g = gaussian_window_1d(size, sigma, dtype, x.device)
        # The five local statistics in one separable depthwise convolution (VALID padding).
        stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (N, 5C, H, W)
        k = 5 * c
        stats = F.conv2d(stats, g.view(1, 1, size, 1).expand(k, 1, size, 1), groups=k)
        stats = F.conv2d(stats, g.view(1, 1, 1, size).expand(k, 1, 1, size), groups=k)
        mu1, mu2, e11, e22, e12 = stats.split(c, dim=1)
        c1 = (SSIM_K1 * max_val) ** 2
        c2 = (SSIM_K2 * max_val) ** 2
        mu12 = mu1 * mu2
        mu_sq = mu1 * mu1 + mu2 * mu2
        luminance = (2.0 * mu12 + c1) / (mu_sq + c1)
        contrast_structure = (2.0 * (e12 - mu12) + c2) / (e11 + e22 - mu_sq + c2)
        return luminance * contrast_structure


def _ssim_per_image(
    img1: Tensor, img2: Tensor, max_val: float, window_size: int, sigma: float
) -> Tensor:
    """SSIM of each image pair (N,), the VALID SSIM map averaged over C, H, W."""
    return _ssim_map(img1, img2, max_val, window_size, sigma).mean(dim=(1, 2, 3))


def ssim(
    img1: Tensor,
    img2: Tensor,
    max_val: float = MAX_TARGET,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> Tensor:
    """Mean SSIM of two NCHW batches as ``tf.image.ssim`` (Gaussian window, VALID), a scalar."""
    return _ssim_per_image(img1, img2, max_val, window_size, sigma).mean()


def image_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """``tf.image.image_gradients`` for NCHW: forward differences ``(dy, dx)``, same shape as
    ``x``, with the last row of ``dy`` and the last column of ``dx`` zero."""
    if x.dim() != 4:
        raise DataError(f"image_gradients: expected an NCHW tensor, got shape {tuple(x.shape)}")
    dy = F.pad(x[:, :, 1:, :] - x[:, :, :-1, :], (0, 0, 0, 1))
    dx = F.pad(x[:, :, :, 1:] - x[:, :, :, :-1], (0, 1, 0, 0))
    return dy, dx


class DepthLoss(nn.Module):
    """``l1_weight * L1 + L_grad + L_ssim`` on the reciprocal target (see the module docstring).

    After each call, ``last_terms`` holds the three unweighted terms (``l1``, ``grad``,
    ``ssim``) as floats for logging; they are read from the device only when asked for.
    """

    def __init__(self, l1_weight: float = 0.1, max_val: float = MAX_TARGET) -> None:
        super().__init__()
        if not (math.isfinite(l1_weight) and l1_weight >= 0):
            raise DataError(f"l1_weight must be a finite number >= 0, got {l1_weight}")
        self.l1_weight = float(l1_weight)
        self.max_val = float(max_val)
        self._last: dict[str, Tensor] = {}

    @property
    def last_terms(self) -> dict[str, float]:
        """The unweighted terms of the last call: ``{"l1", "grad", "ssim"}`` (empty before)."""
        return {k: float(v) for k, v in self._last.items()}

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """The scalar loss of ``pred`` against ``target`` (both NCHW, same shape); ``mask``
        (bool, same shape) marks the valid target pixels (None or all True: every pixel)."""
        _check_pair(pred, target, "DepthLoss")
        if mask is not None:
            if mask.shape != target.shape:
                raise DataError(
                    f"DepthLoss: mask shape {tuple(mask.shape)} differs from the target's "
                    f"{tuple(target.shape)}"
                )
            if not bool(mask.all()):
                return self._masked(pred, target, mask.bool())
        dtype = _work_dtype(pred, target)
        p = pred.to(dtype)
        t = target.to(dtype)
        l1 = (p - t).abs().mean()
        dy_p, dx_p = image_gradients(p)
        dy_t, dx_t = image_gradients(t)
        grad = ((dy_p - dy_t).abs() + (dx_p - dx_t).abs()).mean()
        ssim_term = (
            ((1.0 - _ssim_per_image(t, p, self.max_val, SSIM_WINDOW, SSIM_SIGMA)) * 0.5)
            .clamp(0.0, 1.0)
            .mean()
        )
        self._last = {"l1": l1.detach(), "grad": grad.detach(), "ssim": ssim_term.detach()}
        return self.l1_weight * l1 + grad + ssim_term

    def _masked(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        dtype = _work_dtype(pred, target)
        p = pred.to(dtype)
        t = torch.where(mask, target.to(dtype), p.detach())  # holes: no error, no gradient
        m = mask.to(dtype)
        valid = m.sum().clamp(min=1.0)
        l1 = ((p - t).abs() * m).sum() / valid
        dy_p, dx_p = image_gradients(p)
        dy_t, dx_t = image_gradients(t)
        my = F.pad(m[:, :, 1:, :] * m[:, :, :-1, :], (0, 0, 0, 1))  # both pixels valid
        mx = F.pad(m[:, :, :, 1:] * m[:, :, :, :-1], (0, 1, 0, 0))
        grad = (((dy_p - dy_t).abs() * my) + ((dx_p - dx_t).abs() * mx)).sum() / valid
        ssim_term = self._masked_ssim(t, p, m)
        self._last = {"l1": l1.detach(), "grad": grad.detach(), "ssim": ssim_term.detach()}
        return self.l1_weight * l1 + grad + ssim_term

    def _masked_ssim(self, t: Tensor, p: Tensor, m: Tensor) -> Tensor:
        """``(1 - SSIM) / 2`` over the hole-free windows of each image, then over images."""
        _, c, h, w = t.shape
        size = min(SSIM_WINDOW, h, w)
        with torch.autocast(device_type=t.device.type, enabled=False):
            smap = _ssim_map(t, p, self.max_val, SSIM_WINDOW, SSIM_SIGMA)
            ones = torch.ones(1, c, size, size, dtype=m.dtype, device=m.device)
            holes = F.conv2d(1.0 - m, ones / ones.sum())  # share of holes in each window
            clean = (holes <= 1e-6).to(smap.dtype).expand_as(smap)
            per_image_count = clean.sum(dim=(1, 2, 3))
            has = per_image_count > 0
            if not bool(has.any()):
                return (smap * 0.0).sum()
            per_image = (smap * clean).sum(dim=(1, 2, 3)) / per_image_count.clamp(min=1.0)
            terms = ((1.0 - per_image) * 0.5).clamp(0.0, 1.0)
            return terms[has].mean()

    def extra_repr(self) -> str:
        return f"l1_weight={self.l1_weight}, max_val={self.max_val}"


__all__ = ["DepthLoss", "image_gradients", "ssim"]

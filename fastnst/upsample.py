"""Edge-aware upsampling: bring a network output computed at a working resolution to the output size,
with the edges of the full-resolution input frame.

The fast guided filter (He & Sun 2015, "Fast Guided Filter"; He et al. 2013, "Guided Image
Filtering"): at the working resolution, fit per-pixel linear models ``out ≈ a · guide + b`` in small
windows (a handful of box filters), smooth the coefficients, upsample *them* bilinearly, and apply
them to the full-resolution guide. Edges present in the input frame come back crisp, the colours and
strokes stay the network's, and the full-resolution cost is one bilinear resize of six channels and a
multiply-add — it does not grow with the network's cost.

The guide is the input's luminance (one channel): a colour guide needs a 3×3 solve per pixel for
little visible gain in stylized output, whose colours are the network's anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .options import UPSAMPLERS

# BT.601 luma weights: the guide only needs a stable brightness signal, not colorimetric accuracy.
_LUMA = (0.299, 0.587, 0.114)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``(B,3,H,W)`` RGB → ``(B,1,H,W)`` luma, same dtype and range."""
    r, g, b = images.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a ``(2r+1)²`` window, the window shrunk at the borders (no zero padding bias)."""
    k = 2 * radius + 1
    return F.avg_pool2d(x, k, stride=1, padding=radius, count_include_pad=False)


def guided_coefficients(output: torch.Tensor, guide: torch.Tensor, *, radius: int, eps: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel linear model ``output ≈ a·guide + b`` at one resolution, coefficients box-smoothed.

    ``output`` ``(B,C,h,w)``, ``guide`` ``(B,1,h,w)``, both float in [0,1] → ``a``, ``b`` ``(B,C,h,w)``.
    ``eps`` is the regulariser: larger keeps less of the guide's texture (``eps → ∞``: plain blur).
    """
    mean_i = box(guide, radius)
    mean_p = box(output, radius)
    cov_ip = box(guide * output, radius) - mean_i * mean_p
    var_i = box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a, radius), box(b, radius)


def guided_upsample(low: torch.Tensor, guide_low: torch.Tensor, guide_high: torch.Tensor, *,
                    radius: int = 1, eps: float = 1e-2) -> torch.Tensor:
    """Upsample ``low`` to ``guide_high``'s size with the fast guided filter.

    ``low``: ``(B,C,h,w)`` network output in [0,1]; ``guide_low``: ``(B,3,h,w)`` the input at the
    same size; ``guide_high``: ``(B,3,H,W)`` the input at the output size. Returns ``(B,C,H,W)`` float32
    in [0,1]. Computed in float32 whatever the inputs' dtype (variances of [0,1] values underflow in
    half precision).
    """
    with torch.autocast(device_type=low.device.type, enabled=False):
        lum_low = luminance(guide_low.float())
        lum_high = luminance(guide_high.float())
        a, b = guided_coefficients(low.float(), lum_low, radius=radius, eps=eps)
        size = tuple(guide_high.shape[-2:])
        ab = F.interpolate(torch.cat([a, b], 1), size=size, mode="bilinear", align_corners=False)
        a, b = ab.split(low.shape[1], dim=1)
        return torch.addcmul(b, a, lum_high).clamp_(0, 1)


def _neighbours(n_high: int, n_low: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each output index along one axis: the two nearest input indices and the bilinear weight of
    the second (``align_corners=False`` geometry, clamped at the borders)."""
    u = ((torch.arange(n_high, device=device, dtype=torch.float32) + 0.5) * (n_low / n_high) - 0.5).clamp_(0, n_low - 1)
    i0 = u.floor().long()
    i1 = (i0 + 1).clamp_(max=n_low - 1)
    return i0, i1, u - i0


def joint_bilateral_upsample(low: torch.Tensor, guide_low: torch.Tensor, guide_high: torch.Tensor, *,
                             sigma: float = 0.08) -> torch.Tensor:
    """Joint bilateral upsampling (Kopf et al. 2007) over the 2×2 nearest low-resolution samples.

    Each output pixel is a convex mixture of the four network-output samples around it, weighted by
    bilinear distance × how well each sample's input luminance matches the output pixel's input
    luminance (Gaussian, ``sigma`` in [0,1] units). So edges of the input frame stay crisp — a pixel
    takes its colour from the samples on its own side of the edge — but no texture of the photo is
    added: every output value is one of the network's colours, mixed. Shapes as
    :func:`guided_upsample`; float32 in [0,1].
    """
    with torch.autocast(device_type=low.device.type, enabled=False):
        h, w = low.shape[-2:]
        size_h, size_w = guide_high.shape[-2:]
        src = torch.cat([low.float(), luminance(guide_low.float())], 1)
        lum = luminance(guide_high.float())
        y0, y1, fy = _neighbours(size_h, h, low.device)
        x0, x1, fx = _neighbours(size_w, w, low.device)
        fy, fx = fy.view(1, 1, -1, 1), fx.view(1, 1, 1, -1)
        num = torch.zeros_like(lum).expand(-1, low.shape[1], -1, -1).clone()
        den = torch.zeros_like(lum)
        for rows, wy in ((y0, 1 - fy), (y1, fy)):
            band = src.index_select(2, rows)
            for cols, wx in ((x0, 1 - fx), (x1, fx)):
                q = band.index_select(3, cols)
                spatial = wy * wx
                weight = spatial * (torch.exp(-(lum - q[:, -1:]).square_() / (2 * sigma * sigma)) + 1e-4)
                num.addcmul_(weight, q[:, :-1])
                den.add_(weight)
        return num.div_(den).clamp_(0, 1)


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(B,C,H,W)`` to ``size`` (h, w) in float32: area-like (antialiased bilinear) when
    shrinking, bilinear when growing. Float32 because the antialiased kernel has no bf16 version."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images.float()
    with torch.autocast(device_type=images.device.type, enabled=False):
        shrink = size[0] < images.shape[-2] or size[1] < images.shape[-1]
        return F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False, antialias=shrink)




def upsample(low: torch.Tensor, guide_low: torch.Tensor, guide_high: torch.Tensor, method: str = "bicubic"
             ) -> torch.Tensor:
    """``low`` ``(B,C,h,w)`` → ``guide_high``'s size by ``method`` (one of :data:`UPSAMPLERS`), float32 in [0,1]."""
    if tuple(low.shape[-2:]) == tuple(guide_high.shape[-2:]):
        return low.float()
    if method == "joint":
        return joint_bilateral_upsample(low, guide_low, guide_high)
    if method == "guided":
        return guided_upsample(low, guide_low, guide_high)
    if method == "bicubic":
        return F.interpolate(low.float(), size=tuple(guide_high.shape[-2:]), mode="bicubic",
                             align_corners=False).clamp_(0, 1)
    return resize(low, tuple(guide_high.shape[-2:])).clamp_(0, 1)


__all__ = ["UPSAMPLERS", "box", "guided_coefficients", "guided_upsample", "joint_bilateral_upsample", "luminance", "resize", "upsample"]

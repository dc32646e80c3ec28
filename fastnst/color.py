"""Output controls applied after the network: style strength and colour preservation.

Every function takes ``(B,3,H,W)`` RGB tensors in ``[0,1]`` of any float dtype, computes in fp32
(bf16 has 8 bits of mantissa: a YIQ round trip in it loses more than one 8-bit level) and returns
the stylized input's dtype and device.

Colour space for :func:`preserve_color`: **YIQ** (NTSC 1953, Y with the BT.601 luma weights). Gatys
et al., "Preserving Color in Neural Artistic Style Transfer" (2016) transfer luminance in YIQ, and
``fastnst gatys --preserve-color`` does the same, so the flag means one thing in every mode. YCbCr
(BT.601) has the same Y; its chroma axes are a rotation and scaling of I/Q, so either keeps the
content's chroma equally well -- the choice is consistency, not quality.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import FastNSTError

# Rows: Y, I, Q from R, G, B (NTSC; Y uses the BT.601 weights). The inverse is computed once in fp64.
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                           [0.595716, -0.274453, -0.321263],
                           [0.211456, -0.522591, 0.311135]], dtype=torch.float64)
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)


def _check_pair(stylized: torch.Tensor, content: torch.Tensor) -> None:
    if stylized.dim() != 4 or stylized.shape[1] != 3:
        raise ValueError(f"expected (B,3,H,W) images, got shape {tuple(stylized.shape)}")
    if stylized.shape != content.shape:
        raise ValueError(f"stylized {tuple(stylized.shape)} and content {tuple(content.shape)} differ in shape; "
                         "resize the content to the stylized output first")


def _per_image(value: float | Sequence[float] | torch.Tensor, batch: int, device: torch.device,
               what: str) -> torch.Tensor | float:
    """A float, or one value per image as a ``(B,1,1,1)`` fp32 tensor; checked to lie in [0,1]."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
        if not 0.0 <= v <= 1.0:  # also rejects NaN
            raise FastNSTError(f"{what} must be between 0 and 1, got {value}.")
        return v
    t = torch.as_tensor(value, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() != batch:
        raise ValueError(f"{what}: got {t.numel()} values for a batch of {batch}")
    if not bool(((t >= 0) & (t <= 1)).all()):
        raise FastNSTError(f"{what} must be between 0 and 1, got {t.tolist()}.")
    return t.view(-1, 1, 1, 1)


def apply_strength(stylized: torch.Tensor, content: torch.Tensor,
                   strength: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Mix the network's output with its input: ``content + strength * (stylized - content)``.

    ``stylized``, ``content``: ``(B,3,H,W)`` in ``[0,1]``, same shape (resize the content to the
    output's size first). ``strength``: a float in ``[0,1]`` or one per image (``(B,)``); 0 returns
    the content exactly, 1 the stylized output exactly (``torch.lerp`` hits both ends exactly).
    Returns ``stylized``'s dtype and device.
    """
    _check_pair(stylized, content)
    s = _per_image(strength, stylized.shape[0], stylized.device, "Strength")
    if isinstance(s, float) and s == 1.0:
        return stylized
    if isinstance(s, float) and s == 0.0:
        return content.to(stylized.device, stylized.dtype)
    out = torch.lerp(content.to(stylized.device, torch.float32), stylized.float(), s)
    return out.to(stylized.dtype)


def rgb_to_yiq(images: torch.Tensor) -> torch.Tensor:
    """``(B,3,H,W)`` RGB → YIQ in fp32: Y in ``[0,1]``, I in about ``[-0.60,0.60]``, Q ``[-0.52,0.52]``."""
    return torch.einsum("ij,bjhw->bihw", RGB_TO_YIQ.to(images.device, torch.float32), images.float())


def yiq_to_rgb(yiq: torch.Tensor) -> torch.Tensor:
    """``(B,3,H,W)`` YIQ → RGB in fp32, not clamped (out-of-gamut colours fall outside ``[0,1]``)."""
    return torch.einsum("ij,bjhw->bihw", YIQ_TO_RGB.to(yiq.device, torch.float32), yiq.float())


def preserve_color(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Style on luminance only: the stylized image's Y with the content's I and Q, back to RGB.

    ``stylized``, ``content``: ``(B,3,H,W)`` in ``[0,1]``, same shape. The result is clamped to
    ``[0,1]``, which moves the chroma of colours that are out of gamut with the new luminance (a
    saturated content colour under a much brighter or darker stroke); elsewhere I/Q equal the
    content's to fp32 precision. Returns ``stylized``'s dtype and device.
    """
    _check_pair(stylized, content)
    y = rgb_to_yiq(stylized)[:, :1]
    iq = rgb_to_yiq(content.to(stylized.device))[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp_(0, 1).to(stylized.dtype)

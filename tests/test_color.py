"""Strength and colour preservation on synthetic images (no network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastnst.color import apply_strength, preserve_color, rgb_to_yiq, yiq_to_rgb
from fastnst.errors import FastNSTError
from fastnst.images import to_tensor, to_uint8
from tests.conftest import smooth_image


def _pair(dtype: torch.dtype, b: int = 2, h: int = 24, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    content = torch.cat([to_tensor(smooth_image(h, w, seed=i)) for i in range(b)]).to(dtype)
    stylized = torch.rand(b, 3, h, w).to(dtype)
    return stylized, content


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_strength_ends_are_exact_and_middle_is_linear(dtype):
    stylized, content = _pair(dtype)
    zero = apply_strength(stylized, content, 0.0)
    assert zero.dtype == dtype
    assert np.abs(to_uint8(zero[:1]).astype(int) - to_uint8(content[:1]).astype(int)).max() <= 1
    assert torch.equal(zero, content)
    assert torch.equal(apply_strength(stylized, content, 1.0), stylized)
    half = apply_strength(stylized, content, 0.25).float()
    expected = 0.75 * content.float() + 0.25 * stylized.float()
    tol = 1e-6 if dtype == torch.float32 else 4e-3  # bf16 keeps 8 significant bits
    assert (half - expected).abs().max() <= tol


def test_strength_per_image_tensor():
    stylized, content = _pair(torch.float32, b=3)
    out = apply_strength(stylized, content, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(out[0], content[0])
    assert torch.allclose(out[1], (content[1] + stylized[1]) / 2, atol=1e-6)
    assert torch.allclose(out[2], stylized[2], atol=1e-7)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_strength_out_of_range_is_a_user_error(bad):
    stylized, content = _pair(torch.float32)
    with pytest.raises(FastNSTError, match="between 0 and 1"):
        apply_strength(stylized, content, bad)
    with pytest.raises(FastNSTError, match="between 0 and 1"):
        apply_strength(stylized, content, [0.5, bad])


def test_strength_rejects_mismatched_shapes():
    stylized, content = _pair(torch.float32)
    with pytest.raises(ValueError, match="differ in shape"):
        apply_strength(stylized, content[..., :-2], 0.5)


def test_yiq_round_trip():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-5)
    grey = torch.full((1, 3, 2, 2), 0.4)
    assert torch.allclose(rgb_to_yiq(grey)[:, 1:], torch.zeros(1, 2, 2, 2), atol=1e-6)  # grey has no chroma


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_preserve_color_keeps_content_chroma_and_stylized_luminance(dtype):
    stylized, content = _pair(dtype)
    # keep luminances mid-range so few pixels leave the gamut and get clamped
    stylized = (0.3 + 0.4 * stylized.float()).to(dtype)
    content = (0.3 + 0.4 * content.float()).to(dtype)
    out = preserve_color(stylized, content)
    assert out.dtype == dtype and out.shape == content.shape
    assert out.min() >= 0 and out.max() <= 1
    raw = yiq_to_rgb(torch.cat([rgb_to_yiq(stylized)[:, :1], rgb_to_yiq(content)[:, 1:]], 1))
    unclamped = ((raw >= 0) & (raw <= 1)).all(dim=1, keepdim=True)
    assert unclamped.float().mean() > 0.9
    o, c, s = rgb_to_yiq(out), rgb_to_yiq(content), rgb_to_yiq(stylized)
    tol = 1e-5 if dtype == torch.float32 else 4e-3  # bf16 output rounding: 2^-9 per channel
    m = unclamped.expand(-1, 2, -1, -1)
    assert (o[:, 1:] - c[:, 1:]).abs()[m].max() < tol
    assert (o[:, :1] - s[:, :1]).abs()[unclamped].max() < tol
    # and it really changed something: the stylized image's own chroma is far from the content's
    assert (s[:, 1:] - c[:, 1:]).abs().mean() > 0.05


def test_preserve_color_of_grey_content_is_grey():
    stylized = torch.rand(1, 3, 8, 8)
    content = torch.full((1, 3, 8, 8), 0.5)
    out = preserve_color(stylized, content)
    assert (out.max(dim=1).values - out.min(dim=1).values).max() < 1e-5

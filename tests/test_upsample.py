"""Edge-aware upsampling (fastnst.upsample): identities, edges kept, dtypes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastnst.upsample import box, guided_upsample, luminance, resize, upsample


def _step_image(h: int, w: int) -> torch.Tensor:
    """(1,3,H,W) in [0,1]: a sharp vertical edge at a non-grid position, on a faint gradient."""
    x = torch.linspace(0, 1, w).view(1, 1, 1, w).expand(1, 3, h, w).clone()
    img = 0.1 + 0.1 * x
    img[..., : int(w * 0.53)] += 0.7
    return img.clamp(0, 1)


def test_box_is_a_mean_with_shrunk_borders() -> None:
    x = torch.ones(1, 1, 5, 7)
    assert torch.allclose(box(x, 2), x)  # no zero-padding bias at the borders
    y = torch.arange(9.0).view(1, 1, 3, 3)
    assert box(y, 1)[0, 0, 1, 1] == y.mean()


def test_guided_upsample_keeps_the_guides_edge_where_bilinear_blurs_it() -> None:
    high = _step_image(64, 128)
    low_in = resize(high, (16, 32))
    styled_low = 1 - low_in  # a "style" that inverts: strongly correlated with the guide
    guided = guided_upsample(styled_low, low_in, high, radius=1, eps=1e-4)
    plain = F.interpolate(styled_low, size=(64, 128), mode="bilinear", align_corners=False)
    truth = 1 - high
    edge = slice(int(128 * 0.53) - 4, int(128 * 0.53) + 4)
    err_guided = (guided - truth)[..., edge].abs().mean()
    err_plain = (plain - truth)[..., edge].abs().mean()
    assert err_guided < 0.5 * err_plain
    assert guided.shape == (1, 3, 64, 128) and guided.min() >= 0 and guided.max() <= 1


def test_constant_output_stays_constant() -> None:
    high = _step_image(40, 60)
    low_in = resize(high, (20, 30))
    flat = torch.full((1, 3, 20, 30), 0.25)
    out = guided_upsample(flat, low_in, high)
    assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_any_input_dtype_gives_float32(dtype) -> None:
    high = _step_image(32, 48)
    low_in = resize(high, (16, 24)).to(dtype)
    out = upsample(low_in.clone(), low_in, high.to(dtype), "guided")
    assert out.dtype == torch.float32 and out.shape == (1, 3, 32, 48)


def test_same_size_is_a_passthrough_and_bilinear_method() -> None:
    img = _step_image(16, 16)
    assert torch.equal(upsample(img, img, img), img)
    out = upsample(resize(img, (8, 8)), resize(img, (8, 8)), img, "bilinear")
    assert out.shape == img.shape


def test_luminance_weights() -> None:
    white = torch.ones(1, 3, 2, 2)
    assert torch.allclose(luminance(white), torch.ones(1, 1, 2, 2))


def test_resize_works_under_cpu_bf16_autocast() -> None:
    """The antialiased kernel has no bf16 version on CPU; resize must not hit it."""
    x = torch.rand(1, 3, 40, 60)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = resize(x.bfloat16(), (20, 30))
    assert y.dtype == torch.float32 and y.shape == (1, 3, 20, 30)


def test_joint_bilateral_snaps_edges_without_adding_the_photos_texture() -> None:
    from fastnst.upsample import joint_bilateral_upsample

    high = _step_image(64, 128)
    low_in = resize(high, (16, 32))
    styled_low = 1 - low_in
    joint = joint_bilateral_upsample(styled_low, low_in, high, sigma=0.05)
    plain = F.interpolate(styled_low, size=(64, 128), mode="bilinear", align_corners=False)
    truth = 1 - high
    edge = slice(int(128 * 0.53) - 4, int(128 * 0.53) + 4)
    assert (joint - truth)[..., edge].abs().mean() < 0.5 * (plain - truth)[..., edge].abs().mean()
    # No texture of the guide: a flat network output stays flat whatever the guide looks like.
    noisy_guide = torch.rand(1, 3, 64, 128)
    flat = torch.full((1, 3, 16, 32), 0.3)
    assert torch.allclose(joint_bilateral_upsample(flat, resize(noisy_guide, (16, 32)), noisy_guide), flat.new_full(
        (1, 3, 64, 128), 0.3), atol=1e-5)

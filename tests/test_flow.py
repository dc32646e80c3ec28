"""Flow helpers: warp conventions, occlusion masks, synthetic flows, DIS flow direction."""

from __future__ import annotations

import numpy as np
import torch

from fastnst.flow import dis_flow, flow_to_tensor, forward_backward_mask, synthetic_flow, warp

from .conftest import smooth_image


def _constant_flow(b: int, h: int, w: int, dx: float, dy: float) -> torch.Tensor:
    flow = torch.zeros(b, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def test_zero_flow_is_identity():
    img = torch.rand(2, 3, 9, 14)
    out, valid = warp(img, torch.zeros(2, 2, 9, 14))
    assert torch.allclose(out, img, atol=1e-6)
    assert valid.shape == (2, 1, 9, 14) and bool((valid == 1).all())


def test_integer_shift_moves_pixels_exactly_and_marks_the_uncovered_border():
    img = torch.rand(1, 3, 10, 12)
    out, valid = warp(img, _constant_flow(1, 10, 12, 2.0, -1.0))  # out(x, y) = img(x + 2, y − 1)
    assert torch.allclose(out[:, :, 1:, :-2], img[:, :, :-1, 2:], atol=1e-6)
    assert bool((valid[:, :, 1:, :-2] == 1).all())
    assert bool((valid[:, :, 0, :] == 0).all()) and bool((valid[:, :, :, -2:] == 0).all())


def test_half_pixel_shift_interpolates_linearly():
    img = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 3, 8).contiguous()
    out, _ = warp(img, _constant_flow(1, 3, 8, 0.5, 0.0))
    assert torch.allclose(out[0, 0, :, :-1], img[0, 0, :, :-1] + 0.5, atol=1e-5)


def test_forward_backward_mask_trusts_consistent_flows_and_rejects_inconsistent_ones():
    h, w = 24, 32
    fw = _constant_flow(1, h, w, 3.0, 2.0)
    consistent = forward_backward_mask(fw, -fw)
    inside = consistent[:, :, : h - 2, : w - 3]
    assert bool((inside == 1).all())
    assert bool((consistent[:, :, :, w - 2:] == 0).all())  # p + flow leaves the frame: not trusted
    inconsistent = forward_backward_mask(fw, fw.clone())  # going and coming back the same way
    assert float(inconsistent.sum()) == 0.0


def test_forward_backward_mask_flags_an_occluding_object():
    """A square moves right over a still background: the background it uncovers is occluded."""
    h, w = 32, 32
    fw = torch.zeros(1, 2, h, w)
    bw = torch.zeros(1, 2, h, w)
    fw[:, 0, 10:20, 8:18] = 4.0  # in A the square covers x 8..17, in B x 12..21
    bw[:, 0, 10:20, 12:22] = -4.0
    mask = forward_backward_mask(fw, bw)
    assert float(mask[0, 0, 14, 9]) == 1.0  # on the square, well inside
    assert float(mask[0, 0, 14, 2]) == 1.0 and float(mask[0, 0, 2, 2]) == 1.0  # static background
    # background pixels of A at x 18..21 are hidden in B (the square moved onto them)
    assert float(mask[0, 0, 14, 19:21].max()) == 0.0


def test_synthetic_flow_is_bounded_smooth_and_seeded():
    b, h, w = 3, 64, 64
    kw = {"max_shift": 4.0, "max_zoom": 0.02, "max_rotate_deg": 1.5, "local_amplitude": 1.0, "local_grid": 4}
    flow = synthetic_flow(b, h, w, generator=torch.Generator().manual_seed(0), **kw)
    assert flow.shape == (b, 2, h, w) and torch.isfinite(flow).all()
    radius = ((h - 1) ** 2 + (w - 1) ** 2) ** 0.5 / 2
    bound = 4.0 + (0.02 + 1.5 * np.pi / 180) * 1.02 * radius + 6 * 1.0
    assert float(flow.abs().max()) < bound
    dx = (flow[..., :, 1:] - flow[..., :, :-1]).abs()
    dy = (flow[..., 1:, :] - flow[..., :-1, :]).abs()
    assert float(torch.maximum(dx.max(), dy.max())) < 0.5  # neighbours move together
    assert float(flow.std()) > 0.1  # and it does move
    again = synthetic_flow(b, h, w, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(flow, again)
    other = synthetic_flow(b, h, w, generator=torch.Generator().manual_seed(1), **kw)
    assert not torch.equal(flow, other)


def test_synthetic_flow_without_rotation_zoom_or_local_part_is_a_translation():
    flow = synthetic_flow(2, 16, 20, max_shift=5.0, max_zoom=0.0, max_rotate_deg=0.0, local_amplitude=0.0,
                          generator=torch.Generator().manual_seed(3))
    per_image = flow.flatten(2)
    assert torch.allclose(per_image, per_image[..., :1].expand_as(per_image), atol=1e-5)
    assert float(flow.abs().max()) <= 5.0


def test_dis_flow_direction_matches_the_module_convention():
    prev = smooth_image(64, 80, seed=4)
    nxt = np.roll(prev, shift=(1, 2), axis=(0, 1))  # content moves by dx=+2, dy=+1
    flow = dis_flow(prev, nxt)
    assert flow.shape == (64, 80, 2) and flow.dtype == np.float32
    core = flow[8:-8, 8:-8]
    assert abs(float(np.median(core[..., 0])) - 2.0) < 0.3
    assert abs(float(np.median(core[..., 1])) - 1.0) < 0.3
    t = flow_to_tensor(flow)
    assert t.shape == (1, 2, 64, 80)
    back, _ = warp(torch.from_numpy(nxt).permute(2, 0, 1)[None].float(), t)  # warp(next, flow) ≈ prev
    err = (back[0].permute(1, 2, 0).numpy() - prev)[8:-8, 8:-8]
    assert float(np.abs(err).mean()) < 0.1 * float(np.abs(prev.astype(np.float32) - nxt).mean())


def test_warp_under_bf16_autocast_equals_the_fp32_warp():
    """The training net's outputs are bf16 under autocast; a bf16 grid would be off by up to ~0.25 px
    at 256 px (and the temporal loss would then reward blur), so warp builds and samples in fp32."""
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 256, 256, generator=g).bfloat16()  # what a bf16 forward pass hands over
    flow = synthetic_flow(2, 256, 256, max_shift=3.3, local_amplitude=1.5, generator=g)
    ref, ref_valid = warp(img.float(), flow)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, valid = warp(img, flow)
        out_fp32_in, _ = warp(img.float(), flow)
    assert out.dtype == torch.float32 and valid.dtype == torch.float32
    assert torch.allclose(out, ref, atol=1e-6) and torch.equal(valid, ref_valid)
    assert torch.allclose(out_fp32_in, ref, atol=1e-6)
    # a grid rounded to bf16 (what the old warp built for bf16 images) is visibly off: the check can fail
    pos = torch.stack(torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="xy")) + flow
    grid = (pos / 255 * 2 - 1).permute(0, 2, 3, 1).bfloat16().float()
    old = torch.nn.functional.grid_sample(img.float(), grid, align_corners=True, padding_mode="border")
    assert float((old - ref).abs().mean()) > 0.01


def test_erode_mask_is_a_minimum_filter_that_keeps_the_border():
    from fastnst.flow import erode_mask

    m = torch.ones(1, 1, 20, 30)
    m[..., 10, 15] = 0
    e = erode_mask(m, 7)
    assert float(e[..., 7:14, 12:19].max()) == 0 and float(e.sum()) == 20 * 30 - 49
    assert float(e[..., 0, :].min()) == 1  # the frame's border is not a hole
    assert torch.equal(erode_mask(m, 1), m)

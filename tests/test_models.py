"""The transformation network: shapes for any size, parameter counts, no batch coupling, presets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fastnst.errors import FastNSTError
from fastnst.models import PRESETS, Arch, TransformerNet, build_model, count_parameters, phase_mean


def _expected_parameters(arch: Arch) -> int:
    """Count by hand: conv = k²·in·out + out, affine instance norm = 2·out."""

    def conv(i: int, o: int, k: int, norm: bool = True) -> int:
        return k * k * i * o + o + (2 * o if norm else 0)

    c1, c2, c3 = arch.widths
    encoder = conv(3, c1, 9) + conv(c1, c2, 3) + conv(c2, c3, 3)
    residual = arch.n_residual * 2 * conv(c3, c3, 3)
    decoder = conv(c3, c2, 3) + conv(c2, c1, 3) + conv(c1, 3, 9, norm=False)
    return encoder + residual + decoder


def _macs_per_pixel(net: nn.Module, h: int, w: int) -> float:
    """Multiply-adds of every convolution per output pixel, counted on a forward pass."""
    total = 0

    def hook(m, i, o):
        nonlocal total
        total += o.numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(torch.rand(1, 3, h, w))
    for handle in handles:
        handle.remove()
    return total / (h * w)


def _conv_input_sizes(net: nn.Module, h: int, w: int) -> list[tuple[int, int]]:
    sizes = []
    handles = [m.register_forward_hook(lambda m, i, o: sizes.append(tuple(i[0].shape[-2:])))
               for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(torch.rand(1, 3, h, w))
    for handle in handles:
        handle.remove()
    return sizes


@pytest.mark.parametrize("arch", [Arch((4, 8, 8), 1), Arch((4, 8, 8), 1, "unshuffle")], ids=["conv9", "unshuffle"])
@pytest.mark.parametrize("size", [(17, 23), (5, 7), (31, 16), (3, 5), (1, 1), (64, 9)])
def test_output_shape_matches_any_input_size(size, arch):
    net = TransformerNet(arch).eval()
    x = torch.rand(2, 3, *size)
    y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_parameter_counts_per_preset():
    q = count_parameters(build_model(preset="quality"))
    f = count_parameters(build_model(preset="fast"))
    assert q == _expected_parameters(PRESETS["quality"]) == 1_679_235  # the "≈ 1.68 M"
    assert f == _expected_parameters(PRESETS["fast"])
    assert f < q / 4  # "markedly cheaper"


def test_eval_output_clamped_training_output_not():
    net = TransformerNet(Arch((4, 8, 8), 1))
    with torch.no_grad():
        for p in net.decoder[-1].parameters():  # push the last layer far out of range
            p.fill_(1.0)
    x = torch.rand(1, 3, 12, 12)
    assert net.train()(x).max() > 1.0
    y = net.eval()(x)
    assert y.min() >= 0.0 and y.max() <= 1.0


def test_images_in_a_batch_do_not_influence_each_other():
    """Instance norm only: the trainer stacks frame1 and frame2 in one batch, which must not couple them."""
    net = TransformerNet(Arch((4, 8, 8), 1)).train()
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    together = net(torch.cat([a, b]))
    assert torch.allclose(together[:1], net(a), atol=1e-5)
    assert torch.allclose(together[1:], net(b), atol=1e-5)


def test_no_transposed_convolutions_and_norm_factory():
    net = build_model(preset="fast")
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    custom = TransformerNet(Arch((4, 8, 8), 1), norm=lambda c: nn.GroupNorm(1, c))
    assert sum(isinstance(m, nn.GroupNorm) for m in custom.modules()) > 0
    assert custom(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_gradient_reaches_every_parameter():
    net = TransformerNet(Arch((4, 8, 8), 2)).train()
    net(torch.rand(1, 3, 20, 20)).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_the_lite_preset_has_no_full_resolution_layer_and_a_sixth_of_the_work():
    h, w = 216, 288  # the webcam's working size (multiples of 8: the padding adds nothing)
    lite, fast = build_model(preset="lite"), build_model(preset="fast")
    # every conv sees half the resolution at most (+2 px of reflection padding for its 3×3 kernel)
    assert max(_conv_input_sizes(lite, h, w)) == (h // 2 + 2, w // 2 + 2)
    assert max(_conv_input_sizes(fast, h, w)) == (h + 8, w + 8)  # fast's 9×9 convs: full resolution, padded
    lite_macs = _macs_per_pixel(lite, h, w)
    assert lite_macs <= 16_000 and 4 * lite_macs < _macs_per_pixel(fast, h, w)  # 7.2 k against 33.1 k
    assert Arch.from_dict(PRESETS["lite"].to_dict()) == PRESETS["lite"]
    assert "stem" not in PRESETS["fast"].to_dict()  # older files and readers see the dict they know


def _period2_energy(y: torch.Tensor) -> float:
    """Mean absolute difference between each 2×2 block's four sub-pixels and their mean: the signature
    of a pixel-shuffle grid (0 for any image that is smooth at the scale of a pixel)."""
    blocks = torch.nn.functional.pixel_unshuffle(y[..., : y.shape[-2] // 2 * 2, : y.shape[-1] // 2 * 2], 2)
    blocks = blocks.view(y.shape[0], 3, 4, *blocks.shape[-2:])
    return float((blocks - blocks.mean(2, keepdim=True)).abs().mean())


@torch.no_grad()
def test_an_untrained_lite_net_has_no_grid_pattern():
    """ICNR: the four sub-pixels start equal, so a flat input gives a flat output and a ramp no 2×2 grid."""
    torch.manual_seed(0)
    net = build_model(preset="lite").eval()
    flat = net(torch.full((1, 3, 64, 96), 0.4))
    assert float(flat.std(dim=(-2, -1)).max()) < 1e-5
    ramp = torch.linspace(0, 1, 96).expand(1, 3, 64, 96).contiguous()
    assert _period2_energy(net(ramp)) < 1e-6


SHIPPED_LITE = sorted((Path(__file__).resolve().parent.parent / "weights").glob("*_lite.safetensors"))


@pytest.mark.parametrize("path", SHIPPED_LITE, ids=[p.stem for p in SHIPPED_LITE])
def test_shipped_twins_show_no_grid_pattern(path: Path):
    """Trained, a pixel-shuffle net could still learn four sub-pixel phases that disagree. On a flat frame
    the 2×2 pattern stays below half an 8-bit level; on a smooth ramp below one level (or twice the
    period-2 content of its teacher's own texture). (A flat frame does not give an exactly flat output for either
    net: every instance norm of a zero-variance map multiplies rounding noise by 1/√eps.)"""
    from fastnst.styles import load_style

    twin = load_style(path).net
    teacher = load_style(path.stem.removesuffix("_lite") + "_fast").net
    flat = torch.full((1, 3, 216, 288), 0.45)
    ramp = torch.linspace(0.1, 0.9, 288).expand(1, 3, 216, 288).contiguous()
    with torch.no_grad():
        inner = (..., slice(16, -16), slice(16, -16))  # borders: the reflection padding's own pattern
        assert _period2_energy(twin(flat)[inner]) < 0.5 / 255
        # measured: 0.64 and 0.77 levels on the ramp (the teachers' texture: 0.45 and 1.40)
        assert _period2_energy(twin(ramp)[inner]) < max(1.0 / 255, 2 * _period2_energy(teacher(ramp)[inner]))


def test_bad_presets_and_arch_descriptions():
    with pytest.raises(FastNSTError, match="Unknown preset"):
        build_model(preset="huge")
    with pytest.raises(FastNSTError):
        Arch.from_dict({"widths": [1, 2], "n_residual": 1})
    with pytest.raises(FastNSTError):
        Arch.from_dict({"n_residual": 1})
    with pytest.raises(FastNSTError):
        Arch.from_dict({"widths": [1, 2, 3], "n_residual": 1, "stem": "conv3"})
    arch = Arch((4, 8, 16), 2)
    assert Arch.from_dict(arch.to_dict()) == arch
    assert build_model(arch=arch).arch == arch


def test_video_networks_are_described_loaded_and_start_as_their_per_frame_network():
    from fastnst.models import expand_to_video, video_input

    arch = PRESETS["video"]
    assert arch.to_dict()["video"] is True and Arch.from_dict(arch.to_dict()) == arch
    assert "video" not in PRESETS["lite"].to_dict()  # older files say nothing: per-frame
    assert Arch.from_dict({"widths": [16, 32, 64], "n_residual": 3}).video is False
    with pytest.raises(FastNSTError):
        Arch.from_dict({**arch.to_dict(), "video": "yes"})
    plain = PRESETS["video_plain"]
    assert plain.to_dict()["gate"] is False and Arch.from_dict(plain.to_dict()) == plain
    assert "gate" not in arch.to_dict() and Arch.from_dict(arch.to_dict()).gate  # older video files: gated
    for bad in ({"gate": False, "video": False}, {"gate": False, "carry": 5}, {"gate": 0}):
        with pytest.raises(FastNSTError):
            Arch.from_dict({**arch.to_dict(), **bad})
    for base_arch, gate in ((PRESETS["lite"], True), (PRESETS["fast"], True), (PRESETS["lite"], False)):
        torch.manual_seed(3)
        base = TransformerNet(base_arch).eval()
        video = TransformerNet(Arch(base_arch.widths, base_arch.n_residual, base_arch.stem, video=True,
                                    gate=gate)).eval()
        assert video.first_conv.in_channels == base.first_conv.in_channels + (16 if base_arch.stem == "unshuffle" else 4)
        assert video.last_conv.out_channels == base.last_conv.out_channels * (4 if gate else 3) // 3
        video.load_state_dict(expand_to_video(base.state_dict(), video.arch))
        x = torch.rand(2, 3, 21, 30)
        with torch.no_grad():
            y = base(x)
            assert torch.equal(video(x), y)  # a plain frame: an empty prior
            # without a gate, zero prior weights ignore the prior exactly; a shut gate lets 3e-4 through
            prior = video(video_input(x, torch.rand_like(x), torch.ones(2, 1, 21, 30)))
            assert torch.allclose(prior, y, atol=5e-4) and (gate or torch.equal(prior, y))
        with pytest.raises(FastNSTError):
            expand_to_video(video.state_dict(), video.arch)  # already a video network


def test_a_detail_carrying_gate_keeps_the_priors_strokes_but_not_its_colour():
    """``Arch.carry``: with the gate open, a prior that differs from the painting by a flat colour
    changes nothing (the coarse picture is the current painting's: it cannot drift), a prior's fine
    stripes come through, and untrusted pixels are the painting's, even next to trusted ones."""
    from fastnst.models import video_input

    arch = PRESETS["video"]
    assert arch.carry > 0 and Arch.from_dict(arch.to_dict()).carry == arch.carry
    for bad in (4, -1):
        with pytest.raises(FastNSTError):
            Arch.from_dict({**arch.to_dict(), "carry": bad})
    with pytest.raises(FastNSTError):
        Arch.from_dict({**PRESETS["lite"].to_dict(), "carry": 5})  # a per-frame net carries nothing
    net = TransformerNet(arch).train()  # unclamped outputs (instance norm is the same in train mode)
    with torch.no_grad():
        net.last_conv.bias[12:].fill_(12.0)  # the gate wide open
        x = torch.rand(1, 3, 48, 64)
        paint = net(x)  # no prior: the painting itself
        mask = torch.ones(1, 1, 48, 64)
        mask[..., 40:] = 0  # the right-hand columns are not trusted
        assert (net(video_input(x, paint + 0.3, mask)) - paint).abs().max() < 1e-4  # a flat offset: nothing
        stripes = paint.clone()
        stripes[..., ::2] += 0.2
        striped = net(video_input(x, stripes, mask))
        kept = (striped - paint)[..., 8:-8, 8:30]
        assert float(kept[..., ::2].mean() - kept[..., 1::2].mean()) > 0.9 * 0.95 * 0.2  # the detail is kept
        assert torch.allclose(striped[..., 40:], paint[..., 40:], atol=1e-6)  # untrusted: the painting's


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_tent_blur_is_a_box_applied_twice_and_never_amplifies(dtype):
    """:func:`tent_blur` ``k`` is a ``k``-box twice away from the borders, keeps a constant, and its
    response is never above 1 at any frequency: ``x − tent(x)`` fed back cannot grow (the ghost test)."""
    import torch.nn.functional as F

    from fastnst.models import tent_blur, tent_kernel

    def tent(x, k):
        return tent_blur(x, tent_kernel(k, x.shape[1]))

    k, x = 5, torch.rand(2, 3, 40, 50, dtype=dtype)
    box = x
    for _ in range(2):
        box = F.avg_pool2d(box, k, 1, k // 2, count_include_pad=False)
    m = 2 * (k - 1)  # pixels a tent 2k−1 wide reaches from the border
    assert torch.allclose(tent(x, k)[..., m:-m, m:-m], box[..., m:-m, m:-m], atol=1e-6)
    flat = torch.full((1, 1, 30, 30), 0.7, dtype=dtype)
    assert torch.allclose(tent(flat, k)[..., m:-m, m:-m], flat[..., m:-m, m:-m])
    impulse = torch.zeros(1, 1, 64, 64, dtype=dtype)
    impulse[..., 32, 32] = 1
    # the kernel centred on the origin: symmetric, so its frequency response is real
    response = torch.fft.fft2(tent(impulse, k)[0, 0].roll((-32, -32), (0, 1)))
    assert float(response.imag.abs().max()) < 1e-6
    assert float(response.real.max()) <= 1 + 1e-6 and float(response.real.min()) > -1e-6


def test_video_input_multiplies_the_prior_by_its_mask():
    from fastnst.models import video_input

    x, p, m = torch.rand(1, 3, 4, 5), torch.rand(1, 3, 4, 5), torch.zeros(1, 1, 4, 5)
    m[..., :2] = 1
    v = video_input(x, p, m)
    assert v.shape == (1, 7, 4, 5) and torch.equal(v[:, :3], x) and torch.equal(v[:, 6:], m)
    assert torch.equal(v[:, 3:6, :, :2], p[..., :2]) and float(v[:, 3:6, :, 2:].abs().sum()) == 0
    assert torch.equal(video_input(x)[:, 3:], torch.zeros(1, 4, 4, 5))


@pytest.mark.parametrize("preset", ["lite", "fast"])
def test_the_mean_over_grid_phases_paints_a_shifted_scene_shifted(preset):
    """A strided net paints a scene moved by 1 px a little differently; its mean over the phases of its
    grid far less so (interior pixels: the borders see other padding). One phase is the net itself."""
    torch.manual_seed(0)
    net = build_model(preset=preset).eval()
    scene = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 72, 100), 3, 1, 1)
    a, b = scene[..., 0:96], scene[..., 1:97]  # b is a moved 1 px to the left

    def shift_error(phases: int) -> float:
        with torch.no_grad():
            ya, yb = phase_mean(net, a, phases), phase_mean(net, b, phases)
        assert ya.shape == a.shape
        return float((ya[..., 16:-16, 17:-16] - yb[..., 16:-16, 16:-17]).abs().mean())

    with torch.no_grad():
        assert torch.equal(phase_mean(net, a, 1), net(a))
        assert phase_mean(net, torch.rand(1, 3, 17, 23), 2).shape == (1, 3, 17, 23)  # odd sides
    m = net.arch.multiple
    assert shift_error(m) < shift_error(1) / 5

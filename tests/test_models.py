"""The transformation network: shapes for any size, parameter counts, no batch coupling, presets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fastnst.errors import FastNSTError
from fastnst.models import PRESETS, Arch, TransformerNet, build_model, count_parameters


def _expected_parameters(arch: Arch) -> int:
    """Count by hand: conv = k²·in·out + out, affine instance norm = 2·out."""

    def conv(i: int, o: int, k: int, norm: bool = True) -> int:
        return k * k * i * o + o + (2 * o if norm else 0)

    c1, c2, c3 = arch.widths
    encoder = conv(3, c1, 9) + conv(c1, c2, 3) + conv(c2, c3, 3)
    residual = arch.n_residual * 2 * conv(c3, c3, 3)
    decoder = conv(c3, c2, 3) + conv(c2, c1, 3) + conv(c1, 3, 9, norm=False)
    return encoder + residual + decoder


@pytest.mark.parametrize("size", [(17, 23), (5, 7), (31, 16), (3, 5), (1, 1), (64, 9)])
def test_output_shape_matches_any_input_size(size):
    net = TransformerNet(Arch((4, 8, 8), 1)).eval()
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


def test_bad_presets_and_arch_descriptions():
    with pytest.raises(FastNSTError, match="Unknown preset"):
        build_model(preset="huge")
    with pytest.raises(FastNSTError):
        Arch.from_dict({"widths": [1, 2], "n_residual": 1})
    with pytest.raises(FastNSTError):
        Arch.from_dict({"n_residual": 1})
    arch = Arch((4, 8, 16), 2)
    assert Arch.from_dict(arch.to_dict()) == arch
    assert build_model(arch=arch).arch == arch

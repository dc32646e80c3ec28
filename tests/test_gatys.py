from __future__ import annotations

import numpy as np
import pytest
import torch

from fastnst import gatys
from fastnst.images import write_image
from fastnst.vgg import VGG19Features

from .conftest import smooth_image

LAYERS = ["relu1_1", "relu2_1", "relu3_1"]


def _cfg(**kw) -> gatys.GatysConfig:
    base = {"size": 32, "steps": 8, "content_layers": {"relu2_1": 1.0},
            "style_layers": dict.fromkeys(LAYERS, 1.0), "style_weight": 10.0, "tv_weight": 0.1}
    base.update(kw)
    return gatys.GatysConfig(**base)


@pytest.fixture
def net():
    return VGG19Features(LAYERS)


@pytest.fixture
def images():
    content = torch.from_numpy(smooth_image(32, 32, 0)).permute(2, 0, 1)[None].float() / 255
    style = torch.from_numpy(smooth_image(32, 32, 7)[:, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    return content, style


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_loss_decreases(net, images, optimizer):
    content, style = images
    _, hist = gatys.stylize_gatys(content, [style], _cfg(optimizer=optimizer, steps=10), net, progress=False)
    assert hist[-1]["total"] < 0.7 * hist[0]["total"]
    assert hist[-1]["style"] < hist[0]["style"]


def test_seed_makes_noise_init_repeatable(net, images):
    content, style = images
    a, _ = gatys.stylize_gatys(content, [style], _cfg(init="noise", steps=3, seed=5), net, progress=False)
    b, _ = gatys.stylize_gatys(content, [style], _cfg(init="noise", steps=3, seed=5), net, progress=False)
    c, _ = gatys.stylize_gatys(content, [style], _cfg(init="noise", steps=3, seed=6), net, progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_preserve_color_keeps_content_chrominance(net, images):
    content, style = images
    out, _ = gatys.stylize_gatys(content, [style], _cfg(preserve_color=True, steps=4), net, progress=False)
    iq_out = gatys.rgb_to_yiq(out)[:, 1:]
    iq_in = gatys.rgb_to_yiq(content)[:, 1:]
    # chrominance is copied from the content (up to the final clamp into [0,1])
    assert (iq_out - iq_in).abs().mean() < 0.02


def test_yiq_round_trip():
    x = torch.rand(1, 3, 5, 5)
    assert torch.allclose(gatys.yiq_to_rgb(gatys.rgb_to_yiq(x)), x, atol=1e-5)


def test_blend_weights_must_match_styles(net, images):
    from fastnst.errors import FastNSTError

    content, style = images
    with pytest.raises(FastNSTError, match="style-weights"):
        gatys.stylize_gatys(content, [style, style], _cfg(style_blend=[1.0]), net, progress=False)


def test_run_files_writes_output_intermediates_and_sheet(tmp_path, net):
    write_image(tmp_path / "c.png", smooth_image(30, 40, 1))
    write_image(tmp_path / "s1.png", smooth_image(24, 24, 2))
    write_image(tmp_path / "s2.jpg", smooth_image(24, 24, 3))
    cfg = _cfg(steps=4, save_every=2, style_blend=[0.7, 0.3])
    res = gatys.run_gatys_files(tmp_path / "c.png", [tmp_path / "s1.png", tmp_path / "s2.jpg"], tmp_path / "o.png",
                                cfg, device="cpu", extractor=net, progress=False)
    assert res.output.is_file() and res.image.shape == (24, 32, 3) and res.image.dtype == np.uint8
    assert [p.name for p in res.intermediates] == ["o_step00002.png", "o_step00004.png"]
    assert res.sheet is not None and res.sheet.is_file()
    assert res.total == pytest.approx(res.content + res.style + res.tv, rel=1e-5)
    assert not list(tmp_path.glob("*.part"))


def test_a_blend_of_one_style_with_itself_is_that_style(net, images):
    """The Gram blend is a weighted mean: [s, s] at any weights optimises like [s]."""
    content, style = images
    one, _ = gatys.stylize_gatys(content, [style], _cfg(steps=3), net, progress=False)
    two, _ = gatys.stylize_gatys(content, [style, style], _cfg(steps=3, style_blend=[0.2, 0.6]), net,
                                 progress=False)
    other, _ = gatys.stylize_gatys(content, [style, content], _cfg(steps=3, style_blend=[0.2, 0.6]), net,
                                   progress=False)
    assert torch.allclose(one, two, atol=1e-4) and not torch.allclose(one, other, atol=1e-2)

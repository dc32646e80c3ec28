from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastnst import losses
from fastnst.errors import FastNSTError
from fastnst.perceptual import (
    PerceptualLoss,
    blend_grams,
    features_at,
    load_extractor,
    normalise_weights,
)
from fastnst.vgg import VGG19_LAYERS, VGG19Features

from .conftest import smooth_image

CONTENT = {"relu2_1": 1.0}
STYLE = {"relu1_1": 1.0, "relu2_1": 3.0}


def _img(seed: int, h: int = 24, w: int = 32) -> torch.Tensor:
    return torch.from_numpy(smooth_image(h, w, seed)).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    return VGG19Features(["relu1_1", "relu2_1"])


class Scaled(nn.Module):
    """Another extractor of the same features at another scale, as Caffe's 0-255 weights give."""

    def __init__(self, inner: nn.Module, scale: float) -> None:
        super().__init__()
        self.inner, self.scale = inner, scale

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v * self.scale for k, v in self.inner(x).items()}


def _ready(extractor: nn.Module, **kw) -> PerceptualLoss:
    loss = PerceptualLoss(extractor, CONTENT, STYLE, content_weight=2.0, style_weight=5.0, tv_weight=0.5, **kw)
    loss.set_style([_img(7), _img(8, 20, 20)], [0.25, 0.75])
    loss.set_content_reference(_img(1))
    return loss


def test_layer_weights_are_normalised_in_order():
    assert normalise_weights({"b": 1.0, "a": 3.0}, "style") == {"b": 0.25, "a": 0.75}
    for bad in ({}, {"a": 0.0}, {"a": 2.0, "b": -1.0}):
        with pytest.raises(FastNSTError, match="style layer weights"):
            normalise_weights(bad, "style")
    loss = PerceptualLoss(VGG19Features(["relu1_1", "relu2_1"]), CONTENT, STYLE)
    assert loss.style_layers == {"relu1_1": 0.25, "relu2_1": 0.75} and loss.taps == ("relu2_1", "relu1_1")


def test_gram_blend_is_the_weighted_mean_of_the_style_grams(vgg):
    a, b = _img(3), _img(4, 16, 40)  # sizes may differ
    ga, gb = blend_grams(vgg, [a], STYLE), blend_grams(vgg, [b], STYLE)
    with torch.no_grad():
        assert torch.equal(ga["relu1_1"], losses.gram_matrix(vgg(a)["relu1_1"]))
    mixed = blend_grams(vgg, [a, b], STYLE, [1.0, 3.0])
    mean = blend_grams(vgg, [a, b], STYLE)
    for k in STYLE:
        assert mixed[k].shape == (1, vgg(a)[k].shape[1], vgg(a)[k].shape[1])
        assert torch.allclose(mixed[k], 0.25 * ga[k] + 0.75 * gb[k], rtol=1e-5)
        assert torch.allclose(mean[k], 0.5 * (ga[k] + gb[k]), rtol=1e-5)
        assert not mixed[k].requires_grad
    with pytest.raises(FastNSTError, match="style-weights"):
        blend_grams(vgg, [a, b], STYLE, [1.0])
    with pytest.raises(FastNSTError, match="style-weights"):
        blend_grams(vgg, [a, b], STYLE, [1.0, -1.0])
    with pytest.raises(FastNSTError, match="at least one style"):
        blend_grams(vgg, [], STYLE)
    with pytest.raises(FastNSTError, match=r"\(B,3,H,W\)"):
        blend_grams(vgg, [a[0]], STYLE)


def test_terms_match_the_formula_written_out(vgg):
    loss = _ready(vgg)
    y = _img(5).requires_grad_(True)
    x = _img(6)
    terms = loss(y, loss.content_targets(x))
    with torch.no_grad():
        fy, fx, fr = vgg(y), vgg(x), vgg(_img(1))
        g = {k: 0.25 * losses.gram_matrix(vgg(_img(7))[k]) + 0.75 * losses.gram_matrix(vgg(_img(8, 20, 20))[k])
             for k in STYLE}
        content = 2.0 * F.mse_loss(fy["relu2_1"], fx["relu2_1"]) / fr["relu2_1"].pow(2).mean()
        style = 5.0 * sum(w / 4 * F.mse_loss(losses.gram_matrix(fy[k]), g[k]) / g[k].pow(2).mean()
                          for k, w in STYLE.items())
        dh, dw = y[:, :, 1:] - y[:, :, :-1], y[..., 1:] - y[..., :-1]
        tv = 0.5 * (dh.pow(2).mean() + dw.pow(2).mean())
    assert torch.allclose(terms.content, content, rtol=1e-4)
    assert torch.allclose(terms.style, style, rtol=1e-4)
    assert torch.allclose(terms.tv, tv, rtol=1e-5)
    assert torch.equal(terms.total, terms.content + terms.style + terms.tv)
    terms.total.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_content_term_is_zero_on_its_own_targets(vgg):
    loss = _ready(vgg)
    x = _img(2)
    targets = loss.content_targets(x)
    assert all(not t.requires_grad for t in targets.values()) and list(targets) == ["relu2_1"]
    assert loss(x, targets).content.item() == 0.0
    assert loss(_img(9), targets).content.item() > 0


def test_balancing_makes_backbones_of_other_scales_give_the_same_terms(vgg):
    """Caffe-convention weights give ~57x larger activations: balanced terms do not notice."""
    a, b = _ready(vgg), _ready(Scaled(vgg, 57.0))
    y, x = _img(5), _img(6)
    ta, tb = a(y, a.content_targets(x)), b(y, b.content_targets(x))
    for u, v in zip(ta, tb):
        assert torch.allclose(u, v, rtol=1e-3)
    assert b.style_grams["relu1_1"].mean() > 1000 * a.style_grams["relu1_1"].mean()


def test_features_at_runs_vgg_only_as_deep_as_asked():
    net = VGG19Features(["relu1_1", "relu3_1"])
    called = []
    net.layers[VGG19_LAYERS.index("relu2_1") + 1].register_forward_hook(
        lambda *a: called.append(1))
    x = torch.rand(1, 3, 16, 16)
    out = features_at(net, x, ["relu2_1", "relu1_1"])
    assert list(out) == ["relu1_1", "relu2_1"] and not called  # a tap inside the built depth works too
    assert torch.equal(out["relu1_1"], net(x)["relu1_1"]) and called
    with pytest.raises(FastNSTError, match="relu4_1"):
        net.features_at(x, ["relu4_1"])


def test_features_at_filters_any_module_returning_a_dict(vgg):
    plain = Scaled(vgg, 1.0)  # no features_at: runs whole and keeps what was asked
    x = torch.rand(1, 3, 16, 16)
    assert list(features_at(plain, x, ["relu2_1"])) == ["relu2_1"]
    with pytest.raises(FastNSTError, match="relu3_1"):
        features_at(plain, x, ["relu3_1"])


def test_input_checks_up_front(vgg):
    with pytest.raises(FastNSTError, match="relu3_1"):
        PerceptualLoss(vgg, {"relu3_1": 1.0}, STYLE)  # the extractor does not return it
    with pytest.raises(FastNSTError, match="finite and non-negative"):
        PerceptualLoss(vgg, CONTENT, STYLE, style_weight=-1.0)
    with pytest.raises(FastNSTError, match="finite and non-negative"):
        PerceptualLoss(vgg, CONTENT, STYLE, tv_weight=float("nan"))
    loss = PerceptualLoss(vgg, CONTENT, STYLE)
    with pytest.raises(FastNSTError, match="Set the style"):
        loss(_img(1), {})
    with pytest.raises(FastNSTError, match=r"\(B,3,H,W\)"):
        loss.content_targets(torch.rand(1, 1, 8, 8))


def test_load_extractor_uses_the_backbone_registry():
    net = load_extractor(["relu2_1", "relu1_1", "relu2_1"], weights="random")
    assert isinstance(net, VGG19Features) and net.taps == ("relu2_1", "relu1_1")
    assert torch.equal(net.layers[0].weight, VGG19Features(["relu1_1"], seed=0).layers[0].weight)
    with pytest.raises(FastNSTError, match="Unknown VGG19 layer"):
        load_extractor(["relu9_9"], weights="random")


def test_to_moves_and_freezes_the_extractor(vgg):
    loss = _ready(VGG19Features(["relu1_1", "relu2_1"]))
    loss.extractor.train()
    loss.to("cpu", memory_format=torch.channels_last)
    assert not loss.extractor.training and not any(p.requires_grad for p in loss.extractor.parameters())
    assert loss.extractor.layers[0].weight.is_contiguous(memory_format=torch.channels_last)

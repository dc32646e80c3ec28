from __future__ import annotations

import pytest
import torch

from fastnst.backbones import BACKBONES, RANDOM, get_backbone
from fastnst.errors import FastNSTError


@pytest.mark.parametrize("name", ["vgg19", "resnet50"])
def test_default_layers_build_and_return_maps(name):
    spec = get_backbone(name)
    layers = list(spec.content_layers) + list(spec.style_layers)
    net = spec.build(layers, weights=RANDOM)
    out = net(torch.rand(1, 3, 64, 64))
    assert set(out) == set(layers)
    assert all(v.dim() == 4 and v.shape[0] == 1 for v in out.values())
    assert not any(p.requires_grad for p in net.parameters())


def test_efficientnet_is_registered_with_valid_layers():
    spec = BACKBONES["efficientnet_b7"]
    assert set(spec.content_layers + spec.style_layers) <= set(spec.layers)


def test_unknown_backbone_and_layer():
    with pytest.raises(FastNSTError, match="Unknown backbone"):
        get_backbone("alexnet")
    with pytest.raises(FastNSTError, match="no layer"):
        get_backbone("resnet50").build(["relu4_2"], weights=RANDOM)
    with pytest.raises(FastNSTError, match="Unknown VGG19 layer"):
        get_backbone("vgg19").build(["layer1"], weights=RANDOM)


def test_torchvision_features_at_returns_a_subset():
    net = get_backbone("resnet50").build(["relu", "layer1"], weights=RANDOM)
    x = torch.rand(1, 3, 32, 32)
    out = net.features_at(x, ["layer1"])
    assert list(out) == ["layer1"] and torch.equal(out["layer1"], net(x)["layer1"])
    with pytest.raises(FastNSTError, match="layer2"):
        net.features_at(x, ["layer2"])


def test_missing_weights_offline_is_a_user_error(tmp_path):
    with pytest.raises(FastNSTError):
        get_backbone("resnet50").build(["layer1"], weights=tmp_path / "missing.pth")

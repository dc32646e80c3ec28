"""Registry of feature extractors for the Gatys reference mode.

Every backbone is an ``nn.Module`` taking RGB ``(B,3,H,W)`` float in ``[0,1]`` (its input
normalisation lives inside) and returning ``{layer: (B,C,H',W')}`` for the requested layers,
frozen and in eval mode; ``features_at(x, taps)`` returns a subset of them (VGG19 then stops after
the deepest one). VGG19 is the default; torchvision's ResNet-50 and EfficientNet-B7 are
offered for comparison (the seed's Table 4.1), reached through torchvision's feature extraction.

Weights, in order: an explicit file (``.pth`` weights-only or ``.safetensors``; for VGG19 also the
Keras ``.h5``), torchvision's local cache under ``TORCH_HOME``, torchvision's download. The
string ``"random"`` asks for a seeded random initialisation (tests and speed benchmarks only).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import FastNSTError
from .fileio import load_safetensors, load_torch_weights
from .vgg import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, VGG19_LAYERS, VGG19Features, load_vgg19

RANDOM = "random"


class TorchvisionFeatures(nn.Module):
    """ImageNet normalisation + ``create_feature_extractor`` over a torchvision classifier."""

    def __init__(self, model: nn.Module, layers: Sequence[str]) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.taps = tuple(dict.fromkeys(layers))
        try:
            self.body = create_feature_extractor(model, return_nodes={n: n for n in self.taps})
        except ValueError as exc:
            raise FastNSTError(f"Unknown layer(s) {list(self.taps)} for this backbone ({exc}).") from exc
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD_RGB).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> TorchvisionFeatures:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(self.body((x - self.mean.to(x.dtype)) / self.std.to(x.dtype)))

    def features_at(self, x: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{tap: features}`` for ``taps`` (a subset of :attr:`taps`); the traced graph always runs whole."""
        unknown = [t for t in taps if t not in self.taps]
        if unknown:
            raise FastNSTError(f"This feature extractor has no layer(s) {unknown}; it returns {list(self.taps)}.")
        return {k: v for k, v in self(x).items() if k in taps}


def _torchvision_state_dict(weights_enum, weights: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    """Explicit file → TORCH_HOME cache → torchvision download; FastNSTError when none works."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FastNSTError(f"Backbone weights file {path} does not exist.")
        if path.suffix == ".safetensors":
            return load_safetensors(path)
        return load_torch_weights(path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_enum.url).name
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    try:
        return weights_enum.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # offline: URLError, socket timeouts, HTTP errors
        raise FastNSTError(
            f"No local weights for {weights_enum}, and torchvision's download failed; pass a weights file "
            f"(put {cached.name} under {cached.parent}) or use the vgg19 backbone."
        ) from exc


def _vgg19(layers: Sequence[str], weights: str | os.PathLike | None, pool: str) -> nn.Module:
    if weights == RANDOM:
        return VGG19Features(layers, pool=pool)
    return load_vgg19(layers, weights=weights, pool=pool)


def _resnet50(layers: Sequence[str], weights: str | os.PathLike | None, pool: str) -> nn.Module:
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50(weights=None)
    if weights != RANDOM:
        model.load_state_dict(_torchvision_state_dict(ResNet50_Weights.IMAGENET1K_V1, weights))
    return TorchvisionFeatures(model, layers)


def _efficientnet_b7(layers: Sequence[str], weights: str | os.PathLike | None, pool: str) -> nn.Module:
    from torchvision.models import EfficientNet_B7_Weights, efficientnet_b7

    model = efficientnet_b7(weights=None)
    if weights != RANDOM:
        model.load_state_dict(_torchvision_state_dict(EfficientNet_B7_Weights.IMAGENET1K_V1, weights))
    return TorchvisionFeatures(model, layers)


@dataclass(frozen=True)
class BackboneSpec:
    """A feature extractor with default layers for the reference mode."""

    name: str
    description: str
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    layers: tuple[str, ...]
    builder: Callable[[Sequence[str], str | os.PathLike | None, str], nn.Module]
    title: str = ""  # how messages name it ("VGG19"); the registry name when empty

    def build(
        self,
        layers: Sequence[str],
        *,
        weights: str | os.PathLike | None = None,
        pool: str = "max",
        device: torch.device | str = "cpu",
    ) -> nn.Module:
        """The extractor returning ``layers``, on ``device``, frozen."""
        unknown = [layer for layer in layers if layer not in self.layers]
        if unknown:
            raise FastNSTError(f"Unknown {self.title or self.name} layer(s) {unknown}: {self.name} has no layer of "
                               f"that name; choose from {', '.join(self.layers)}.")
        return self.builder(layers, weights, pool).to(device)


BACKBONES: dict[str, BackboneSpec] = {
    "vgg19": BackboneSpec(
        "vgg19", "VGG19 (Simonyan & Zisserman), the classic; Caffe or torchvision ImageNet weights",
        ("relu4_2",), ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), VGG19_LAYERS, _vgg19, "VGG19",
    ),
    "resnet50": BackboneSpec(
        "resnet50", "torchvision ResNet-50 (IMAGENET1K_V1)",
        ("layer2",), ("relu", "layer1", "layer2", "layer3"),
        ("relu", "maxpool", "layer1", "layer2", "layer3", "layer4"), _resnet50, "ResNet-50",
    ),
    "efficientnet_b7": BackboneSpec(
        "efficientnet_b7", "torchvision EfficientNet-B7 (IMAGENET1K_V1), the seed's comparison",
        ("features.3",), ("features.1", "features.2", "features.3", "features.4", "features.6"),
        tuple(f"features.{i}" for i in range(9)), _efficientnet_b7, "EfficientNet-B7",
    ),
}


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise FastNSTError(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.") from None

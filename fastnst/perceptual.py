"""One perceptual loss for training, the Gatys mode and the metrics.

:class:`PerceptualLoss` holds what stays fixed while images are optimised (pixels in the Gatys mode,
a network in training): the feature extractor, the content and style layer weights (normalised to
sum 1), the style targets (a blend of Gram matrices of one or more style images) and the balancing
factors that make the terms scale-free::

    L(y; t) = α Σ_l c_l ‖F_l(y) − t_l‖² / ‖F_l(R)‖²  +  β Σ_l s_l ‖G(F_l(y)) − Ĝ_l‖² / ‖Ĝ_l‖²  +  γ TV(y)
    Ĝ_l = Σ_i w_i G(F_l(S_i)) / Σ_i w_i

with ``‖·‖²`` means over elements, ``R`` the content reference images (the content image itself in the
Gatys mode, held-out photos in training) and ``t`` the content targets. The terms are computed by the
small functions of :mod:`fastnst.losses`; the extractor comes from :mod:`fastnst.backbones`.

Every image is ``(B,3,H,W)`` RGB float in ``[0,1]`` (the extractor normalises for its weights).
An extractor is a module returning ``{layer: (B,C,H',W')}``; one with a ``features_at(x, taps)``
method (:class:`fastnst.vgg.VGG19Features`, :class:`fastnst.backbones.TorchvisionFeatures`) is run
only as deep as the layers asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from . import losses
from .backbones import get_backbone
from .errors import FastNSTError

Features = dict[str, torch.Tensor]


def normalise_weights(weights: Mapping[str, float], what: str) -> dict[str, float]:
    """Layer weights ``{layer: w}`` divided by their sum (so they sum to 1), order kept.

    Raises :class:`FastNSTError` unless they are non-empty, non-negative and sum to a positive number.
    """
    total = sum(weights.values())
    if not weights or total <= 0 or any(v < 0 for v in weights.values()):
        raise FastNSTError(f"The {what} layer weights must be non-negative and sum to a positive number.")
    return {k: v / total for k, v in weights.items()}


def load_extractor(taps: Sequence[str], *, backbone: str = "vgg19", weights: str | os.PathLike | None = None,
                   pool: str = "max", device: torch.device | str = "cpu") -> nn.Module:
    """A frozen feature extractor returning ``taps`` from the :mod:`fastnst.backbones` registry.

    ``weights``: a file, ``None`` (local cache, then torchvision's download) or ``"random"`` (a seeded
    random network, for tests and speed checks).
    """
    return get_backbone(backbone).build(list(dict.fromkeys(taps)), weights=weights, pool=pool, device=device)


def _check_images(images: torch.Tensor, what: str) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise FastNSTError(f"The {what} must be (B,3,H,W) RGB images, got shape {tuple(images.shape)}.")


def features_at(extractor: nn.Module, images: torch.Tensor, taps: Iterable[str]) -> Features:
    """``{tap: (B,C,H',W')}`` of ``images`` ``(B,3,H,W)`` in ``[0,1]`` for ``taps`` only, running the
    extractor only as deep as needed where it can (``extractor.features_at``)."""
    taps = tuple(taps)
    upto = getattr(extractor, "features_at", None)
    if callable(upto):
        return upto(images, taps)
    feats = extractor(images)
    missing = [t for t in taps if t not in feats]
    if missing:
        raise FastNSTError(f"The feature extractor returns no layer(s) {missing}.")
    return {k: v for k, v in feats.items() if k in taps}


@torch.no_grad()
def blend_grams(extractor: nn.Module, styles: Sequence[torch.Tensor], layers: Iterable[str],
                blend: Sequence[float] | None = None) -> Features:
    """Gram targets ``{layer: (1,C,C)}`` (float32): ``Σ_i w_i G(F_l(S_i)) / Σ_i w_i``.

    ``styles``: one or more ``(1,3,H,W)`` images in ``[0,1]`` (sizes may differ); ``blend``: their
    weights ``w_i`` (non-negative, not all zero), ``None`` for the plain mean.
    """
    if not styles:
        raise FastNSTError("Give at least one style image.")
    if blend is not None:
        if len(blend) != len(styles):
            raise FastNSTError(f"--style-weights has {len(blend)} values for {len(styles)} style images.")
        if any(b < 0 for b in blend) or sum(blend) <= 0:
            raise FastNSTError("--style-weights must be non-negative and not all zero.")
    layers = tuple(layers)
    grams: Features = {}
    for i, style in enumerate(styles):
        _check_images(style, "style images")
        for k, v in features_at(extractor, style, layers).items():
            g = losses.gram_matrix(v)
            g = g / len(styles) if blend is None else g * (blend[i] / sum(blend))
            grams[k] = grams[k] + g if k in grams else g
    return grams


class LossTerms(NamedTuple):
    """Weighted terms (``α·content``, ``β·style``, ``γ·TV``), 0-dim tensors; ``total`` is their sum."""

    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.content + self.style + self.tv


class PerceptualLoss:
    """Content + Gram style + total-variation loss over one feature extractor (see the module docstring).

    Args:
        extractor: frozen module, ``(B,3,H,W)`` in ``[0,1]`` → ``{layer: (B,C,H',W')}`` with at least
            every content and style layer (build one with :func:`load_extractor`).
        content_layers, style_layers: ``{layer: weight}``, normalised here to sum 1.
        content_weight, style_weight, tv_weight: α, β, γ (finite, ≥ 0).

    Set the targets once with :meth:`set_style` and :meth:`set_content_reference`; then
    ``loss(images, targets)`` with ``targets = loss.content_targets(inputs)`` gives the weighted terms.
    """

    def __init__(self, extractor: nn.Module, content_layers: Mapping[str, float], style_layers: Mapping[str, float],
                 *, content_weight: float = 1.0, style_weight: float = 1.0, tv_weight: float = 0.0) -> None:
        self.content_layers = normalise_weights(content_layers, "content")
        self.style_layers = normalise_weights(style_layers, "style")
        alpha_beta_gamma = (content_weight, style_weight, tv_weight)
        if any(not (w >= 0 and w < float("inf")) for w in alpha_beta_gamma):
            raise FastNSTError("Loss weights must be finite and non-negative.")
        self.content_weight, self.style_weight, self.tv_weight = (float(w) for w in alpha_beta_gamma)
        offered = getattr(extractor, "taps", None)
        missing = [t for t in self.taps if offered is not None and t not in offered]
        if missing:
            raise FastNSTError(f"The feature extractor does not return the layer(s) {missing}.")
        self.extractor = extractor
        self.style_grams: Features = {}
        self.style_weights: dict[str, float] = {}  # s_l / ‖Ĝ_l‖², set by set_style
        self.content_weights: dict[str, float] = {}  # c_l / ‖F_l(R)‖², set by set_content_reference

    @property
    def taps(self) -> tuple[str, ...]:
        """Every layer the loss reads: content layers, then style layers, without repeats."""
        return tuple(dict.fromkeys([*self.content_layers, *self.style_layers]))

    def set_style(self, styles: Sequence[torch.Tensor], blend: Sequence[float] | None = None) -> Features:
        """Fix the style targets to the Gram blend of ``styles`` (see :func:`blend_grams`) and balance
        the style layer weights by them. Returns the Grams ``{layer: (1,C,C)}``."""
        self.style_grams = blend_grams(self.extractor, styles, self.style_layers, blend)
        self.style_weights = losses.balanced_weights(self.style_grams, self.style_layers)
        return self.style_grams

    def set_content_reference(self, images: torch.Tensor) -> Features:
        """Balance the content layer weights by the features of ``images`` ``(B,3,H,W)`` in ``[0,1]``;
        returns those features (the content targets when the reference is the content image)."""
        feats = self.content_targets(images)
        self.content_weights = losses.balanced_weights(feats, self.content_layers)
        return feats

    def content_targets(self, images: torch.Tensor) -> Features:
        """Content-layer features of ``images`` ``(B,3,H,W)`` in ``[0,1]``, without gradient."""
        _check_images(images, "content images")
        with torch.no_grad():
            return {k: v.detach() for k, v in features_at(self.extractor, images, self.content_layers).items()}

    def __call__(self, images: torch.Tensor, content_targets: Mapping[str, torch.Tensor]) -> LossTerms:
        """Weighted terms for ``images`` ``(B,3,H,W)`` in ``[0,1]`` against ``content_targets`` (from
        :meth:`content_targets` of the matching inputs, batch ``B`` or 1). One full extractor pass."""
        if not self.style_weights or not self.content_weights:
            raise FastNSTError("Set the style and the content reference before computing the loss.")
        feats = self.extractor(images)
        content = self.content_weight * losses.content_loss(feats, content_targets, self.content_weights)
        style = self.style_weight * losses.style_loss(feats, self.style_grams, self.style_weights)
        tv = self.tv_weight * losses.total_variation(images)
        return LossTerms(content, style, tv)

    def to(self, device: torch.device | str | None = None, *,
           memory_format: torch.memory_format = torch.contiguous_format) -> PerceptualLoss:
        """Move the extractor (frozen, eval mode) and the style targets to ``device``; returns self."""
        self.extractor = self.extractor.to(device=device, memory_format=memory_format).eval()
        self.extractor.requires_grad_(False)
        self.style_grams = {k: v.to(device) for k, v in self.style_grams.items()}
        return self

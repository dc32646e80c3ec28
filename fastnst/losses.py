"""Perceptual losses as small functions: content, Gram style, total variation, temporal.

Feature maps come from a loss network such as :class:`fastnst.vgg.VGG19Features` as
``{tap: (B,C,H,W)}``; images are ``(B,3,H,W)`` float in ``[0,1]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix ``G = F Fᵀ / (C·H·W)`` of ``(B,C,H,W)`` features → ``(B,C,C)``.

    Computed in (at least) float32 even under autocast: fp16 sums over H·W overflow (max 65504).
    """
    b, c, h, w = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        f = features.reshape(b, c, h * w)
        if f.dtype in (torch.float16, torch.bfloat16):
            f = f.float()
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(
    features: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
) -> torch.Tensor:
    """Σ_l w_l · mean((F_l − T_l)²) over the layers named in ``weights``."""
    return sum(w * F.mse_loss(features[k].float(), targets[k].float()) for k, w in weights.items())  # type: ignore[return-value]


def style_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
) -> torch.Tensor:
    """Σ_l w_l · mean((G(F_l) − G_l)²); target Grams ``(1|B,C,C)`` broadcast over the batch."""
    total = None
    for k, w in weights.items():
        g = gram_matrix(features[k])
        t = target_grams[k].to(g.dtype).expand_as(g)
        term = w * F.mse_loss(g, t)
        total = term if total is None else total + term
    assert total is not None, "style_loss needs at least one layer"
    return total


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels of ``(B,C,H,W)`` images (isotropic-free,
    squared-L2 form, as in Johnson et al.); 0 for a constant image."""
    dh = images[:, :, 1:, :] - images[:, :, :-1, :]
    dw = images[:, :, :, 1:] - images[:, :, :, :-1]
    return dh.float().pow(2).mean() + dw.float().pow(2).mean()


def temporal_loss(current: torch.Tensor, warped_previous: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean squared difference between two stylized frames.

    ``L_t = Σ_p M(p) · ‖O₂(p) − W(O₁)(p)‖² / (C · Σ_p M(p))`` with ``current = O₂`` and
    ``warped_previous = W(O₁)`` both ``(B,C,H,W)``, ``mask`` ``(B,1,H,W)`` in ``[0,1]``
    (1 where the flow is trusted). Returns 0 when the mask is empty.
    """
    diff = (current.float() - warped_previous.float()).pow(2) * mask.float()
    denom = mask.float().sum() * current.shape[1]
    return diff.sum() / denom.clamp_min(1.0)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between a student's and a teacher's output, both ``(B,C,H,W)``
    (L1: it keeps edges and colours sharper than a mean square, which forgives many small errors)."""
    return (student.float() - teacher.float()).abs().mean()


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical forward differences of ``(B,C,H,W)``: ``(B,C,H,W−1)``, ``(B,C,H−1,W)``."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def texture_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the two outputs' image gradients: the brush texture. A pixel loss
    alone lets a small network settle on a blurred mean of the teacher's strokes; matching the
    gradients asks for the strokes themselves, at no VGG cost."""
    (sx, sy), (tx, ty) = image_gradients(student.float()), image_gradients(teacher.float())
    return 0.5 * ((sx - tx).abs().mean() + (sy - ty).abs().mean())


def steadiness_loss(student_change: torch.Tensor, teacher_change: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean absolute difference between how a student's and a teacher's output change from
    one frame to the next along the motion (``O₂ − W(O₁)``, each ``(B,C,H,W)``; ``mask``
    ``(B,1,H,W)`` in [0,1]): the student inherits the teacher's response to motion and noise, its
    steadiness. Returns 0 when the mask is empty."""
    diff = (student_change.float() - teacher_change.float()).abs() * mask.float()
    return diff.sum() / (mask.float().sum() * student_change.shape[1]).clamp_min(1.0)


def balanced_weights(targets: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> dict[str, float]:
    """Divide each layer weight by the mean square of its target (features or Gram matrix).

    Raw feature magnitudes differ by orders of magnitude between layers, backbones and weight
    conventions (Caffe's 0-255 inputs give ~57× larger activations than torchvision's, so ~10⁷×
    larger Gram MSEs). Dividing by ``mean(T²)`` makes every term relative, so one set of
    user-facing weights works for any backbone: ``w_l · mean((X−T)²)/mean(T²)``.
    """
    return {k: float(w) / max(float(targets[k].float().pow(2).mean()), 1e-12) for k, w in weights.items()}


def style_distance(grams: Mapping[str, torch.Tensor], target_grams: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Relative Gram distance ``mean_l ‖G_l − T_l‖_F / ‖T_l‖_F`` (0 = same style statistics)."""
    terms = [torch.linalg.matrix_norm((grams[k] - target_grams[k].expand_as(grams[k])).float()).mean()
             / torch.linalg.matrix_norm(target_grams[k].float()).mean().clamp_min(1e-12) for k in target_grams]
    return torch.stack(terms).mean()

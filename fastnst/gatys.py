"""Gatys et al. (2016) optimisation: the pixels are the parameters. Slow, the quality reference.

Minimise over the image ``x`` (RGB ``[0,1]``)::

    L(x) = α Σ_l c_l ‖F_l(x) − F_l(c)‖² / ‖F_l(c)‖²  +  β Σ_l s_l ‖G_l(x) − Ĝ_l‖² / ‖Ĝ_l‖²  +  γ TV(x)

with ``F_l`` the backbone's features, ``G_l`` their Gram matrices (:func:`fastnst.losses.gram_matrix`),
``Ĝ_l = Σ_i w_i G_l(s_i) / Σ_i w_i`` the blend of the style images' Grams, layer weights ``c_l`` and
``s_l`` normalised to sum 1, and the ``1/‖·‖²`` factors (:func:`fastnst.losses.balanced_weights`)
making α, β, γ independent of the backbone and its input convention. That loss is
:class:`fastnst.perceptual.PerceptualLoss`, the one training uses.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backbones import get_backbone
from .devices import pick_device
from .errors import FastNSTError
from .images import contact_sheet, read_image, resize_to, to_tensor, to_uint8, write_image
from .options import GatysConfig
from .perceptual import PerceptualLoss, load_extractor


@dataclass
class GatysResult:
    """Outcome of :func:`run_gatys_files`; losses are the weighted terms at the last step."""

    image: np.ndarray
    output: Path | None
    size: tuple[int, int]
    steps: int
    seconds: float
    device: str
    content: float
    style: float
    tv: float
    total: float
    history: list[dict[str, float]] = field(default_factory=list)
    intermediates: list[Path] = field(default_factory=list)
    sheet: Path | None = None


# --- colour: luminance-only transfer (Gatys et al. 2017, "Controlling perceptual factors") ---------

_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def rgb_to_yiq(x: torch.Tensor) -> torch.Tensor:
    """``(B,3,H,W)`` RGB → YIQ (Y in [0,1])."""
    return torch.einsum("ij,bjhw->bihw", _RGB2YIQ.to(x), x)


def yiq_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB2YIQ).to(x), x)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """Y of ``(B,3,H,W)`` RGB, repeated to three channels so the backbone sees a grey image."""
    return rgb_to_yiq(x)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Shift/scale the style's luminance to the content's mean and std (histogram-free matching)."""
    s_mu, s_sd = style_y.mean(), style_y.std().clamp_min(1e-6)
    return ((style_y - s_mu) / s_sd * content_y.std() + content_y.mean()).clamp(0, 1)


# --- the optimisation -------------------------------------------------------------------------------


IMAGE_TV_WEIGHT = 1.0  # the total-variation weight of an image when ``cfg.tv_weight`` is None


def build_loss(cfg: GatysConfig, extractor: nn.Module, *, tv_weight: float = IMAGE_TV_WEIGHT) -> PerceptualLoss:
    """The perceptual loss of ``cfg`` (the backbone's default layers where ``cfg`` names none; ``tv_weight``
    where ``cfg.tv_weight`` is None)."""
    spec = get_backbone(cfg.backbone)
    return PerceptualLoss(extractor, cfg.content_layers or dict.fromkeys(spec.content_layers, 1.0),
                          cfg.style_layers or dict.fromkeys(spec.style_layers, 1.0), content_weight=cfg.content_weight,
                          style_weight=cfg.style_weight,
                          tv_weight=tv_weight if cfg.tv_weight is None else cfg.tv_weight)


def initial_image(cfg: GatysConfig, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The starting pixels ``(1,3,H,W)`` in ``[0,1]`` for ``cfg.init``, ready to optimise."""
    if cfg.init == "content":
        x0 = content.clone()
    elif cfg.init == "noise":
        x0 = torch.rand(content.shape, generator=torch.Generator(device="cpu").manual_seed(cfg.seed)).to(content)
    elif cfg.init == "style":
        x0 = resize_to(style, tuple(content.shape[-2:]))
    else:
        raise FastNSTError(f"Unknown init {cfg.init!r}; use content, noise or style.")
    return x0.clamp(0, 1).contiguous().requires_grad_(True)


def make_optimizer(cfg: GatysConfig, x: torch.Tensor) -> torch.optim.Optimizer:
    if cfg.optimizer == "lbfgs":
        # max_iter=1: one function evaluation per step, so --steps and the progress bar count
        # evaluations; the curvature history persists across step() calls.
        return torch.optim.LBFGS([x], lr=cfg.lr or 1.0, max_iter=1, history_size=50)
    if cfg.optimizer == "adam":
        return torch.optim.Adam([x], lr=cfg.lr or 0.02)
    raise FastNSTError(f"Unknown optimizer {cfg.optimizer!r}; use lbfgs or adam.")


class _Objective:
    """The L-BFGS/Adam closure: evaluates the loss at ``x``, back-propagates, keeps the last terms."""

    def __init__(self, loss: PerceptualLoss, targets: dict[str, torch.Tensor], x: torch.Tensor,
                 optimizer: torch.optim.Optimizer) -> None:
        self.loss, self.targets, self.x, self.optimizer = loss, targets, x, optimizer
        self.last: dict[str, float] = {}

    def __call__(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.loss(self.x, self.targets)
        total = terms.total
        total.backward()
        self.last = {"content": terms.content.item(), "style": terms.style.item(), "tv": terms.tv.item(),
                     "total": total.item()}
        return total


def stylize_gatys(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    cfg: GatysConfig,
    extractor: nn.Module,
    *,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Optimise an image. ``content`` ``(1,3,H,W)``, ``styles`` each ``(1,3,h,w)``, float in ``[0,1]``
    on the extractor's device. Returns the ``(1,3,H,W)`` result in ``[0,1]`` and a per-step loss history.
    ``callback(step, image)`` runs after every step (used for ``--save-every``).
    """
    from tqdm.auto import tqdm

    loss = build_loss(cfg, extractor)
    colour_source = content
    if cfg.preserve_color:
        content = luminance(content)
        styles = [match_luminance(luminance(s), content) for s in styles]
    loss.set_style(styles, list(cfg.style_blend) if cfg.style_blend else [1.0] * len(styles))
    targets = loss.set_content_reference(content)
    x = initial_image(cfg, content, styles[0])
    objective = _Objective(loss, targets, x, make_optimizer(cfg, x))
    history: list[dict[str, float]] = []
    bar = tqdm(range(cfg.steps), desc="gatys", disable=not progress, dynamic_ncols=True)
    for step in bar:
        objective.optimizer.step(objective)
        with torch.no_grad():
            x.clamp_(0, 1)
        last = objective.last
        if not np.isfinite(last["total"]):
            raise FastNSTError("The optimisation diverged (loss is not finite); lower --lr or --style-weight.")
        history.append(dict(last))
        bar.set_postfix(content=f"{last['content']:.3g}", style=f"{last['style']:.3g}", tv=f"{last['tv']:.3g}")
        if callback is not None:
            callback(step + 1, x.detach())
    bar.close()
    out = x.detach()
    if cfg.preserve_color:
        yiq = rgb_to_yiq(colour_source)
        out = yiq_to_rgb(torch.cat([out[:, :1], yiq[:, 1:]], dim=1)).clamp(0, 1)
    return out, history


def prepare(cfg: GatysConfig, style_paths: Sequence[str | os.PathLike], *, device: str | torch.device | None,
            weights: str | os.PathLike | None, extractor: nn.Module | None
            ) -> tuple[torch.device, list[torch.Tensor], nn.Module]:
    """What an image or a video needs before it is optimised: ``cfg`` checked, the device, the style
    images ``(1,3,h,w)`` in [0,1] at ``cfg.size``, and the backbone (``extractor`` when given)."""
    if cfg.steps < 1 or cfg.size < 16:
        raise FastNSTError("--steps must be ≥ 1 and --size ≥ 16.")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    styles = [resize_to(to_tensor(read_image(p), dev), cfg.size) for p in style_paths]
    if extractor is None:
        spec = get_backbone(cfg.backbone)
        layers = list(cfg.content_layers or spec.content_layers) + list(cfg.style_layers or spec.style_layers)
        extractor = load_extractor(layers, backbone=cfg.backbone, weights=weights, pool=cfg.pool, device=dev)
    return dev, styles, extractor


def run_gatys_files(
    content_path: str | os.PathLike,
    style_paths: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    cfg: GatysConfig,
    *,
    device: str | torch.device | None = "auto",
    weights: str | os.PathLike | None = None,
    extractor: nn.Module | None = None,
    progress: bool = True,
) -> GatysResult:
    """Read images, optimise, write ``output`` (and intermediates/contact sheet when ``save_every``)."""
    output = Path(output)
    if output.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"):
        raise FastNSTError(f"Output {output} needs an image extension (.png or .jpg).")
    image = read_image(content_path)  # an unreadable content is named before the backbone is looked for
    dev, styles, extractor = prepare(cfg, style_paths, device=device, weights=weights, extractor=extractor)
    content = resize_to(to_tensor(image, dev), cfg.size)

    frames: list[tuple[int, np.ndarray]] = []

    def keep(step: int, img: torch.Tensor) -> None:
        if cfg.save_every and (step % cfg.save_every == 0 or step == cfg.steps):
            frames.append((step, to_uint8(img)))

    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    out, history = stylize_gatys(content, styles, cfg, extractor, progress=progress, callback=keep)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0

    image = to_uint8(out)
    write_image(output, image)
    result = GatysResult(image=image, output=output, size=image.shape[:2], steps=cfg.steps, seconds=seconds,
                         device=str(dev), history=history, **history[-1])
    if frames:
        for step, img in frames:
            p = output.with_name(f"{output.stem}_step{step:05d}{output.suffix}")
            write_image(p, img)
            result.intermediates.append(p)
        tail = frames[-10:]  # the seed shows the last ten intermediate results
        sheet = contact_sheet([f for _, f in tail], columns=5, labels=[f"step {s}" for s, _ in tail])
        result.sheet = write_image(output.with_name(f"{output.stem}_sheet.png"), sheet)
    return result

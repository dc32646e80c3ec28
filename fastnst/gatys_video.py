"""The reference mode on a video: Gatys et al.'s optimisation, frame after frame, held to the motion.

After Ruder, Dosovitskiy & Brox (2016, "Artistic style transfer for videos"): each frame's pixels start
from the previous result carried along the input's motion (:class:`fastnst.motion.Motion`, the motion
stage the stabiliser uses, with a finer flow: :data:`REFERENCE_FLOW_PRESET`) and are optimised for the
Gatys loss (:mod:`fastnst.gatys`) plus a temporal term that holds them to that carried result where the
motion is trusted::

    L(x_t) = L_gatys(x_t)  +  λ · Σ_p M(p) ‖x_t(p) − W(x_{t−1})(p)‖² / (3 Σ_p M(p))

with ``W`` the bicubic carry and ``M`` the motion stage's trust (:func:`fastnst.losses.temporal_loss`).
The first frame and every frame after a cut take ``steps`` iterations from ``init``; the others take
``frame_steps`` from the carried result, so a stroke painted once is kept where the scene keeps it and
only what the motion uncovers is painted anew. Decoding, audio and writing are the stylize
command's (:mod:`fastnst.video`): audio kept, constant memory, the output appearing only when complete.
Slow: seconds a frame on a CPU. It is the quality reference for a film, not a real-time path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .errors import FastNSTError
from .gatys import build_loss, initial_image, luminance, match_luminance, rgb_to_yiq, yiq_to_rgb
from .images import longer_side_shape
from .losses import temporal_loss
from .motion import Motion
from .options import GatysConfig
from .perceptual import PerceptualLoss

# The total-variation weight of a video when ``cfg.tv_weight`` is None. Measured on bikes.mp4 (60
# frames at --size 501) and on a pan with known motion: at 30 the strokes are smoother and the video
# steadier for nearly the same style (weights/README.md, "The reference mode on a video").
VIDEO_TV_WEIGHT = 30.0
# The reference's flow: DIS "medium" (the eval's kind of flow), not the stabiliser's cheaper default.
# The optimisation holds its strokes to whatever motion it is given, so a truer flow is worth its few
# ms beside seconds of optimisation. Measured 2026-12-05 (Zen 5, tv 30; weights/README.md, "What the
# eval sees in the reference"): bikes.mp4, 60 frames at --size 501, 6.81x -> 5.67x the floor at 0.40x
# style; a known pan by the true flow 1.73x -> 1.66x, the same pan with a flat roof sliding over it
# 13.99x -> 13.26x. At the eval's own size this *is* the eval's flow, so the eval then scores the
# reference by the motion it was held to: bikes at --size 640 0.41x / 1.78x, but 2.34-2.42x by other
# flows, where starry_night_fast is 1.69x (weights/README.md, "At the clip's own size").
REFERENCE_FLOW_PRESET = "medium"


@dataclass
class GatysVideoResult:
    """Outcome of :func:`run_gatys_video`."""

    output: Path
    frames: int
    size: tuple[int, int]  # (h, w) of the output
    work: tuple[int, int]  # (h, w) the frames were optimised at
    seconds: float
    device: str
    cuts: int  # frames painted from scratch after the first (shot cuts, untrusted motion)
    audio: dict[int, str] = field(default_factory=dict)  # input stream index → "copy" or "aac"


class FrameOptimizer:
    """One stream's reference stylisation: call it with each frame in order.

    ``styles``: ``(1,3,h,w)`` float in [0,1] on the extractor's device. Holds the loss (its style
    targets set once), the motion stage and the previous result at the working size.
    """

    def __init__(self, styles: Sequence[torch.Tensor], cfg: GatysConfig, extractor: nn.Module) -> None:
        if cfg.steps < 1 or cfg.frame_steps < 1:
            raise FastNSTError("--steps and --frame-steps must be at least 1.")
        if cfg.temporal_weight < 0:
            raise FastNSTError("--temporal-weight must be zero or positive.")
        self.cfg, self.styles = cfg, list(styles)
        self.loss: PerceptualLoss = build_loss(cfg, extractor, tv_weight=VIDEO_TV_WEIGHT)
        self.device = self.styles[0].device
        self.motion = Motion(preset=REFERENCE_FLOW_PRESET)
        self.prev: np.ndarray | None = None  # (h,w,3) float32, the last result at the working size
        self._style_set = False
        self.cuts = -1  # the first frame is painted from scratch too, and not a cut

    def _set_style(self, content: torch.Tensor) -> None:
        """The style targets, once per stream: with ``preserve_color`` the styles' luminance is matched
        to the first frame's, so the targets do not change from frame to frame."""
        styles = self.styles
        if self.cfg.preserve_color:
            styles = [match_luminance(luminance(s), content) for s in styles]
        self.loss.set_style(styles, list(self.cfg.style_blend) if self.cfg.style_blend else [1.0] * len(styles))
        self._style_set = True

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """``(H,W,3)`` uint8 RGB frame → its stylization, the same shape and type."""
        import cv2

        H, W = frame.shape[:2]
        h, w = longer_side_shape(H, W, self.cfg.size)  # as the image mode's resize_to
        small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if h <= H else cv2.INTER_CUBIC)
        small = small.astype(np.float32) * np.float32(1 / 255)
        self.motion.update(small.copy())  # the motion stage keeps its argument as the next reference
        rgb = _tensor(small, self.device)
        content = luminance(rgb) if self.cfg.preserve_color else rgb
        if not self._style_set:
            self._set_style(content)
        if self.prev is None or self.motion.trust is None:
            self.cuts += 1
            x = self._optimise(content, initial_image(self.cfg, content, self.styles[0]).detach(), self.cfg.steps)
        else:
            carried = _tensor(self.motion.carry(self.prev, sharp=True), self.device)
            trust = _tensor(self.motion.trust, self.device)
            x = self._optimise(content, carried.clamp(0, 1), self.cfg.frame_steps, carried, trust)
        self.prev = x[0].permute(1, 2, 0).cpu().numpy()
        if self.cfg.preserve_color:
            x = yiq_to_rgb(torch.cat([x[:, :1], rgb_to_yiq(rgb)[:, 1:]], dim=1)).clamp(0, 1)
        if (h, w) != (H, W):  # back to the frame's size
            x = F.interpolate(x, size=(H, W), mode="bicubic", align_corners=False).clamp_(0, 1)
        return (x[0].permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)

    def _optimise(self, content: torch.Tensor, x0: torch.Tensor, steps: int, carried: torch.Tensor | None = None,
                  trust: torch.Tensor | None = None) -> torch.Tensor:
        """``steps`` iterations from ``x0`` ``(1,3,h,w)``; returns the result in [0,1], detached."""
        cfg = self.cfg
        targets = self.loss.set_content_reference(content)
        x = x0.clone().contiguous().requires_grad_(True)
        if cfg.optimizer == "lbfgs":
            # A line search, unlike the image mode's fixed steps: with the temporal term, fixed L-BFGS
            # steps diverged on bikes.mp4 within a few frames (2026-12-05).
            opt = torch.optim.LBFGS([x], lr=cfg.lr or 1.0, max_iter=steps, history_size=50,
                                    line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)
            rounds = 1
        else:
            opt, rounds = torch.optim.Adam([x], lr=cfg.lr or 0.02), steps

        def objective() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            total = self.loss(x, targets).total
            if carried is not None and cfg.temporal_weight > 0:
                total = total + cfg.temporal_weight * temporal_loss(x, carried, trust)
            total.backward()
            return total

        for _ in range(rounds):
            opt.step(objective)
            if rounds > 1:  # Adam: kept in range after each step, as the image mode does
                with torch.no_grad():
                    x.clamp_(0, 1)
        out = x.detach()
        if not torch.isfinite(out).all():
            raise FastNSTError("The optimisation diverged (not finite); lower --lr, --style-weight or "
                               "--temporal-weight.")
        return out.clamp_(0, 1)


def _tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(h,w,C)`` float32 → ``(1,C,h,w)`` on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].contiguous().to(device)


def run_gatys_video(
    content_path: str | os.PathLike,
    style_paths: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    cfg: GatysConfig,
    *,
    device: str | torch.device | None = "auto",
    weights: str | os.PathLike | None = None,
    extractor: nn.Module | None = None,
    force: bool = False,
    start: float | None = None,
    duration: float | None = None,
    progress: bool = True,
) -> GatysVideoResult:
    """Stylize the video ``content_path`` (from ``start`` for ``duration`` seconds: None, all of it) into
    ``output`` (a video file), keeping its audio streams. Refuses, before any work, an output that cannot
    be written or that exists without ``force``."""
    from tqdm.auto import tqdm

    from .engine import check_output
    from .gatys import prepare
    from .video import check_segment, estimate_frames, open_input

    in_path, out_path = Path(content_path), Path(output)
    if cfg.save_every:
        raise FastNSTError("--save-every applies to images; a video is written whole.")
    check_output(in_path, out_path, "libx264", force=force)
    check_segment(start, duration)  # before the backbone loads, though iter_decoded checks it too
    container, stream = open_input(in_path)  # a missing or broken input fails before the backbone loads
    with container:
        dev, styles, extractor = prepare(cfg, style_paths, device=device, weights=weights, extractor=extractor)
        stylize = FrameOptimizer(styles, cfg, extractor)
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        bar = tqdm(total=estimate_frames(container, stream, start, duration), unit="frame", disable=not progress,
                   dynamic_ncols=True, desc=in_path.name)
        try:
            n, size, audio = _encode(container, stream, in_path, out_path, stylize, bar, start, duration)
        finally:
            bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    work = stylize.prev.shape[:2] if stylize.prev is not None else (0, 0)
    return GatysVideoResult(out_path, n, size, work, time.perf_counter() - t0, str(dev), max(0, stylize.cuts), audio)


def _encode(container, stream, in_path: Path, out_path: Path, stylize: FrameOptimizer, bar, start: float | None,
            duration: float | None) -> tuple[int, tuple[int, int], dict[int, str]]:
    """Decode, stylize and write frame by frame; audio packets are muxed as they come (those before
    the first frame wait for the writer, which needs the first frame's size)."""
    from fractions import Fraction

    from .options import DEFAULT_CRF, DEFAULT_PRESET
    from .video import DecodedFrame, VideoWriter, iter_decoded, stream_fps

    audio_streams = list(container.streams.audio)
    writer: VideoWriter | None = None
    waiting: list = []
    routes: dict[int, str] = {}
    n, size = 0, (0, 0)
    tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000)
    offset = round(Fraction(start) / tb) if start else 0  # the segment starts at 0 in the output
    try:
        for item in iter_decoded(container, stream, start=start, duration=duration, audio_streams=audio_streams,
                                 path=in_path):
            if not isinstance(item, DecodedFrame):
                if writer is None:
                    waiting.append(item)
                else:
                    writer.mux_audio(item)
                continue
            image = stylize(item.image)
            if writer is None:
                size = image.shape[:2]
                writer = VideoWriter(out_path, image.shape[1], image.shape[0], fps=stream_fps(stream), time_base=tb,
                                     crf=DEFAULT_CRF, preset=DEFAULT_PRESET)
                routes = {s.index: writer.add_audio(s, start=start) for s in audio_streams}
                for packet in waiting:
                    writer.mux_audio(packet)
                waiting.clear()
            writer.write(image, item.pts - offset)
            n += 1
            bar.update(1)
    except BaseException:  # KeyboardInterrupt included: no half-written output is left
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    return n, size, routes


__all__ = ["VIDEO_TV_WEIGHT", "FrameOptimizer", "GatysVideoResult", "run_gatys_video"]

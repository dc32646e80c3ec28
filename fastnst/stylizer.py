"""The frame engine's stages around one style network: prepare (resize to the working resolution) →
network → (stabilise, by the caller) → upsample (edge-aware, to the output size).

Why a working resolution: a style network paints strokes of the size it was trained at (its crop
size and style-image size). Run at a frame's full resolution, those strokes shrink to a fine texture
and the result reads as a colour filter; and the cost grows with every output pixel. So the network
runs at the working resolution recorded for the style (or derived from its training size), and the
result comes back to the output size with a guided filter that restores the input's edges
(:mod:`fastnst.upsample`). ``work_size=0`` or ``scale=1`` runs at full resolution.
"""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .devices import parse_dtype, pick_device
from .errors import FastNSTError
from .images import resize_max, resize_shape
from .models import video_input
from .options import DEFAULT_UPSAMPLER, DEFAULT_WORK_SIZE, MIN_WORK_SIZE, EngineOptions
from .runtime import make_engine
from .upsample import UPSAMPLERS, resize, upsample

# The trainer crops a random square of crop_min–100 % of a photo's short side and resizes it to the
# crop size S, so the network has seen scenes whose short side measured up to S / crop_min px. Running
# it there keeps strokes at the largest scale it was trained on (measured on bikes.mp4 with
# starry_night_fast, style distance against full resolution: short side 160 px +6.8 %, 200 px +2.5 %,
# 240 px +0.5 %; 128 / 0.6 = 213 px is within the 5 % that keeps the look).
_DEFAULT_CROP_MIN = 0.6
# Upsamplers the CPU path runs on uint8 (the edge-aware ones need the float guide).
_UINT8_UPSAMPLERS = ("bicubic", "bilinear")


def style_work_size(metadata: dict[str, str], train_config: dict) -> int:
    """The working resolution (short side, px) a style file implies: its ``work_size`` metadata, else
    its training crop size ÷ its smallest crop fraction, else :data:`DEFAULT_WORK_SIZE`."""
    if metadata.get("work_size"):
        return int(metadata["work_size"])
    crop = train_config.get("image_size")
    if crop:
        return round(int(crop) / float(train_config.get("crop_min") or _DEFAULT_CROP_MIN))
    return DEFAULT_WORK_SIZE


def work_shape(height: int, width: int, *, work_size: int | None, scale: float | None) -> tuple[int, int]:
    """The network's input size for a ``height × width`` frame: ``scale`` × the frame when given, else
    the short side brought down to ``work_size`` (never up), else the frame's own size."""
    if scale is not None:
        s = scale
    elif work_size:
        s = min(1.0, work_size / min(height, width))
    else:
        return height, width
    return max(8, round(height * s)), max(8, round(width * s))


def check_work_size(work_size) -> int | None:
    """Validate ``--work-size``: None (style default), 0 (full resolution) or ≥ :data:`MIN_WORK_SIZE`."""
    if work_size is None:
        return None
    try:
        value = int(work_size)
    except (TypeError, ValueError) as exc:
        raise FastNSTError(f"--work-size must be a whole number of pixels, got {work_size!r}.") from exc
    if value != 0 and value < MIN_WORK_SIZE:
        raise FastNSTError(f"--work-size must be 0 (full resolution) or at least {MIN_WORK_SIZE} px, got {value}.")
    return value


def _load_net(style, prefer: str) -> tuple[nn.Module, str, int | None]:
    """(network copy, display name, style working size or None) from any accepted ``style``; a family
    name loads the variant ``prefer`` picks (:func:`fastnst.styles.resolve_style`)."""
    from .styles import StyleModel, load_style

    if isinstance(style, nn.Module):
        return copy.deepcopy(style), type(style).__name__, None
    model = style if isinstance(style, StyleModel) else load_style(style, device="cpu", prefer=prefer)
    net = model.net if not isinstance(style, StyleModel) else copy.deepcopy(model.net)
    return net, model.name, style_work_size(model.metadata, model.train_config)


class Stylizer:
    """A style network ready for inference on one device, with its working resolution.

    ``style``: a registered style name or family (on a CPU its fastest variant, on a GPU its best), a
    ``.safetensors`` path, a :class:`fastnst.styles.StyleModel` or a :class:`TransformerNet` (copied,
    never modified). ``engine``: what runs the network (:data:`fastnst.runtime.ENGINES`; ``auto`` is
    OpenVINO on a CPU where it is installed, PyTorch elsewhere; :attr:`engine_note` says why OpenVINO
    was not used). ``dtype``: "auto" picks fp16 on CUDA, bf16
    on CPUs with native bf16, fp32 elsewhere (:func:`fastnst.devices.auto_dtype`). ``max_size`` caps
    the output's longer side. ``work_size``: the network's short side in px (None: the style's own,
    0: full resolution); ``scale`` instead runs it at ``scale`` × the frame. ``upsampler``: how the
    working-resolution output reaches the output size, one of :data:`fastnst.upsample.UPSAMPLERS`
    (default :data:`fastnst.options.DEFAULT_UPSAMPLER`; see there for why).

    Call it on a ``(H,W,3)`` uint8 RGB numpy image → ``(H',W',3)`` uint8, or on a ``(B,3,H,W)``
    float tensor in ``[0,1]`` → ``(B,3,H',W')`` float in ``[0,1]`` on the input's device and dtype.
    """

    def __init__(self, style, *, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
                 max_size: int | None = None, scale: float | None = None, work_size: int | None = None,
                 upsampler: str = DEFAULT_UPSAMPLER, channels_last: bool | None = None, compile: bool | str = False,
                 engine: str = "auto") -> None:
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.dtype = parse_dtype(dtype, self.device)
        if scale is not None and not (0 < scale <= 8):
            raise FastNSTError(f"--scale must be in (0, 8], got {scale}.")
        if max_size is not None and max_size < 8:
            raise FastNSTError(f"--max-size must be at least 8 pixels, got {max_size}.")
        if upsampler not in UPSAMPLERS:
            raise FastNSTError(f"Unknown upsampler {upsampler!r}; use one of {', '.join(UPSAMPLERS)}.")
        work_size = check_work_size(work_size)
        self.max_size, self.upsampler = max_size, upsampler
        self.scale = None if scale is None else float(scale)
        # A family name (``starry_night``) runs its fastest variant on a CPU and its best on a GPU.
        net, self.name, style_size = _load_net(style, "speed" if self.device.type == "cpu" else "quality")
        self.work_size = style_size if work_size is None else work_size
        if self.scale is None and work_size is None and style_size is None:
            self.work_size = 0  # a bare network: no training scale known, run at the frame's size
        # channels_last suits cuDNN (tensor cores, NHWC I/O for free); oneDNN on CPU measured slower.
        channels_last = (self.device.type == "cuda") if channels_last is None else channels_last
        self.engine = make_engine(net, engine, self.device, self.dtype, channels_last=channels_last, compile=compile)
        self.net: nn.Module = net  # the torch module (every engine runs these weights)

    def __repr__(self) -> str:
        return (f"Stylizer({self.name!r}, device={self.device}, dtype={self.dtype}, work_size={self.work_size}, "
                f"engine={self.engine.name})")

    @property
    def engine_note(self) -> str:
        """Why the engine asked for is not the one running ("" when it is)."""
        return self.engine.note

    # -- stages -----------------------------------------------------------------------------------

    def prepare(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B,3,H,W)`` float in [0,1] (any device) → (frame at output size, frame at working size),
        both float32 on :attr:`device`."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise FastNSTError(f"Expected a (B,3,H,W) tensor, got shape {tuple(images.shape)}.")
        full = resize_max(images.to(self.device, non_blocking=True).float(), self.max_size)
        h, w = full.shape[-2:]
        size = work_shape(h, w, work_size=self.work_size, scale=self.scale)
        if self.device.type == "cpu" and size != (h, w):
            # resized on uint8 as in the per-frame CPU path (_stylize_frame_cpu), so a blend, a strength
            # or a colour transfer sees exactly the network input a plain style does
            u8 = full.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).contiguous(memory_format=torch.channels_last)
            return full, _resize_uint8(u8, size).float().div_(255.0)
        return full, resize(full, size)

    @property
    def video(self) -> bool:
        """Whether the network is a video network (it takes its previous output: :mod:`fastnst.models`)."""
        return bool(getattr(getattr(self.net, "arch", None), "video", False))

    def network(self, work: torch.Tensor, prior: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The style network on ``(B,3,h,w)`` float in [0,1] → ``(B,3,h,w)`` float32 in [0,1]. A video
        network also takes ``prior`` (its previous output carried onto this frame and the mask,
        :meth:`fastnst.stabilize.Stabilizer.prior`); without one it paints the frame from nothing."""
        if self.video:  # always 7 channels, so an engine compiles one model for every frame
            work = video_input(work, *prior) if prior is not None else video_input(work)
        return self.engine(work)

    def styled(self, work: torch.Tensor, stabilizer=None) -> torch.Tensor:
        """The network on ``(B,3,h,w)`` working-size frames in order, stabilised by ``stabilizer`` (the
        stream's state) when given; a video network runs frame by frame on its own carried output."""
        if stabilizer is None:
            return self.network(work)
        if not self.video:
            styled = self.network(work)
            return torch.cat([stabilizer(work[i:i + 1], styled[i:i + 1]) for i in range(len(styled))])
        return torch.cat([stabilizer(work[i:i + 1], self.video_frame(work[i:i + 1], stabilizer))
                          for i in range(len(work))])

    def video_frame(self, frame: torch.Tensor, stabilizer) -> torch.Tensor:
        """A video network on one ``(1,3,h,w)`` frame of the stream ``stabilizer``: the stream's motion
        (once per frame), this network's carried previous output, and its output kept for the next."""
        stabilizer.begin(frame)
        y = self.network(frame, stabilizer.prior(self, frame))
        stabilizer.remember(self, y)
        return y

    @torch.inference_mode()
    def warm_up(self, height: int, width: int) -> None:
        """Run the network once at the working shape of ``height × width`` frames, so the first real
        frame does not wait for an engine's conversion or compilation (a live camera would drop it)."""
        self.network(self.prepare(torch.zeros(1, 3, height, width))[1])

    def finish(self, styled: torch.Tensor, work: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        """Working-resolution output → output size (:attr:`upsampler`), float32 in [0,1]."""
        return upsample(styled, work, full, self.upsampler)

    @torch.inference_mode()
    def stylize_batch(self, images: torch.Tensor, stabilizer=None) -> torch.Tensor:
        """``(B,3,H,W)`` float in ``[0,1]`` (any device) → ``(B,3,H',W')`` float32 in ``[0,1]`` on
        :attr:`device` (H',W' differ from H,W only when ``max_size`` shrinks them). ``stabilizer``
        (a :class:`fastnst.stabilize.Stabilizer`) is applied frame by frame at working resolution."""
        full, work = self.prepare(images)
        return self.finish(self.styled(work, stabilizer), work, full)

    @torch.inference_mode()
    def stylize_uint8(self, frames: torch.Tensor, stabilizer=None) -> torch.Tensor:
        """``(B,H,W,3)`` uint8 RGB (any device) → ``(B,H',W',3)`` uint8 on :attr:`device`."""
        if self.device.type == "cpu" and frames.device.type == "cpu" and self.upsampler in _UINT8_UPSAMPLERS:
            return torch.from_numpy(np.stack([self._stylize_frame_cpu(f, stabilizer) for f in frames.numpy()]))
        x = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        y = self.stylize_batch(x, stabilizer)
        return y.mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def _stylize_frame_cpu(self, frame: np.ndarray, stabilizer=None) -> np.ndarray:
        """One ``(H,W,3)`` uint8 frame through the stages on the CPU with every full-resolution step on
        uint8 (the same filters as :meth:`prepare` and :meth:`finish`, 3–30× faster than on floats):
        only the working-size image is ever float. The full-resolution float round trip cost more than
        the lite network (``benchmarks/speed.py``). Same result as the
        tensor path to rounding (the output is rounded at the working size before it is upsampled)."""
        x = torch.from_numpy(np.ascontiguousarray(resize_max_uint8(frame, self.max_size))).permute(2, 0, 1)[None]
        h, w = x.shape[-2:]
        size = work_shape(h, w, work_size=self.work_size, scale=self.scale)
        work = _resize_uint8(x, size).float().div_(255.0)
        styled = self.styled(work, stabilizer)
        out = np.ascontiguousarray(styled[0].mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
        if size == (h, w):
            return out
        import cv2  # PyTorch's uint8 bicubic uses another kernel (a = -0.5) than its float one; OpenCV's matches

        return cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC if self.upsampler == "bicubic" else cv2.INTER_LINEAR)

    def __call__(self, x, stabilizer=None):
        if isinstance(x, np.ndarray):
            if x.ndim != 3 or x.shape[2] != 3 or x.dtype != np.uint8:
                raise FastNSTError(f"Expected an (H,W,3) uint8 RGB image, got {x.dtype} {x.shape}.")
            return self.stylize_uint8(torch.from_numpy(np.ascontiguousarray(x))[None], stabilizer)[0].cpu().numpy()
        if isinstance(x, torch.Tensor):
            y = self.stylize_batch(x, stabilizer)
            return y.to(x.device, x.dtype if x.is_floating_point() else torch.float32)
        raise TypeError(f"Stylizer takes a numpy image or a tensor batch, not {type(x).__name__}")


def _resize_uint8(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B,3,H,W)`` uint8 → ``size`` as :func:`fastnst.upsample.resize` does (antialiased bilinear
    when shrinking, bilinear when growing), in PyTorch's uint8 kernels."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=size[0] < h or size[1] < w, align_corners=False)


def resize_max_uint8(frame: np.ndarray, max_size: int | None) -> np.ndarray:
    """``(H,W,3)`` uint8 downscaled (area filter) so the longer side is at most ``max_size``."""
    import cv2

    h, w = frame.shape[:2]
    size = resize_shape(h, w, max_size)  # the sizes of fastnst.images.resize_max
    return frame if size == (h, w) else cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def stylizer_kwargs(engine: EngineOptions, **extra) -> dict:
    """The :class:`Stylizer` keyword arguments that ``engine`` sets (device, dtype, scale, working
    size, upsampler, inference engine), plus ``extra``; ``max_size`` is left to the caller (video decoders apply it)."""
    return {"device": engine.device, "dtype": engine.dtype, "scale": engine.scale, "work_size": engine.work_size,
            "upsampler": engine.upsampler or DEFAULT_UPSAMPLER, "engine": engine.runtime, **extra}


def as_stylizer(style, **kwargs) -> Stylizer:
    """``style`` if it already is a :class:`Stylizer`, else a new one built with ``kwargs``."""
    return style if isinstance(style, Stylizer) else Stylizer(style, **kwargs)


class ThreadTuner:
    """Picks PyTorch's CPU thread count by measuring the loop it runs in, not by rule.

    Each candidate count runs ``trial`` iterations (after ``warmup``); the fastest median period
    between iterations wins and is kept. The period is measured end to end (decode and encode threads
    compete for the same cores, so the best count depends on them too). ``fixed`` skips the trials.
    """

    def __init__(self, device: torch.device, fixed: int | None = None, *, trial: int = 4, warmup: int = 2) -> None:
        self.old = torch.get_num_threads()
        cores = os.cpu_count() or 1
        if fixed is not None and fixed < 1:
            raise FastNSTError(f"--threads must be at least 1, got {fixed}.")
        self.candidates = [fixed] if fixed else ([] if device.type != "cpu" else list(range(1, min(cores, 8) + 1)))
        self.trial, self.warmup = trial, warmup
        self.chosen: int | None = fixed if fixed else (None if self.candidates else self.old)
        self._times: dict[int, list[float]] = {c: [] for c in self.candidates}
        self._i = 0
        self._last: float | None = None
        if self.candidates:
            torch.set_num_threads(self.candidates[0])

    def tick(self) -> None:
        """Call once per loop iteration (e.g. after each frame is handed on)."""
        now = time.perf_counter()
        if self.chosen is not None and len(self.candidates) <= 1:
            self._last = now
            return
        if self.chosen is None and self._last is not None:
            k = self._i - self.warmup
            if k >= 0:
                current = self.candidates[min(k // self.trial, len(self.candidates) - 1)]
                self._times[current].append(now - self._last)
                if k + 1 == self.trial * len(self.candidates):
                    self.chosen = min(self._times, key=lambda c: float(np.median(self._times[c])))
                    torch.set_num_threads(self.chosen)
                elif (k + 1) % self.trial == 0:
                    torch.set_num_threads(self.candidates[(k + 1) // self.trial])
        self._i += 1
        self._last = now

    def restore(self) -> None:
        torch.set_num_threads(self.old)


__all__ = ["DEFAULT_WORK_SIZE", "Stylizer", "ThreadTuner", "as_stylizer", "check_work_size", "style_work_size",
           "stylizer_kwargs", "work_shape"]

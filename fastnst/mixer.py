"""Several styles on one frame stream: the networks of a style mixture, blended, then the output
controls (strength, colour preservation).

A :class:`Mixer` holds one :class:`fastnst.stylizer.Stylizer` per distinct style. For a batch of
frames and their :class:`fastnst.timeline.Mix` (from :meth:`fastnst.timeline.Schedule.at` or a live
:class:`fastnst.timeline.Fader`) it runs::

    prepare (once, shared working size) → network of every style with a weight → blend (output
    cross-fade) → stabilise → finish (upsample to the output size) → strength → preserve colour

All styles run at the *first* style's working resolution, so their outputs align pixel for pixel
and the stabiliser's history keeps one size across style changes. A frame that needs one style at
full strength without colour preservation takes that Stylizer's own path, so a single style gives
exactly what :class:`Stylizer` gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .color import apply_strength, preserve_color
from .errors import FastNSTError
from .stylizer import Stylizer
from .timeline import Mix, Schedule, blend, stack_mixes


def check_strength(strength: float) -> float:
    """``strength`` as a float in [0, 1], else a :class:`FastNSTError`."""
    try:
        value = float(strength)
    except (TypeError, ValueError) as exc:
        raise FastNSTError(f"--strength must be a number from 0 to 1, got {strength!r}.") from exc
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise FastNSTError(f"--strength must be from 0 to 1, got {strength!r}.")
    return value


def scale_strength(schedule: Schedule, factor: float) -> Schedule:
    """``schedule`` with every entry's strength multiplied by ``factor`` in [0, 1]."""
    from dataclasses import replace

    factor = check_strength(factor)
    if factor == 1.0:
        return schedule
    return Schedule(tuple(replace(e, strength=e.strength * factor) for e in schedule.entries), curve=schedule.curve)


class Mixer:
    """The networks of several styles sharing one device, precision and working resolution.

    ``stylizers``: ``{style name: Stylizer}`` (the names used in the mixes); the first one's
    ``work_size``/``scale``/``max_size``/``upsampler`` are given to the others so every output aligns.
    ``preserve_color``: keep the input's chroma (YIQ, :func:`fastnst.color.preserve_color`).
    """

    def __init__(self, stylizers: Mapping[str, Stylizer], *, preserve_color: bool = False) -> None:
        if not stylizers:
            raise FastNSTError("Give at least one style.")
        self.stylizers = dict(stylizers)
        self.first = next(iter(self.stylizers.values()))
        for st in self.stylizers.values():
            if st.device != self.first.device:
                raise ValueError("all stylizers of a Mixer must share one device")
            st.work_size, st.scale = self.first.work_size, self.first.scale
            st.max_size, st.upsampler = self.first.max_size, self.first.upsampler
        self.preserve_color = bool(preserve_color)

    @property
    def device(self) -> torch.device:
        return self.first.device

    @property
    def names(self) -> list[str]:
        return list(self.stylizers)

    def warm_up(self, height: int, width: int) -> None:
        """Run every style's network once for ``height × width`` frames (:meth:`Stylizer.warm_up`)."""
        for st in self.stylizers.values():
            st.warm_up(height, width)

    @property
    def engine_notes(self) -> list[str]:
        """Why an engine asked for is not the one running, once per reason (see :attr:`Stylizer.engine_note`)."""
        return list(dict.fromkeys(st.engine_note for st in self.stylizers.values() if st.engine_note))

    @property
    def video(self) -> bool:
        """Whether any style is a video network (the stream then needs its motion even unstabilised)."""
        return any(st.video for st in self.stylizers.values())

    def _network(self, name: str, work: torch.Tensor, stabilizer) -> torch.Tensor:
        """Style ``name``'s network on ``work``; a video network on one frame, with its own prior (keyed
        by its Stylizer, as on the Stylizer's own path, so a fade into a blend keeps it)."""
        st = self.stylizers[name]
        return st.video_frame(work, stabilizer) if st.video and stabilizer is not None else st.network(work)

    def _check(self, mixes: Sequence[Mix]) -> None:
        for m in mixes:
            unknown = [n for n in m.weights if n not in self.stylizers]
            if unknown:
                raise FastNSTError(f"Style {unknown[0]!r} was not loaded for this run.")

    def _plain(self, mixes: Sequence[Mix]) -> Stylizer | None:
        """The one Stylizer that renders every frame alone (one style, full strength), else None."""
        if self.preserve_color or any(m.strength != 1.0 for m in mixes):
            return None
        names = {n for m in mixes for n in m.weights}
        return self.stylizers[names.pop()] if len(names) == 1 else None

    @torch.inference_mode()
    def stylize_batch(self, images: torch.Tensor, mixes: Sequence[Mix], stabilizer=None) -> torch.Tensor:
        """``(B,3,H,W)`` float in [0,1] (any device) with one :class:`Mix` per frame → ``(B,3,H',W')``
        float32 in [0,1] on :attr:`device` (H',W' differ only when ``max_size`` shrinks them).
        ``stabilizer`` runs frame by frame on the blended working-resolution output."""
        if len(mixes) != images.shape[0]:
            raise ValueError(f"{len(mixes)} mixes for a batch of {images.shape[0]} frames")
        self._check(mixes)
        plain = self._plain(mixes)
        if plain is not None:
            return plain.stylize_batch(images, stabilizer)
        if stabilizer is not None and len(mixes) > 1 and self.video:  # each frame's priors come from the last
            return torch.cat([self.stylize_batch(images[i:i + 1], mixes[i:i + 1], stabilizer)
                              for i in range(len(mixes))])
        full, work = self.first.prepare(images)
        same = all(m == mixes[0] for m in mixes)
        weights, strengths = (mixes[0].weights, mixes[0].strength) if same else stack_mixes(mixes)
        if same and strengths == 0.0:
            if stabilizer is not None:
                stabilizer.reset()  # its history would be stale by the time the style returns
            y = full  # the input itself: no network to run
        else:
            styled = blend({n: self._network(n, work, stabilizer) for n in weights}, weights)
            if stabilizer is not None:
                styled = torch.cat([stabilizer(work[i:i + 1], styled[i:i + 1]) for i in range(len(styled))])
            y = apply_strength(self.first.finish(styled, work, full), full, strengths)
        return preserve_color(y, full) if self.preserve_color else y

    @torch.inference_mode()
    def stylize_uint8(self, frames: torch.Tensor, mixes: Sequence[Mix], stabilizer=None) -> torch.Tensor:
        """``(B,H,W,3)`` uint8 RGB (any device) → ``(B,H',W',3)`` uint8 on :attr:`device`."""
        plain = None if len(mixes) != frames.shape[0] else self._plain(mixes)
        if plain is not None:
            self._check(mixes)
            return plain.stylize_uint8(frames, stabilizer)
        x = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        y = self.stylize_batch(x, mixes, stabilizer)
        return y.mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def __call__(self, image: np.ndarray, mix: Mix, stabilizer=None) -> np.ndarray:
        """One ``(H,W,3)`` uint8 RGB image → ``(H',W',3)`` uint8, rendered as ``mix``."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise FastNSTError(f"Expected an (H,W,3) uint8 RGB image, got {image.dtype} {image.shape}.")
        plain = self._plain([mix])
        if plain is not None:
            self._check([mix])
            return plain(image, stabilizer)
        frames = torch.from_numpy(np.ascontiguousarray(image))[None]
        return self.stylize_uint8(frames, [mix], stabilizer)[0].cpu().numpy()


def plan_styles(style=None, schedule: Schedule | None = None, strength: float = 1.0
                ) -> tuple[Schedule, dict[str, object]]:
    """What to render, checked before any frame is decoded: ``(schedule, {name: style object})``.

    ``style``: a style name, path or blend string (``"a:0.6,b:0.4"``), a
    :class:`~fastnst.styles.StyleModel`, a :class:`~fastnst.models.TransformerNet` or a ready
    :class:`Stylizer` (None: the default style); or ``schedule`` instead. ``strength`` scales every
    entry's strength. Every style name must resolve (one :class:`FastNSTError` sentence if not);
    the dict holds the style objects that are not names, keyed by the name the schedule uses.
    """
    import os

    from .styles import DEFAULT_STYLE, resolve_style

    ready: dict[str, object] = {}
    if schedule is not None and style is not None:
        raise FastNSTError("Give either a style or a schedule, not both.")
    if schedule is None:
        if style is None or isinstance(style, str):
            schedule = Schedule.single(style or DEFAULT_STYLE)
        elif isinstance(style, os.PathLike):
            schedule = Schedule.single(((os.fspath(style), 1.0),))
        else:
            key = str(getattr(style, "name", None) or type(style).__name__)
            ready[key] = style
            schedule = Schedule.single(((key, 1.0),))
    elif not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a fastnst.timeline.Schedule, not {type(schedule).__name__}")
    for name in schedule.styles():
        if name not in ready:
            resolve_style(name)
    return scale_strength(schedule, strength), ready


def build_mixer(names: Sequence[str], ready: Mapping[str, object] | None = None, *, preserve_color: bool = False,
                **stylizer_kwargs) -> Mixer:
    """A :class:`Mixer` for the styles ``names`` (e.g. ``schedule.styles()``; see :func:`plan_styles`):
    ``ready[name]`` where given, else the name loaded. ``stylizer_kwargs`` go to each new
    :class:`Stylizer` (device, dtype, max_size, scale, work_size, compile; a ready one keeps its own)."""
    from .stylizer import as_stylizer

    ready = ready or {}
    return Mixer({n: as_stylizer(ready.get(n, n), **stylizer_kwargs) for n in dict.fromkeys(names)},
                 preserve_color=preserve_color)


__all__ = ["Mixer", "build_mixer", "check_strength", "plan_styles", "scale_strength"]

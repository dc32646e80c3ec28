"""The state of one frame stream: its motion (once per frame), the stabiliser's history and each
video network's previous output.

A :class:`Stabilizer` goes with one stream (a video, a camera) and is given every frame in order at
the network's working resolution. For a frame::

    begin(frame)                   motion against the previous frame (fastnst.motion.Motion), once
    prior(key) / remember(key, y)  per video network: its previous output carried onto this frame and
                                   the eroded trust mask; then the output it made
    stabilizer(frame, out)         the blend below, and the end of the frame

Flicker reduction: ``out = cur + strength · MAX_BLEND · trust · (carried previous output − cur)``, the
previous output being the previous *blended* one, so static regions settle to an exponential average
while moving and newly visible regions follow the network at once. A shot cut trusts nothing, so the
history restarts there. Calling it on a frame without :meth:`~Stabilizer.begin` begins it.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import torch

from .errors import FastNSTError
from .motion import Motion

# The largest share of the carried-over history in a fully trusted pixel (at strength 1): some of the
# network's current output must always show through, or bilinear resampling blur accumulates frame
# after frame in static regions (measured: 0.12 drift after 20 frames at 1.0, none at 0.8).
MAX_BLEND = 0.8


def _hwc(x: torch.Tensor) -> np.ndarray:
    """``(1,C,h,w)`` float tensor → ``(h,w,C)`` float32 numpy array (a view when possible)."""
    return np.ascontiguousarray(x[0].detach().float().permute(1, 2, 0).cpu().numpy())


def _nchw(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].to(device)


class Stabilizer:
    """The per-stream state; see the module docstring for the order of calls.

    ``strength`` in [0, 1]: the weight of the carried-over previous output where fully trusted, as a
    fraction of :data:`MAX_BLEND` (0 = no blending: the stream then only serves video networks'
    priors). ``photometric_tol``, ``cut_fraction``, ``preset``: the :class:`fastnst.motion.Motion`'s.
    Works at whatever resolution it is given (the engine gives it the working resolution) with
    OpenCV on the CPU: a remap of a few small images costs far less than ``grid_sample`` there.
    """

    def __init__(self, strength: float = 0.5, *, photometric_tol: float = 0.08, cut_fraction: float = 0.3,
                 preset: str = "fine") -> None:
        if not 0.0 <= strength <= 1.0:
            raise FastNSTError(f"--stabilize must be between 0 and 1, got {strength}.")
        self.strength = float(strength)
        self.motion = Motion(photometric_tol=photometric_tol, cut_fraction=cut_fraction, preset=preset)
        self.reset()

    @property
    def cuts(self) -> int:
        return self.motion.cuts

    @property
    def trusted(self) -> float:
        """Fraction of pixels trusted in the last frame (diagnostics)."""
        return self.motion.trusted

    def reset(self) -> None:
        """Forget the history (a new stream)."""
        self.motion.reset()
        self._prev_out: np.ndarray | None = None
        self._priors: dict[Hashable, np.ndarray] = {}  # each video network's previous output
        self._made: set[Hashable] = set()  # the networks that ran on the current frame
        self._begun = False

    def begin(self, frame: torch.Tensor) -> None:
        """Start a frame: ``(1,3,h,w)`` float in [0,1], the networks' input. Its motion is estimated here,
        once: until the frame ends (the call below), another ``begin`` does nothing."""
        if frame.shape[0] != 1:
            raise ValueError("Stabilizer takes one frame at a time")
        if self._begun:
            return
        self.motion.update(_hwc(frame))
        self._begun = True

    def prior(self, key: Hashable, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The previous output of the network ``key`` carried onto this frame and the mask it may be
        trusted on, ``((1,3,h,w), (1,1,h,w))`` float32 on ``like``'s device; None when nothing is
        carried over (its first frame, after a cut, or when it did not run on the previous frame)."""
        prev, mask = self._priors.get(key), self.motion.prior_mask()
        if prev is None or mask is None or prev.shape[:2] != mask.shape[:2]:
            return None
        return _nchw(self.motion.carry(prev), like.device), _nchw(mask, like.device)

    def remember(self, key: Hashable, output: torch.Tensor) -> None:
        """What the network ``key`` made of this frame, ``(1,3,h,w)`` in [0,1]: the next frame's prior."""
        self._priors[key] = _hwc(output)
        self._made.add(key)

    @torch.no_grad()
    def __call__(self, frame: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """Stabilise one frame and end it. ``frame``: the network's input ``(1,3,h,w)`` in [0,1];
        ``output``: its stylized result ``(1,3,h,w)`` in [0,1]. Returns ``(1,3,h,w)`` float32 in [0,1]
        on the output's device."""
        if frame.shape[0] != 1 or output.shape[0] != 1:
            raise ValueError("Stabilizer takes one frame at a time")
        if not self._begun:
            self.begin(frame)
        # a network that skipped this frame has no prior on the next: the motion spans one frame only
        self._priors = {k: v for k, v in self._priors.items() if k in self._made}
        self._made, self._begun = set(), False
        if self.strength == 0.0:
            return output.float()
        out = _hwc(output)
        trust = self.motion.trust
        if trust is not None and self._prev_out is not None and self._prev_out.shape == out.shape:
            out = out + (MAX_BLEND * self.strength * trust) * (self.motion.carry(self._prev_out) - out)
        self._prev_out = out
        return _nchw(out, output.device)


def stream_state(strength: float, *, video: bool) -> Stabilizer | None:
    """The state a stream needs: a :class:`Stabilizer` of ``strength`` when stabilising or when a video
    network needs its priors (``video``), else None (no motion to estimate)."""
    return Stabilizer(strength) if strength > 0 or video else None


__all__ = ["MAX_BLEND", "Stabilizer", "stream_state"]

"""The state of one frame stream: its motion (once per frame), the stabiliser's history and each
video network's previous output.

A :class:`Stabilizer` goes with one stream (a video, a camera) and is given every frame in order at
the network's working resolution. For a frame::

    begin(frame)                   motion against the previous frame (fastnst.motion.Motion), once
    prior(key) / remember(key, y)  per video network: its previous output carried onto this frame and
                                   the eroded trust mask; then the output it made
    stabilizer(frame, out)         the blend below, and the end of the frame

Flicker reduction, at ``strength`` s::

    out = cur + s · HOLD · trust · agree · (carried previous output − cur)      (bicubic carry)

the previous output being the previous *stabilised* one. ``trust`` is the motion stage's (the input
matches along the flow); ``agree`` is 1 where the carried painting and the network's current one agree
in their low frequencies (a Gaussian blur of :data:`AGREE_SIGMA` px of their difference, mean over
RGB) and falls to 0 at :data:`AGREE_TOL`. At strength 1 a trusted stroke is carried nearly whole
(:data:`HOLD` of it: whatever the checks let through fades by that each frame), so a surface
keeps the texture it was first painted with and the texture travels with it instead of being redrawn
(Ruder et al. 2018 do this inside a network; here it is done outside it, for any style). Averaging two
textures, as a capped blend does, lowers their contrast: a flat region then reads as a faint emboss.
``agree`` is the painting's own check: where the flow carried the wrong thing (an object that has
moved on, a slow change of light) the colours part and the network's painting takes over again.
Strokes finer than the blur trip it little; strokes redrawn wholly on every frame trip it in part, and
are then still partly averaged (the check at 0.87–0.90, so 0.78–0.81 of the carried painting kept a
frame, in tests/test_stabilize.py's pan). A shot cut trusts nothing, so the history restarts there.
Calling it on a frame without :meth:`~Stabilizer.begin` begins it.

Measured 2026-12-04/05 (AMD EPYC Zen 5; `fastnst eval`, and `docs/experiments/steady_oracle.py`'s
clips with known motion, scored by the *true* flow): weights/README.md, "Strokes carried whole" and
"Where a painterly network still flickers".
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import torch

from .errors import FastNSTError
from .motion import DEFAULT_FLOW_PRESET, Motion

# The painting's own check (module docstring): the blur of the carried-minus-current difference, px at
# the working size, and the mean RGB difference at which nothing is carried; and HOLD, the most of the
# carried painting a frame keeps. Measured in session 14 with HOLD 1 (strength 1, a square leaving a
# textured scene as in tests/test_stabilize.py; starry_night_lite on bikes.mp4, E_warp × the floor):
# no check: a ghost of 0.15 that never fades, 1.04×; tolerance 0.1: 0.031 six frames on, 1.10×; 0.08:
# 0.025, 1.14×; 0.05: 0.020, 1.24×. A painterly network redraws its strokes enough to trip a tight
# check (sn_t1000 of weights/README.md on bikes: 3.97× with it, 2.90× without, the flow filled in).
# Letting a tenth fade each frame bounds a ghost without it, so the check can be loose. Measured
# 2026-12-05 (Zen 5; ghost, sn_t1000 on bikes × the floor): HOLD 1 / tol 0.08: 0.025, 3.97×; 0.9 /
# 0.08: 0.012, 4.21×; 0.9 / 0.15: 0.019, 3.50×; 0.95 / 0.15: 0.027, 3.38×; 0.85 / 0.25: 0.016, 3.34×;
# **0.9 / 0.25: 0.025, 3.19×** (starry_night_lite 1.08× → 0.97×); 0.9 / 0.4: 0.030, 3.02×; 0.9 / no
# check: 0.056, 2.79×. A wider blur (σ 4, 6) let a ghost through sooner than a looser tolerance did.
AGREE_SIGMA = 2.0
AGREE_TOL = 0.25
HOLD = 0.9


def _hwc(x: torch.Tensor) -> np.ndarray:
    """``(1,C,h,w)`` float tensor → ``(h,w,C)`` float32 numpy array (a view when possible)."""
    return np.ascontiguousarray(x[0].detach().float().permute(1, 2, 0).cpu().numpy())


def _own(x: np.ndarray) -> np.ndarray:
    """``x``, copied if it is a view of the caller's memory: what is kept for the next frame must not
    change with a buffer the caller reuses (a frame read into the same array each time; the numpy image
    of a ``(1,3,h,w)`` tensor made from an ``(h,w,3)`` array is a view of it)."""
    return x if x.flags.owndata else x.copy()


def _agreement(diff: np.ndarray) -> np.ndarray:
    """``(h,w,3)`` carried − current painting → ``(h,w,1)`` in [0,1]: 1 where their low frequencies agree."""
    import cv2

    low = cv2.GaussianBlur(diff, (0, 0), AGREE_SIGMA, borderType=cv2.BORDER_REFLECT)
    low = np.abs(low)
    scale = np.float32(1 / (3 * AGREE_TOL))  # the mean over RGB, in units of the tolerance
    return np.clip(1.0 - (low[..., 0] + low[..., 1] + low[..., 2]) * scale, 0.0, 1.0)[..., None]


def _nchw(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].to(device)


class Stabilizer:
    """The per-stream state; see the module docstring for the order of calls.

    ``strength`` in [0, 1]: the weight of the carried-over previous output where the motion is fully
    trusted and the paintings agree (times :data:`HOLD`); 0 = no blending: the stream then only serves
    video networks' priors. ``photometric_tol``, ``cut_fraction``, ``preset``: the
    :class:`fastnst.motion.Motion`'s. Works at whatever resolution it is given (the engine gives it the
    working resolution) with OpenCV on the CPU: a remap of a few small images costs far less than
    ``grid_sample`` there.
    """

    def __init__(self, strength: float = 1.0, *, photometric_tol: float = 0.08, cut_fraction: float = 0.3,
                 preset: str = DEFAULT_FLOW_PRESET) -> None:
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
        self.motion.update(_own(_hwc(frame)))
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
        self._priors[key] = _own(_hwc(output))
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
        out = _hwc(output)  # may be a view of the caller's tensor: never written in place
        trust, prev = self.motion.trust, self._prev_out
        if trust is not None and prev is not None and prev.shape == out.shape:
            diff = self.motion.carry(prev, sharp=True) - out
            out = out + ((self.strength * HOLD) * trust * _agreement(diff)) * diff
        self._prev_out = _own(out)
        return _nchw(np.clip(out, 0.0, 1.0), output.device)


def stream_state(strength: float, *, video: bool) -> Stabilizer | None:
    """The state a stream needs: a :class:`Stabilizer` of ``strength`` when stabilising or when a video
    network needs its priors (``video``), else None (no motion to estimate)."""
    return Stabilizer(strength) if strength > 0 or video else None


__all__ = ["AGREE_SIGMA", "AGREE_TOL", "HOLD", "Stabilizer", "stream_state"]

"""Flicker reduction at inference: blend the previous stylized frame, carried along the motion of the
*input* video, into the current one wherever that motion is trusted.

For each new frame ``t`` (at the network's working resolution):

1. optical flow between the input frames ``t`` and ``t−1`` in both directions (OpenCV DIS, its
   ultrafast preset: a few milliseconds at working resolution);
2. trust = forward-backward consistency (occlusions, motion boundaries; Sundaram et al. 2010) ×
   photometric consistency of the *input* (the warped previous input must match the current one —
   this is what stops ghost trails: where an object has left, the input no longer matches, so the old
   stylized object is not carried over) × inside the frame;
3. ``out = cur + strength · trust · (warp(prev_out) − cur)``;
4. a shot cut (under ``cut_fraction`` of the pixels trusted) resets the history.

The blend is recursive (``prev_out`` is the previous *blended* output), so static regions settle to
an exponential average while moving and newly visible regions follow the network at once.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import FastNSTError
from .flow import forward_backward_mask, warp


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


class Stabilizer:
    """Stateful per-stream stabiliser; call it once per frame, in order.

    ``strength`` in [0, 1]: the weight of the carried-over previous output where fully trusted
    (0 = off). ``photometric_tol``: input difference (in [0,1] units, mean over RGB) at which trust
    reaches 0. ``cut_fraction``: below this fraction of trusted pixels the frame counts as a cut.
    """

    def __init__(self, strength: float = 0.5, *, photometric_tol: float = 0.08, cut_fraction: float = 0.4,
                 preset: str = "ultrafast") -> None:
        import cv2

        if not 0.0 <= strength <= 1.0:
            raise FastNSTError(f"--stabilize must be between 0 and 1, got {strength}.")
        self.strength = float(strength)
        self.photometric_tol = photometric_tol
        self.cut_fraction = cut_fraction
        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST}
        self._dis = cv2.DISOpticalFlow_create(presets[preset])
        self.cuts = 0
        self.trusted: float = 0.0  # fraction of pixels trusted in the last frame (diagnostics)
        self.reset()

    def reset(self) -> None:
        """Forget the history (a new stream, or a cut)."""
        self._prev_gray: np.ndarray | None = None
        self._prev_in: torch.Tensor | None = None
        self._prev_out: torch.Tensor | None = None

    def _flow_pair(self, gray: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(current → previous, previous → current) flows as ``(1,2,h,w)`` float32 tensors."""
        back = self._dis.calc(gray, self._prev_gray, None)
        fwd = self._dis.calc(self._prev_gray, gray, None)
        return (torch.from_numpy(back).permute(2, 0, 1)[None], torch.from_numpy(fwd).permute(2, 0, 1)[None])

    def trust(self, frame: torch.Tensor, gray: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """For the current input ``frame`` ``(1,3,h,w)`` in [0,1] and its uint8 luma: the previous output
        warped onto it and the per-pixel trust ``(1,1,h,w)`` in [0,1]."""
        back, fwd = self._flow_pair(gray)
        back, fwd = back.to(frame.device), fwd.to(frame.device)
        fb = forward_backward_mask(back, fwd)
        prev_in, inside = warp(self._prev_in, back)
        mismatch = (prev_in - frame.float()).abs().mean(1, keepdim=True)
        photometric = (1.0 - mismatch / self.photometric_tol).clamp_(0, 1)
        prev_out, _ = warp(self._prev_out, back)
        return prev_out, fb * inside * photometric

    @torch.no_grad()
    def __call__(self, frame: torch.Tensor, output: torch.Tensor, frame_rgb: np.ndarray | None = None
                 ) -> torch.Tensor:
        """Stabilise one frame. ``frame``: the network's input ``(1,3,h,w)`` in [0,1]; ``output``: its
        stylized result ``(1,3,h,w)`` in [0,1]; ``frame_rgb``: the same input as ``(h,w,3)`` uint8
        if the caller has it (saves a conversion). Returns ``(1,3,h,w)`` float32 in [0,1]."""
        if frame.shape[0] != 1 or output.shape[0] != 1:
            raise ValueError("Stabilizer takes one frame at a time")
        out = output.float()
        if self.strength == 0.0:
            return out
        if frame_rgb is None:
            frame_rgb = (frame[0].float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy())
        gray = _gray(frame_rgb)
        if self._prev_gray is not None and self._prev_gray.shape == gray.shape:
            carried, trust = self.trust(frame, gray)
            self.trusted = float(trust.mean())
            if self.trusted >= self.cut_fraction:
                out = torch.lerp(out, carried, trust * self.strength)
            else:
                self.cuts += 1
        self._prev_gray, self._prev_in, self._prev_out = gray, frame.float(), out
        return out


__all__ = ["Stabilizer"]

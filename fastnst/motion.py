"""The input's motion at working resolution, estimated once per frame and read by every stage that
carries something over from the previous frame: the stabiliser and each video network's prior.

For each new frame ``t`` (float RGB ``(h,w,3)`` in [0,1]), on the frame shrunk to :data:`DEFAULT_SCALE`
(the flow and trust are then brought back to the frame's size):

1. optical flow between the input frames ``t`` and ``t−1`` in both directions (OpenCV DIS: its
   ultrafast preset, its coarse-to-fine search taken down to half the size instead of a quarter, so
   a moving object's motion does not bleed onto the still ground around it; see :data:`FLOW_PRESETS`);
2. trust = forward-backward consistency (occlusions, motion boundaries; Sundaram et al. 2010) ×
   photometric consistency of the *input* (the warped previous input must match the current one:
   where an object has left, the input no longer matches, so nothing of it is carried over) ×
   inside the frame; where the two directions disagree amid consistent pixels (a surface with no
   texture to pin its flow down), the flow is filled in from them and the photometric check alone
   decides (:data:`FILL_SIGMA`);
3. a shot cut (under ``cut_fraction`` of the pixels trusted) trusts nothing.

:meth:`Motion.carry` moves any image of frame ``t−1`` (a previous output) onto frame ``t``.
:meth:`Motion.prior_mask` is the mask a video network is given: 1 where the trust is above 0 (flow
consistent, inside, input mismatch under ``photometric_tol``), its speckles filled (a 5-px closing: DIS
on a noisy frame leaves pixel-sized holes, and each would be repainted), then eroded by an
``erode``-px minimum filter (Ruder et al. 2018), so edges, where a flow's errors sit, are painted
afresh. Binary, as the masks the network is trained with. Measured on bikes.mp4 with a video
network (working size 213): an erosion of 7 px (Ruder's, at 4× our resolution) left 66 % of the
pixels trusted and doubled the flicker against 3 px; no erosion halved it again.
"""

from __future__ import annotations

import os
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# DIS needs at least 12 px a side; frames that small have no motion worth following.
MIN_SIDE = 16
# The flow and its checks run on the frame shrunk by this factor, never to under MIN_FLOW_SIDE px a
# side (DIS's 8-px patches need room). At the working size they cost as much as the lite network.
# Measured on bikes.mp4 at 213×501, Zen 5, 2 cores (per frame; E_warp of starry_night_lite with the
# stabiliser, × the floor): scale 1: 6.9 ms, 1.59×; 0.67: 2.9 ms, 1.67×; 0.5: 2.0 ms, 1.74×; whole
# `fastnst stylize bikes.mp4` 5.1 / 4.2 / 4.0 s. vtest.avi: 0.27× / 0.28× / 0.29×.
# Since the stabiliser carries strokes whole (2026-12-04, session 14) the flow decides how well they
# travel: on the pan of docs/experiments/steady_oracle.py, E_warp of starry_night_lite by the *true*
# flow was 0.75× at 0.67 with "fine", 0.58× at 1 with "fine_refined", 0.56× at 1 with DIS medium (5.4
# ms a flow against 3.2), its oracle 0.39×; the blend of whole images at 0.67 scored 1.11×. Hence 1.
DEFAULT_SCALE = 1.0
MIN_FLOW_SIDE = 96
# DIS settings by name: (OpenCV preset, variational refinement iterations, finest scale; None = the
# preset's own). DEFAULT_FLOW_PRESET is the default.
# - The finest scale: DIS's ultrafast preset stops its coarse-to-fine search at a quarter of the size
#   it is given (finest scale 2) and fills the rest in from there, so a moving object's motion bleeds
#   onto the still, faintly textured ground around it. On bikes.mp4's first shot (a bus over a still
#   road, 213×501, flow at 0.67 of it) "refined" moved the still road 0.53 px median, 2.6 px at the
#   90th percentile, all of it trusted: a video network was handed its previous strokes dragged a few
#   px a frame, and repainted them. Stopping at half the size (finest scale 1): 0.34 / 0.97 px without
#   refinement, 0.22 / 0.83 px with 3 iterations; the whole stage 3.0 ms a frame against "refined"'s
#   3.1 ms, and 4.9 ms with the 3 iterations (Zen 5, 2 cores).
# - Refinement mattered at finest scale 2: without it a walking person's motion smeared onto the ground
#   beside them (vtest.avi, a video network's median warped error: ultrafast 2.7e-4, refined 6.8e-5).
# Measured 2026-12-04 (fastnst eval, 60 frames, stabilised, E_warp × the floor on bikes / vtest /
# bigbuckbunny; tree unchanged): starry_night_lite 1.67 / 0.28 / 0.54 with "refined", 1.58 / 0.27 / 0.51
# with "fine", 1.53 / 0.26 / 0.50 with "fine_refined"; a video network (run T of weights/README.md) 7.03 /
# 0.50 / 0.98, 4.82 / 0.47 / 0.87, 4.30 / 0.44 / 0.84. "fine" is free; "fine_refined" buys the last few
# % for 1.9 ms a frame. Once the stabiliser carried strokes whole it bought more (the scale's note
# above), and it became the default (session 14).
FLOW_PRESETS = {"ultrafast": ("ULTRAFAST", None, None), "refined": ("ULTRAFAST", 5, None),
                "fine": ("ULTRAFAST", 0, 1), "fine_refined": ("ULTRAFAST", 3, 1),
                "fast": ("FAST", None, None), "medium": ("MEDIUM", None, None)}
DEFAULT_FLOW_PRESET = "fine_refined"
# Where the forward-backward check fails on a surface with no texture of its own (a bus roof, a road:
# DIS's two directions disagree where nothing pins the flow down), the flow is filled in from the
# consistent pixels around, within a Gaussian of FILL_SIGMA px with at least FILL_SUPPORT of its weight
# consistent, and the photometric check alone decides whether it is trusted. On bikes.mp4 those pixels
# were 5 % of the frame and 24 % of a painterly network's flicker (sn_t1000 of weights/README.md,
# stabilised): painted afresh on every frame. Measured 2026-12-05 (Zen 5; E_warp × the floor, fastnst
# eval, 60 frames, stabilised): starry_night_lite bikes 1.14× → 1.08×, tree 0.11× → 0.11×, vtest 0.20×
# → 0.19×, bigbuckbunny 0.34× → 0.33×; sn_t1000 4.27× → 3.98×, 0.39× → 0.38×, 0.61× → 0.61×, 1.20× →
# 1.17×; by the *true* flow of docs/experiments/steady_oracle.py's roof sliding over a pan (a flat
# surface over a textured one), lite 2.39× → 2.10×, sn_t1000 8.14× → 7.54×; the ghost test unchanged.
# FILL_SIGMA 12: sn_t1000 on bikes 3.93×.
FILL_SIGMA = 6.0
FILL_SUPPORT = 0.3


def _dis(preset: str):
    """An OpenCV DIS optical flow object for a key of :data:`FLOW_PRESETS`."""
    import cv2

    base, refine, finest = FLOW_PRESETS[preset]
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{base}"))
    if refine is not None:
        dis.setVariationalRefinementIterations(refine)
    if finest is not None:
        dis.setFinestScale(finest)
    return dis


def _remap(image: np.ndarray, mx: np.ndarray, my: np.ndarray, *, sharp: bool = False) -> np.ndarray:
    """``image`` ``(h,w,C)`` sampled at ``(mx, my)`` (bilinear, or bicubic when ``sharp``; border
    replicated), ``(h',w',C)``."""
    import cv2

    interp = cv2.INTER_CUBIC if sharp else cv2.INTER_LINEAR
    out = cv2.remap(image, mx, my, interp, borderMode=cv2.BORDER_REPLICATE)
    return out if out.ndim == image.ndim else out[..., None]


def _sum_sq(v: np.ndarray) -> np.ndarray:
    """``(h,w,2)`` → ``(h,w)`` squared length. Written out: numpy's reduction over a trailing axis of 2
    or 3 cost more than both DIS flows together (5.7 ms a frame at 213×501)."""
    return v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]


def _complete(back: np.ndarray, consistent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the forward-backward check fails, the backward flow ``(h,w,2)`` (filled in place) from the
    consistent pixels around: a normalised Gaussian convolution of :data:`FILL_SIGMA` px, run at a
    quarter of the size (a fill is smooth; on bikes.mp4 at 213×501 it costs 1.4 ms a frame, 4.8 at
    full size). Returns it and ``(h,w)`` bool: consistent, or with at least :data:`FILL_SUPPORT` of
    that neighbourhood consistent."""
    import cv2

    h, w = consistent.shape
    small = (max(1, w // 4), max(1, h // 4))
    c = consistent.astype(np.float32)
    support = cv2.resize(c, small, interpolation=cv2.INTER_AREA)
    spread = cv2.resize(back * c[..., None], small, interpolation=cv2.INTER_AREA)
    support = cv2.GaussianBlur(support, (0, 0), FILL_SIGMA / 4, borderType=cv2.BORDER_REPLICATE)
    spread = cv2.GaussianBlur(spread, (0, 0), FILL_SIGMA / 4, borderType=cv2.BORDER_REPLICATE)
    filled = cv2.resize(spread / np.maximum(support, 1e-6)[..., None], (w, h), interpolation=cv2.INTER_LINEAR)
    support = cv2.resize(support, (w, h), interpolation=cv2.INTER_LINEAR)
    np.copyto(back, filled, where=~consistent[..., None])
    return back, consistent | (support >= FILL_SUPPORT)


class Motion:
    """Flow and trust between consecutive frames of one stream; call :meth:`update` once per frame.

    After an update, :attr:`trust` is ``(h,w,1)`` float32 in [0,1], or None when nothing can be carried
    over (a first frame, a cut, a change of size, a frame under 16 px a side). ``preset``: a key of
    :data:`FLOW_PRESETS`. ``photometric_tol``:
    input difference (in [0,1] units, mean over RGB) at which trust reaches 0. ``cut_fraction``: below
    this fraction of trusted pixels the frame counts as a cut (:attr:`cuts` counts them). ``scale``: the
    flow and its checks run on the frame shrunk by this factor (never below :data:`MIN_FLOW_SIDE` px a
    side), and the flow and trust are brought back to the frame's size (:data:`DEFAULT_SCALE`).
    """

    def __init__(self, *, photometric_tol: float = 0.08, cut_fraction: float = 0.3,
                 preset: str = DEFAULT_FLOW_PRESET, erode: int = 3, scale: float | None = None) -> None:
        # one DIS per direction: the two flows of a frame run at once (_trust)
        self._dis, self._dis_fwd = _dis(preset), _dis(preset)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self.photometric_tol, self.cut_fraction, self.erode = photometric_tol, cut_fraction, erode
        self.scale = DEFAULT_SCALE if scale is None else scale
        self.cuts = 0
        self.trusted = 0.0  # fraction of pixels trusted in the last frame (diagnostics)
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (a new stream)."""
        self._prev_gray: np.ndarray | None = None
        self._prev_in: np.ndarray | None = None
        self._prev_shape: tuple[int, ...] | None = None
        self.trust: np.ndarray | None = None
        self._map: tuple[np.ndarray, np.ndarray] | None = None
        self._eroded: np.ndarray | None = None

    def _pixel_grid(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel x and y coordinates ``(h,w)`` float32, made once per frame size (the hot path)."""
        if (h, w) not in self._grids:
            if len(self._grids) > 4:  # sizes change rarely: keep the last few
                self._grids.clear()
            self._grids[h, w] = tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
        return self._grids[h, w]

    def flow_shape(self, h: int, w: int) -> tuple[int, int]:
        """The size the flow of an ``h × w`` frame is estimated at."""
        s = min(1.0, max(self.scale, MIN_FLOW_SIDE / max(1, min(h, w))))
        return (h, w) if s >= 1.0 else (max(1, round(h * s)), max(1, round(w * s)))

    def update(self, frame: np.ndarray) -> None:
        """The next input frame ``(h,w,3)`` float32 in [0,1]: flow and trust against the previous one.
        At the flow's size the frame itself is kept, not copied, as the next update's reference: the
        caller must not write into it afterwards (:class:`fastnst.stabilize.Stabilizer` passes its own
        copy)."""
        import cv2

        h, w = frame.shape[:2]
        fh, fw = self.flow_shape(h, w)
        small = frame if (fh, fw) == (h, w) else cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor((small * 255.0).round().clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
        self.trust, self._map, self._eroded = None, None, None
        if self._prev_shape == frame.shape and min(gray.shape) >= MIN_SIDE:
            trust, back = self._trust(small, gray)
            self.trusted = float(trust.mean())
            if self.trusted >= self.cut_fraction:
                self.trust, self._map = self._to_frame(trust, back, h, w)
            else:
                self.cuts += 1
        self._prev_gray, self._prev_in, self._prev_shape = gray, small, frame.shape

    def _trust(self, frame: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(trust (h,w,1), backward flow (h,w,2))`` at the flow's size."""
        # The forward flow in a second thread while this one computes the backward flow: OpenCV releases
        # the GIL in DIS, which keeps two cores busy only in part. Both flows, bikes.mp4 at 213×501 on
        # the 2-core Zen 5: 4.4 ms at once against 6.4 ms one after the other; the same flows.
        # previous → current there, current → previous here
        fwd_job = self._worker().submit(self._dis_fwd.calc, self._prev_gray, gray, None)
        back = self._dis.calc(gray, self._prev_gray, None)
        fwd = fwd_job.result()
        h, w = gray.shape
        gx, gy = self._pixel_grid(h, w)
        mx, my = gx + back[..., 0], gy + back[..., 1]
        # Forward-backward check (Sundaram et al. 2010): the forward flow seen from here must undo the
        # backward flow, else the pixel was occluded in one of the frames, or the flow is unknown there.
        fwd_here = _remap(fwd, mx, my)
        err = _sum_sq(back + fwd_here)
        consistent = err <= 0.01 * (_sum_sq(back) + _sum_sq(fwd_here)) + 0.5
        back, supported = _complete(back, consistent)
        mx, my = gx + back[..., 0], gy + back[..., 1]
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        # Photometric check of the *input*: where it no longer matches, nothing is carried over. It is
        # all that vouches for a completed flow: an area uncovered by a moving object does not match.
        diff = np.abs(_remap(self._prev_in, mx, my) - frame)
        mismatch = (diff[..., 0] + diff[..., 1] + diff[..., 2]) * np.float32(1 / 3)
        photometric = np.clip(1.0 - mismatch / self.photometric_tol, 0.0, 1.0)
        return ((supported & inside) * photometric)[..., None].astype(np.float32), back

    def _worker(self) -> ThreadPoolExecutor:
        """The stream's one flow thread, started on first use in this process (a forked training
        worker starts its own) and stopped when the Motion is collected."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool, self._pool_pid = ThreadPoolExecutor(1, thread_name_prefix="fastnst-flow"), os.getpid()
            weakref.finalize(self, self._pool.shutdown, wait=False)
        return self._pool

    def _to_frame(self, trust: np.ndarray, back: np.ndarray, h: int, w: int
                  ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """The trust ``(h,w,1)`` and the sampling map of :meth:`carry` at the frame's size."""
        import cv2

        fh, fw = trust.shape[:2]
        if (fh, fw) != (h, w):
            trust = cv2.resize(trust, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
            back = cv2.resize(back, (w, h), interpolation=cv2.INTER_LINEAR)
            back[..., 0] *= w / fw
            back[..., 1] *= h / fh
        gx, gy = self._pixel_grid(h, w)
        return trust, (gx + back[..., 0], gy + back[..., 1])

    def carry(self, image: np.ndarray, *, sharp: bool = False) -> np.ndarray:
        """An ``(h,w,C)`` float32 image of the previous frame moved onto the current one (bilinear, or
        bicubic when ``sharp``: what is carried frame after frame keeps its fine detail; border
        replicated; only meaningful where :attr:`trust` is high). Needs :attr:`trust` not None."""
        if self._map is None:
            raise RuntimeError("no motion to carry along: check Motion.trust first")
        return _remap(image, *self._map, sharp=sharp)

    def prior_mask(self) -> np.ndarray | None:
        """The video networks' mask ``(h,w,1)`` (the module docstring; the frame's border does not erode),
        or None when nothing is trusted."""
        import cv2

        if self.trust is None:
            return None
        if self._eroded is None:
            trusted = (self.trust[..., 0] > 0).astype(np.float32)
            trusted = cv2.morphologyEx(trusted, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8),
                                       borderType=cv2.BORDER_REPLICATE)
            kernel = np.ones((self.erode, self.erode), np.uint8)
            self._eroded = cv2.erode(trusted, kernel, borderType=cv2.BORDER_REPLICATE)[..., None]
        return self._eroded


__all__ = ["DEFAULT_FLOW_PRESET", "DEFAULT_SCALE", "FILL_SIGMA", "FILL_SUPPORT", "FLOW_PRESETS",
           "MIN_FLOW_SIDE", "MIN_SIDE", "Motion"]

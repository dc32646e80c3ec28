"""Experiment (issue 22; not part of the product): a network fed a noise field carried along the
scene's motion, instead of its own previous output.

The idea (after the advected noise guides of Texler et al. 2020, "Interactive video stylization using
few-shot patch-based training"): give the network a texture source that moves with the surface but,
unlike a carried previous output, is never resampled onto itself. Each stream keeps a field of
texture coordinates ``(h,w,2)``; every frame it is carried along the motion stage's flow (a smooth
field survives bilinear resampling) and the noise is looked up afresh from a fixed band-limited
texture (3 channels, Gaussian-filtered white noise). Where the motion is not trusted the coordinates
restart at the pixel's own position.

The network is a ``video_plain`` network (7 input channels, fine-tuned from its per-frame twin with
the new inputs at zero): channels 3–5 take the noise, channel 6 is 1. Training (the trainer's
synthetic pairs with their known flow): both frames get the perceptual loss, the second the two-frame
temporal term, and the noise of frame 2 is frame 1's carried by the known flow, or (``NOISE_EST=1``)
by the inference motion stage run on the pair, as at inference, plus a smooth random error of
``NOISE_JITTER`` px. Inference patches :meth:`fastnst.stabilize.Stabilizer.prior` to hand the noise.

    python docs/experiments/carried_noise.py train --recipe train/recipes/experimental/starry_night_video.toml \\
        --out-dir R --output R/R.safetensors [--steps 1200]
    python docs/experiments/carried_noise.py cli eval CLIP --model R/R.safetensors --style STYLE --max-frames 60
    python docs/experiments/carried_noise.py cli stylize CLIP --style R/R.safetensors -o OUT.mp4

Settings (environment, the same for training and inference of one network):
  NOISE_SIGMAS=1,2,4   the texture's three Gaussian widths, px
  NOISE_OFF=1          a constant 0.5 instead of the noise (the control)
  NOISE_EST=1, NOISE_JITTER=J   training: carried by the estimated motion, plus a J-px error
  NOISE_STATIC=K       inference: a pixel counts as still, and its coordinates stay, where the frame
                       difference without motion (K×K box mean) is within NOISE_EPS (0.003) of the
                       one with it and the flow is under NOISE_SLOW px
  NOISE_ALWAYS=1       inference: carry everywhere, not only where trusted (cuts still restart)
  NOISE_FIXED=1        inference: never carry (the coordinates stay the pixel's own)
  NOISE_FADE=K         the noise's amplitude grows over K frames from where its coordinates restarted
                       (0 there: an untrusted pixel gets no noise; training draws frame 1's age)
  MOTION_PRESET=P, MOTION_SCALE=S   inference: the motion stage's DIS preset and scale
Results: weights/README.md, "A noise carried with the scene" (runs N0–N5).
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

TEXTURE = 1024  # the noise texture's side, px
OFFSET = 256.0  # where a stream's fresh coordinates start in it


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def make_texture(seed: int = 0) -> torch.Tensor:
    """``(1,3,T,T)`` in [0,1]: white noise filtered by a Gaussian of each width, mean 0.5, sd 0.2."""
    g = torch.Generator().manual_seed(seed)
    chans = []
    for sigma in (float(v) for v in env("NOISE_SIGMAS", "1,2,4").split(",")):
        n = torch.randn(1, 1, TEXTURE, TEXTURE, generator=g)
        r = min(math.ceil(3 * sigma), TEXTURE // 2 - 1)
        k = torch.exp(-torch.arange(-r, r + 1).float() ** 2 / (2 * sigma * sigma))
        k /= k.sum()
        n = F.pad(n, (r, r, r, r), mode="circular")
        n = F.conv2d(F.conv2d(n, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
        chans.append((0.5 + 0.2 * (n - n.mean()) / n.std()).clamp(0, 1))
    return torch.cat(chans, 1)


NOISE = make_texture()


def lookup(coords: torch.Tensor) -> torch.Tensor:
    """The noise at texture coordinates ``(B,2,H,W)`` px → ``(B,3,H,W)`` (bilinear)."""
    b, _, h, w = coords.shape
    if env("NOISE_OFF"):
        return coords.new_full((b, 3, h, w), 0.5)
    grid = torch.stack([c * (2 / (TEXTURE - 1)) - 1 for c in (coords[:, 0], coords[:, 1])], -1)
    return F.grid_sample(NOISE.to(coords).expand(b, -1, -1, -1), grid, mode="bilinear",
                         padding_mode="reflection", align_corners=True)


def estimated_carry(trainer, coords, x1, x2):
    """``(frame 1's coordinates carried onto frame 2 by the inference motion stage run on the pair, where
    they restart)``: the trainer's own :class:`~fastnst.training.loop._EstimatedMotion`, which carries
    images in [0,1], so the coordinates travel divided by the texture's side (a power of 2: exact)."""
    from fastnst.training.loop import _EstimatedMotion

    motion = trainer.estimated_motion or _EstimatedMotion(trainer.cfg.prior_erode)
    motion.start(x1)
    carried, mask = motion.carry(x2, coords / TEXTURE)
    restarted = mask.to(coords.device) <= 0.5
    return torch.where(restarted, coords, carried.to(coords) * TEXTURE), restarted


def patch_training() -> None:
    from fastnst import losses
    from fastnst.flow import _base_grid, synthetic_flow, warp
    from fastnst.training import loop
    from fastnst.training.data import camera

    def terms(self, batch, x1):
        cfg, dev = self.cfg, self.device
        b, h, w = x1.shape[0], x1.shape[-2], x1.shape[-1]
        x2, flow, mask = (batch[k].to(dev) for k in ("frame2", "flow", "mask"))
        g = torch.Generator().manual_seed((cfg.seed * 1_000_003 + self.at_step) * 64)
        x1 = camera(x1, cfg.frame_brightness, cfg.frame_noise, g).to(dev)
        start = (64 + torch.rand(b, 2, 1, 1, generator=g) * (TEXTURE - 128 - max(h, w))).to(dev)
        c1 = _base_grid(b, h, w, dev, torch.float32) + start
        if env("NOISE_EST"):
            c2, restarted = estimated_carry(self, c1, x1, x2)
            jitter = float(env("NOISE_JITTER", "0"))
            if jitter > 0:
                c2 = c2 + synthetic_flow(b, h, w, max_shift=jitter, max_zoom=0.0, max_rotate_deg=0.0,
                                         local_amplitude=jitter, generator=g).to(dev)
        else:
            c2 = torch.where(mask > 0.5, warp(c1, flow)[0], c1)
            restarted = mask <= 0.5
        ones = torch.ones(b, 1, h, w, device=dev)
        n1, n2 = lookup(c1), lookup(c2)
        fade = int(env("NOISE_FADE", "0"))
        if fade:  # the noise's amplitude grows with the pixel's age; none where the carry restarted
            a1 = (torch.randint(0, 2 * fade, (b, 1, 1, 1), generator=g).float() / fade).clamp(max=1).to(dev)
            a2 = torch.where(restarted, 0.0, (a1 + 1 / fade).clamp(max=1))
            n1, n2 = 0.5 + a1 * (n1 - 0.5), 0.5 + a2 * (n2 - 0.5)
        y = self.model(torch.cat([torch.cat([x1, n1, ones], 1), torch.cat([x2, n2, ones], 1)]))
        l_content, l_style, l_tv = self.loss(y, self.loss.content_targets(torch.cat([x1, x2])))
        l_temporal = cfg.temporal_weight * losses.temporal_loss(y[b:], warp(y[:b], flow)[0], mask)
        return [l_content, l_style, l_tv, l_temporal, l_content + l_style + l_tv + l_temporal]

    loop._Trainer._video_terms = terms


def still(stab, frame: np.ndarray, prev: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(h,w,1)`` bool: pixels better explained by no motion than by the flow, and slow (NOISE_STATIC)."""
    import cv2

    k = int(env("NOISE_STATIC"))
    d0 = cv2.blur(np.abs(frame - prev).mean(-1), (k, k))
    d1 = cv2.blur(np.abs(frame - stab.motion.carry(prev)).mean(-1), (k, k))
    gx, gy = stab.motion._pixel_grid(h, w)
    mx, my = stab.motion._map
    slow = (mx - gx) ** 2 + (my - gy) ** 2 < float(env("NOISE_SLOW", "1e9")) ** 2
    return ((d0 <= d1 + float(env("NOISE_EPS", "0.003"))) & slow)[..., None]


def patch_inference() -> None:
    from fastnst import motion, stabilize

    if env("MOTION_PRESET"):
        init = motion.Motion.__init__

        def patched(self, **kw):
            init(self, **{**kw, "preset": env("MOTION_PRESET"), "scale": float(env("MOTION_SCALE", "0.67"))})
        motion.Motion.__init__ = patched

    def prior(self, key, like):
        h, w = like.shape[-2:]
        frame = like[0].permute(1, 2, 0).float().cpu().numpy()
        state = self.__dict__.setdefault("_noise", {})
        coords, prev = state.get(key, (None, None))  # coords (h,w,3): x, y and the age in frames
        gx, gy = self.motion._pixel_grid(h, w)
        fresh = np.stack([gx + OFFSET, gy + OFFSET, np.zeros_like(gx)], -1)
        mask = self.motion.prior_mask()
        if coords is None or mask is None or coords.shape[:2] != (h, w) or env("NOISE_FIXED"):
            coords = fresh
        else:
            carried = self.motion.carry(coords)
            if env("NOISE_STATIC"):
                carried = np.where(still(self, frame, prev, h, w), coords, carried)
            carried[..., 2] += 1
            keep = True if env("NOISE_ALWAYS") else mask > 0.5
            coords = np.where(keep, carried, fresh).astype(np.float32)
        state[key] = (coords, frame)
        noise = lookup(torch.from_numpy(coords[..., :2]).permute(2, 0, 1)[None].contiguous())
        fade = int(env("NOISE_FADE", "0"))
        if fade:
            amplitude = torch.from_numpy(np.minimum(coords[..., 2] / fade, 1.0))[None, None]
            noise = 0.5 + amplitude * (noise - 0.5)
        return noise.to(like.device), torch.ones(1, 1, h, w, device=like.device)

    stabilize.Stabilizer.prior = prior


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "train":
        patch_training()
        from fastnst.training.loop import main
    else:
        patch_inference()
        from fastnst.cli import main
    sys.exit(main(args))

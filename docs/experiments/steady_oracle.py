"""Experiment (issue 22; not part of the product): what would a *perfectly steady* painting score on
``fastnst eval``'s E_warp, and how far is each network from it when the true motion is known?

``fastnst eval`` scores flicker with a flow estimated on the input (DIS medium). Where that flow is
wrong, or where the warp that applies it blurs, a texture that moves exactly with the scene is
scored as flicker all the same, and more so the more contrast the texture has. This script measures
that part on a synthetic clip whose motion is known exactly:

* a still frame of bikes.mp4 (the canvas) seen through a smaller window that pans by a sub-pixel
  step each frame (Lanczos resampling, as a camera would see it), and, with ``--sprite``, a
  patch of another frame (the bus roof: flat, with a vent) sliding across it by whole pixels, so a
  flat surface moves over a textured one and uncovers it;
* the **oracle** of a network: the canvas and the sprite's source frame stylized *once* and carried
  through the same motion, so its texture moves with the scene exactly (nothing in it flickers);
* each network run on every frame as the product runs it (``model_stylizer``, stabilised or not);
* a carried-noise network (``docs/experiments/carried_noise.py``) fed noise carried by the *true*
  motion (the best any motion estimate could do) and by the product's motion stage.

Each output gets style and content distance and E_warp twice: with the eval's estimated flow and
mask (× the input's floor under the same flow, as ``fastnst eval`` reports) and with the true flow
and the true occlusion mask (× the input's floor under that flow).

    python docs/experiments/steady_oracle.py VIDEO STYLE_IMAGE OUT_JSON [--sprite] [--frames 40]
        [--model NAME_OR_PATH ...] [--noise-model PATH ...] [--pan X,Y] [--work-scale S]
        [--phases K] [--held-norm]

``--pan 8,0 --work-scale 1`` moves the scene by whole steps of lite's stride grid (8 px), where a
convolutional network's output can move exactly with it; ``--held-norm`` holds every instance norm's
statistics from a stream's first frame; ``--phases K`` runs every network K × K times on its 8 px grid
shifted by multiples of 8/K and takes the mean (:func:`phased`, around
:func:`fastnst.models.phase_mean`, which the trainer's ``--teacher-phases`` uses).

    python docs/experiments/steady_oracle.py cli K fastnst-args…

runs a fastnst command (``eval CLIP --model M …``) with every network so averaged; with
``CARRIED_NOISE=1`` (and carried_noise.py's settings) a carried-noise network. Results:
weights/README.md, "The stride grid, and what the eval can see".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from fastnst.flow import flow_to_tensor
from fastnst.metrics import evaluate_frames, warp_error
from fastnst.models import phase_mean
from fastnst.stylizer import Stylizer, work_shape
from fastnst.video import read_frames

VIEW = (218, 512)  # (h, w) of the window that pans over the 272 x 640 canvas
PAN = [1.37, 0.23]  # the window's motion, px a frame (x, y): sub-pixel, so every frame is resampled (--pan)
PAN_START = (30.0, 20.0)
SPRITE_BOX = (200, 460, 30, 190)  # x0, x1, y0, y1 of the bus roof in bikes.mp4's frame 20
SPRITE_STEP = 8  # px a frame, to the right: whole pixels, so the sprite itself is never resampled
PHASES = [1]  # --phases
SPRITE_TEXTURE = 600.0  # where the sprite's noise coordinates start in the noise texture


@dataclass
class Clip:
    frames: list[np.ndarray]  # (h,w,3) uint8 RGB
    flows: list[np.ndarray]  # (h,w,2) float32, frame t -> t+1, prev(p) ~ next(p + flow(p))
    masks: list[np.ndarray]  # (h,w) bool: p's surface is still visible at p + flow(p) in frame t+1
    sprite_x: list[int]  # the sprite's left edge in each frame (None: no sprite)


def pan_offset(t: int) -> tuple[float, float]:
    return PAN_START[0] + PAN[0] * t, PAN_START[1] + PAN[1] * t


def render_layer(canvas: np.ndarray, t: int) -> np.ndarray:
    """The window of frame ``t`` over ``canvas`` (view pixel p shows canvas point p + offset)."""
    ox, oy = pan_offset(t)
    m = np.float32([[1, 0, ox], [0, 1, oy]])
    return cv2.warpAffine(canvas, m, (VIEW[1], VIEW[0]), flags=cv2.INTER_LANCZOS4 | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def paste(frame: np.ndarray, sprite: np.ndarray, x: int) -> np.ndarray:
    out = frame.copy()
    h, w = sprite.shape[:2]
    y0 = (VIEW[0] - h) // 2
    a, b = max(x, 0), min(x + w, VIEW[1])
    if b > a:
        out[y0:y0 + h, a:b] = sprite[:, a - x:b - x]
    return out


def sprite_region(x: int, sprite_hw: tuple[int, int]) -> np.ndarray:
    region = np.zeros(VIEW, bool)
    h, w = sprite_hw
    y0 = (VIEW[0] - h) // 2
    region[y0:y0 + h, max(x, 0):max(min(x + w, VIEW[1]), 0)] = True
    return region


def truth(t: int, sprite_x: list[int] | None, sprite_hw) -> tuple[np.ndarray, np.ndarray]:
    """The true flow t -> t+1 and the mask of pixels whose surface stays visible inside the frame."""
    h, w = VIEW
    flow = np.empty((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = -PAN[0], -PAN[1]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    if sprite_x is not None:
        now = sprite_region(sprite_x[t], sprite_hw)
        flow[now] = (SPRITE_STEP, 0.0)
    tx, ty = gx + flow[..., 0], gy + flow[..., 1]
    mask = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    if sprite_x is not None:
        nxt = sprite_region(sprite_x[t + 1], sprite_hw)
        # a background pixel whose destination the sprite covers next frame is occluded
        dest = nxt[np.clip(np.round(ty), 0, h - 1).astype(int), np.clip(np.round(tx), 0, w - 1).astype(int)]
        mask &= now | ~dest
    return flow, mask


def make_clip(canvas: np.ndarray, sprite: np.ndarray | None, n: int) -> Clip:
    xs = [-sprite.shape[1] // 2 + SPRITE_STEP * t for t in range(n)] if sprite is not None else None
    frames = [render_layer(canvas, t) for t in range(n)]
    if sprite is not None:
        frames = [paste(f, sprite, x) for f, x in zip(frames, xs)]
    hw = sprite.shape[:2] if sprite is not None else None
    pairs = [truth(t, xs, hw) for t in range(n - 1)]
    return Clip(frames, [p[0] for p in pairs], [p[1] for p in pairs], xs)


def oracle(clip: Clip, styled_canvas: np.ndarray, styled_sprite: np.ndarray | None) -> list[np.ndarray]:
    """The stylized canvas (and sprite) carried through the clip's own motion: steady by construction."""
    out = [render_layer(styled_canvas, t) for t in range(len(clip.frames))]
    if styled_sprite is not None:
        out = [paste(f, styled_sprite, x) for f, x in zip(out, clip.sprite_x)]
    return out


# -- a carried-noise network, fed noise that moves with the true motion -------------------------------

def noise_coords(st: Stylizer, full_hw: tuple[int, int], place) -> torch.Tensor:
    """``(1,2,h,w)`` texture coordinates at the working size of a ``full_hw`` frame; ``place`` maps a
    frame pixel's (x, y) arrays to its surface's coordinates in frame pixels."""
    h, w = work_shape(*full_hw, work_size=st.work_size, scale=st.scale)
    sy, sx = full_hw[0] / h, full_hw[1] / w
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    fx, fy = (gx + 0.5) * sx - 0.5, (gy + 0.5) * sy - 0.5  # the frame point a working pixel samples
    cx, cy = place(fx, fy)
    return torch.from_numpy(np.stack([cx / sx, cy / sy]))[None].float()  # texture px = working px


def noise_frame(st: Stylizer, frame: np.ndarray, coords: torch.Tensor, cn) -> np.ndarray:
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        full, work = st.prepare(x)
        noise = cn.lookup(coords)
        y = st.finish(st.network(work, (noise, torch.ones_like(noise[:, :1]))), work, full)
    return y[0].mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def true_noise_outputs(st: Stylizer, clip: Clip, sprite_hw, cn) -> list[np.ndarray]:
    out = []
    for t, frame in enumerate(clip.frames):
        ox, oy = pan_offset(t)
        sx = clip.sprite_x[t] if clip.sprite_x is not None else None

        def place(fx, fy, ox=ox, oy=oy, sx=sx):
            cx, cy = fx + ox + cn.OFFSET, fy + oy + cn.OFFSET
            if sx is not None:
                on = sprite_region(sx, sprite_hw)[np.clip(np.round(fy), 0, VIEW[0] - 1).astype(int),
                                                  np.clip(np.round(fx), 0, VIEW[1] - 1).astype(int)]
                cx, cy = np.where(on, fx - sx + SPRITE_TEXTURE, cx), np.where(on, fy + SPRITE_TEXTURE, cy)
            return cx, cy
        out.append(noise_frame(st, frame, noise_coords(st, frame.shape[:2], place), cn))
    return out


def noise_still(st: Stylizer, image: np.ndarray, origin: tuple[float, float], base: float, cn) -> np.ndarray:
    """A still image through a noise network, its noise fixed to the image (for the oracle)."""
    coords = noise_coords(st, image.shape[:2], lambda fx, fy: (fx - origin[0] + base, fy - origin[1] + base))
    return noise_frame(st, image, coords, cn)


# -- instance norm with statistics held from a stream's first frame ----------------------------------

class HeldNorm(torch.nn.Module):
    """An ``InstanceNorm2d`` whose mean and variance are measured once (the first frame after
    :meth:`reset`) and then held, so a frame's normalisation does not depend on what else is in it."""

    def __init__(self, norm: torch.nn.InstanceNorm2d) -> None:
        super().__init__()
        self.norm, self.stats = norm, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stats is None:
            self.stats = (x.mean((2, 3), keepdim=True), x.var((2, 3), keepdim=True, unbiased=False))
        mean, var = self.stats
        y = (x - mean) / torch.sqrt(var + self.norm.eps)
        return y * self.norm.weight.view(1, -1, 1, 1) + self.norm.bias.view(1, -1, 1, 1)


def hold_norms(net: torch.nn.Module) -> list[HeldNorm]:
    held = []
    for m in list(net.modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, torch.nn.InstanceNorm2d):
                h = HeldNorm(child)
                setattr(m, child_name, h)
                held.append(h)
    return held


def stylizer(name: str, scale: float, held: bool) -> tuple[Stylizer, list[HeldNorm]]:
    st = Stylizer(name, device="cpu", scale=scale, **({"engine": "torch", "dtype": "fp32"} if held else {}))
    if PHASES[0] > 1:
        st.network = phased(st.network, PHASES[0])
    return st, hold_norms(st.net) if held else []


def phased(network, k: int, stride: int = 8):
    """``network(work, prior)`` averaged over ``k``×``k`` phases of a stride-8 grid (lite's; a fast
    network's 4 px grid is covered twice) by :func:`fastnst.models.phase_mean`, the prior (RGB and
    mask) padded and shifted with the frame."""
    def run(work: torch.Tensor, prior=None) -> torch.Tensor:
        if prior is None:
            return phase_mean(lambda t: network(t, None), work, k, stride=stride)
        both = torch.cat([work, *prior], 1)
        return phase_mean(lambda t: network(t[:, :3], (t[:, 3:6], t[:, 6:])), both, k, stride=stride)
    return run


def reset(norms: list[HeldNorm]) -> None:
    for n in norms:
        n.stats = None


# -- measuring -----------------------------------------------------------------------------------------

def true_warp(clip: Clip, frames: list[np.ndarray]) -> float:
    errs = []
    for t in range(len(frames) - 1):
        a = torch.from_numpy(frames[t]).permute(2, 0, 1)[None].float() / 255
        b = torch.from_numpy(frames[t + 1]).permute(2, 0, 1)[None].float() / 255
        m = torch.from_numpy(clip.masks[t])[None, None]
        errs.append(warp_error(a, b, flow_to_tensor(clip.flows[t]), m))
    return float(np.mean(errs))


def load_canvas(video: str, k: int) -> np.ndarray:
    for i, f in enumerate(read_frames(video)):
        if i == k:
            return np.ascontiguousarray(f)
    raise SystemExit(f"{video} has no frame {k}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("video"), p.add_argument("style"), p.add_argument("out")
    p.add_argument("--canvas-frame", type=int, default=200)
    p.add_argument("--sprite", action="store_true", help="slide bikes' bus roof (frame 20) across")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--model", nargs="*", default=["starry_night_lite", "starry_night_fast"])
    p.add_argument("--noise-model", nargs="*", default=[])
    p.add_argument("--work-scale", type=float, default=213 / 272, help="bikes' own working scale")
    p.add_argument("--pan", default="1.37,0.23", help="the window's motion, px a frame: X,Y")
    p.add_argument("--held-norm", action="store_true",
                   help="instance norm statistics held from each stream's first frame (torch engine, fp32)")
    p.add_argument("--phases", type=int, default=1, help="average the network over K x K grid phases")
    a = p.parse_args(argv)
    PAN[:] = [float(v) for v in a.pan.split(",")]
    PHASES[0] = a.phases
    from fastnst.stabilize import stream_state

    canvas = load_canvas(a.video, a.canvas_frame)
    src = load_canvas(a.video, 20) if a.sprite else None
    x0, x1, y0, y1 = SPRITE_BOX
    sprite = np.ascontiguousarray(src[y0:y1, x0:x1]) if src is not None else None
    clip = make_clip(canvas, sprite, a.frames)
    outputs: dict[str, list[np.ndarray]] = {}
    for name in a.model:
        st, norms = stylizer(name, a.work_scale, a.held_norm)
        label = os.path.basename(name).removesuffix(".safetensors")
        for stab in (0.0, 0.5):
            state = stream_state(stab, video=st.video)
            reset(norms)
            outputs[f"{label} stab {stab:g}"] = [st(f, state) for f in clip.frames]
        reset(norms)
        styled_sprite = st(src)[y0:y1, x0:x1] if src is not None else None
        reset(norms)
        outputs[f"{label} oracle"] = oracle(clip, st(canvas), styled_sprite)
    if a.noise_model:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import carried_noise as cn

        os.environ.setdefault("NOISE_STATIC", "7"), os.environ.setdefault("NOISE_SLOW", "1.5")
        cn.patch_inference()
        for path in a.noise_model:
            st, norms = stylizer(path, a.work_scale, a.held_norm)
            label = os.path.basename(path).removesuffix(".safetensors")
            hw = sprite.shape[:2] if sprite is not None else None
            reset(norms)
            outputs[f"{label} true carry"] = true_noise_outputs(st, clip, hw, cn)
            for stab in (0.0, 0.5):
                state = stream_state(stab, video=True)
                reset(norms)
                outputs[f"{label} motion stage stab {stab:g}"] = [st(f, state) for f in clip.frames]
            reset(norms)
            ss = noise_still(st, src, (x0, y0), SPRITE_TEXTURE, cn)[y0:y1, x0:x1] if src is not None else None
            reset(norms)
            outputs[f"{label} oracle"] = oracle(clip, noise_still(st, canvas, (0, 0), cn.OFFSET, cn), ss)
    reports = evaluate_frames(clip.frames, outputs, style_image=a.style, vgg_every=4)
    floor_true = true_warp(clip, clip.frames)
    rows = {}
    for name, frames in outputs.items():
        r, e_true = reports[name], true_warp(clip, frames)
        rows[name] = {"style": r.style_distance / r.style_distance_input, "content": r.content_distance,
                      "e_est": r.e_warp_ratio, "e_true": e_true / floor_true, "e_true_abs": e_true}
        print(f"{name:34s} style {rows[name]['style']:.2f}x  content {r.content_distance:.2f}  "
              f"E_warp est {rows[name]['e_est']:6.2f}x  true {rows[name]['e_true']:6.2f}x "
              f"({rows[name]['e_true_abs'] * 1e4:.2f}e-4)", flush=True)
    first = next(iter(reports.values()))
    meta = {"floor_est": first.e_warp_input, "floor_true": floor_true, "frames": a.frames, "sprite": a.sprite,
            "canvas_frame": a.canvas_frame, "work_scale": a.work_scale}
    print(meta)
    with open(a.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    np.savez_compressed(os.path.splitext(a.out)[0] + "_frames.npz", input=np.stack(clip.frames),
                        **{k.replace(" ", "_"): np.stack(v) for k, v in outputs.items()})
    return 0


def cli(argv: list[str]) -> int:
    """``cli K fastnst-args…``: the fastnst command line with every network averaged over K x K phases."""
    from fastnst import stylizer as module
    from fastnst.cli import main as fastnst_main

    if os.environ.get("CARRIED_NOISE"):  # a carried-noise network (its settings: carried_noise.py)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import carried_noise

        carried_noise.patch_inference()
    k, network = int(argv[0]), module.Stylizer.network
    if k > 1:
        def patched(self, work, prior=None):
            return phased(lambda w, p: network(self, w, p), k)(work, prior)
        module.Stylizer.network = patched
    return fastnst_main(argv[1:])


if __name__ == "__main__":
    sys.exit(cli(sys.argv[2:]) if sys.argv[1:2] == ["cli"] else main(sys.argv[1:]))

"""How smooth is a style transition? Frame-to-frame change inside cross-fades against the steady state.

    python benchmarks/transitions.py VIDEO [--styles starry_night_fast cafe_terrace_fast [night_cafe_fast]] \\
        [--transitions 0.5 1 1.5] [--curves linear smoothstep] [--max-size 320] [--start 0] [--duration S] \\
        [--changes T ...] [--context 0.5] [--cache DIR] [--per-frame]

The segment ``[start, start + duration)`` (default: 3 s per style) is decoded once at ``--max-size``
and stylized once per style; style changes sit at ``--changes`` (seconds from ``--start``; default
evenly spaced). For every curve and transition
length the output cross-fade (:class:`fastnst.timeline.Schedule` + :func:`fastnst.timeline.blend`)
is composed from those outputs, rounded to 8 bits like a written video, and scored by the mean
absolute change between consecutive frames, in 8-bit levels. Per change the table gives that change
inside the transition window (mean and largest) and in the ``--context`` seconds of steady video on
either side (mean and largest), and the ratios; the issue's bar is largest-inside / steady mean ≤ ~1.5.
Motion changes from shot to shot and second to second, which that ratio mixes in, so the last column
removes it: each frame pair's change divided by what the pure styles' videos change on the same pair,
``(1−a)·d_A + a·d_B`` -- 1.0 in steady state, and its largest value inside the window is how much
more than steady the fade makes any one frame jump.
``T=0`` rows are hard cuts, for reference. ``input`` is the same for the unstylized frames (motion
differs from window to window; a ratio near the input's is motion, not the fade). Shot cuts in the
input (isolated spikes, see :func:`shot_cuts`) are left out of every figure and listed. A style may
be named more than once (``--styles a b a``); each distinct one is stylized once.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fastnst.errors import FastNSTError
from fastnst.timeline import CURVES, Entry, Schedule, blend, make_mix
from fastnst.video import probe, read_frames


def stylize_all(frames: list[np.ndarray], styles: list[str], device: str, cache: Path | None = None,
                key: str = "") -> dict[str, torch.Tensor]:
    """``{style: (N,3,H,W) float32 [0,1]}``: every frame through every style's network, once.

    With ``cache`` (a folder), each style's uint8 outputs are kept in ``cache/<style>-<key>.npy``
    and reused by later runs on the same segment."""
    from fastnst import Stylizer

    outs = {}
    for name in dict.fromkeys(styles):
        file = cache / f"{Path(name).stem}-{key}.npy" if cache else None
        if file is not None and file.is_file():
            outs[name] = torch.from_numpy(np.load(file)).float().div_(255.0)
            continue
        st = Stylizer(name, device=device)
        t0 = time.perf_counter()
        ys = np.stack([st(f) for f in frames]).transpose(0, 3, 1, 2)
        dt = time.perf_counter() - t0
        print(f"stylized {len(frames)} frames with {name} in {dt:.1f} s ({1000 * dt / len(frames):.0f} ms/frame)",
              file=sys.stderr)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            np.save(file, np.ascontiguousarray(ys))
        outs[name] = torch.from_numpy(ys).float().div_(255.0)
    return outs


def compose(outs: dict[str, torch.Tensor], schedule: Schedule, times: np.ndarray) -> torch.Tensor:
    """The cross-faded video as ``(N,3,H,W)`` uint8, frame ``i`` mixed as ``schedule.at(times[i])``."""
    frames = []
    for i, t in enumerate(times):
        mix = schedule.at(float(t))
        y = blend({n: outs[n][i:i + 1] for n in mix.weights}, mix.weights)
        frames.append(y.mul(255).round_().to(torch.uint8))
    return torch.cat(frames)


def frame_changes(video: torch.Tensor) -> np.ndarray:
    """``(N,3,H,W)`` uint8 → ``(N-1,)`` mean |frame i − frame i−1| in 8-bit levels."""
    v = video.float()
    return (v[1:] - v[:-1]).abs().mean(dim=(1, 2, 3)).numpy()


def shot_cuts(d: np.ndarray) -> np.ndarray:
    """Frame pairs whose input change is a spike: over 15 levels and 2.5× the median of the eight
    pairs around it (a fast pan changes as much, but for many frames in a row)."""
    cut = np.zeros(len(d), dtype=bool)
    for i in range(len(d)):
        around = np.concatenate([d[max(0, i - 4):i], d[i + 1:i + 5]])
        cut[i] = d[i] > 15 and len(around) > 0 and d[i] > 2.5 * np.median(around)
    return cut


def window_stats(d: np.ndarray, times: np.ndarray, windows: list[tuple[float, float]], k: int,
                 context: float, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Changes (``d[i-1]`` is the pair ``(i-1, i)``) inside window ``k`` and in the steady context
    on both sides of it (outside every window), restricted to ``keep``."""
    t0, t1 = times[:-1], times[1:]
    lo, hi = windows[k]
    inside = (t0 < hi) & (t1 >= lo)
    in_any = np.zeros_like(inside)
    for a, b in windows:
        in_any |= (t0 < b) & (t1 >= a)
    near = ((t0 >= lo - context) & (t1 < lo)) | ((t0 > hi) & (t1 <= hi + context))
    return d[inside & keep], d[near & ~in_any & keep]


def steady_reference(pure: dict[str, np.ndarray], schedule: Schedule, times: np.ndarray) -> np.ndarray:
    """Per frame pair, the change the pure styles' videos make, weighted by the mix at the later
    frame: what the steady state would have done on the same motion."""
    ref = np.zeros(len(times) - 1)
    for i in range(1, len(times)):
        for name, w in schedule.at(float(times[i])).weights.items():
            ref[i - 1] += w * pure[name][i - 1]
    return np.maximum(ref, 1e-6)


def schedule_for(styles: list[str], changes: list[float], transition: float, curve: str) -> Schedule:
    entries = [Entry(make_mix([(styles[0], 1.0)]), 0.0, transition)]
    entries += [Entry(make_mix([(s, 1.0)]), c, transition) for s, c in zip(styles[1:], changes)]
    return Schedule(tuple(entries), curve=curve)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("video")
    p.add_argument("--styles", nargs="+", default=["starry_night_fast", "cafe_terrace_fast"])
    p.add_argument("--transitions", nargs="+", type=float, default=[0.5, 1.0, 1.5], help="seconds")
    p.add_argument("--changes", nargs="+", type=float, default=None,
                   help="times of the style changes, seconds from --start (one fewer than --styles)")
    p.add_argument("--curves", nargs="+", choices=sorted(CURVES), default=["linear", "smoothstep"])
    p.add_argument("--max-size", type=int, default=320)
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--duration", type=float, default=None, help="seconds (default: 3 per style)")
    p.add_argument("--context", type=float, default=0.5, help="seconds of steady video each side of a window")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cache", type=Path, default=None, help="folder keeping stylized frames between runs")
    p.add_argument("--per-frame", action="store_true", help="also print every frame's change for each run")
    args = p.parse_args(argv)
    if len(args.styles) < 2:
        p.error("give at least two --styles")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        info = probe(args.video)
        duration = args.duration or 3.0 * len(args.styles)
        frames = list(read_frames(args.video, start=args.start or None, duration=duration, max_size=args.max_size))
        key = f"{Path(args.video).stem}-{args.start:g}-{duration:g}-{args.max_size}"
        outs = stylize_all(frames, args.styles, args.device, args.cache, key)
    except FastNSTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(frames)
    times = np.arange(n) / float(info.fps)  # schedule clock: seconds from the segment's first frame
    span = n / float(info.fps)
    changes = args.changes or [span * k / len(args.styles) for k in range(1, len(args.styles))]
    if len(changes) != len(args.styles) - 1:
        p.error("give one --changes time fewer than --styles")
    pure = {name: frame_changes(outs[name].mul(255).round_().to(torch.uint8)) for name in outs}
    d_in = frame_changes(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2))
    keep = ~shot_cuts(d_in)
    h, w = frames[0].shape[:2]
    print(f"{args.video}: {n} frames at {w}x{h}, {float(info.fps):g} fps; changes at "
          + ", ".join(f"{c:.2f} s" for c in changes) + f"; steady context {args.context:g} s each side")
    if not keep.all():
        print("shot cuts left out (frame pairs ending at): " + ", ".join(f"{times[i + 1]:.2f} s"
                                                                          for i in np.flatnonzero(~keep)))
    print(f"{'change':>7} {'curve':>10} {'T s':>4} | {'steady mean':>11} {'max':>5} | {'in mean':>7} {'max':>5}"
          f" | {'max/steady mean':>15} {'max/steady max':>14} {'mean/mean':>9} | {'max vs pure':>11}")
    runs = [("input", 1.0)] + [("linear", 0.0)] + [(c, t) for t in args.transitions for c in args.curves]
    for curve, trans in runs:
        if curve == "input":
            d, windows = d_in, [(c - trans / 2, c + trans / 2) for c in changes]
            label, excess = "input", np.ones_like(d)
        else:
            sched = schedule_for(args.styles, changes, trans, curve)
            d, windows = frame_changes(compose(outs, sched, times)), sched.transitions()
            label = curve if trans > 0 else "hard cut"
            excess = d / steady_reference(pure, sched, times)
        for k, c in enumerate(changes):
            inside, steady = window_stats(d, times, windows, k, args.context, keep)
            ex_in, _ = window_stats(excess, times, windows, k, args.context, keep)
            if not len(inside) or not len(steady):
                print(f"{c:7.2f} {label:>10} {trans:4g} | (window or context empty)")
                continue
            sm, smax, im, imax = steady.mean(), steady.max(), inside.mean(), inside.max()
            print(f"{c:7.2f} {label:>10} {trans:4g} | {sm:11.2f} {smax:5.2f} | {im:7.2f} {imax:5.2f}"
                  f" | {imax / sm:15.2f} {imax / smax:14.2f} {im / sm:9.2f} | {ex_in.max():11.2f}")
        if args.per_frame:
            print("    per frame: " + " ".join(f"{x:.1f}" for x in d))
            print("    vs pure:   " + " ".join(f"{x:.2f}" for x in excess))
    return 0


if __name__ == "__main__":
    sys.exit(main())

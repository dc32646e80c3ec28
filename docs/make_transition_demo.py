"""Contact sheet of one style transition: frames across the cross-fade, then the mid-transition frame
beside the two pure styles (whole and a 2× centre crop), to judge mixture against double exposure.

    python docs/make_transition_demo.py VIDEO -o docs/transition.png [--styles A B] [--at 6.48]
        [--transition 1.5] [--frames 10] [--margin 0.2] [--max-size 320] [--curve linear] [--force]

``--at`` is the change time in seconds (the transition is centred on it); the frames shown run
evenly from ``--margin`` seconds before the window to as long after it, so both pure styles appear.
The default suits bikes.mp4: 6.48 s is the middle of the 2 s shot from 5.48 s to 7.48 s.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from fastnst import Stylizer
from fastnst.errors import FastNSTError
from fastnst.images import contact_sheet, write_image
from fastnst.timeline import Schedule, blend
from fastnst.video import probe, read_frames


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def _crop2x(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    c = img[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2]
    return cv2.resize(c, (w, h), interpolation=cv2.INTER_NEAREST)  # nearest: show the strokes as they are


def _label(img: np.ndarray, text: str) -> np.ndarray:
    """White text on a dark bar, so the label reads on the painting tiles' bright strokes."""
    img = img.copy()
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(img, (0, 0), (w + 8, h + 10), (0, 0, 0), -1)
    cv2.putText(img, text, (4, h + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _stack(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    w = max(top.shape[1], bottom.shape[1])
    pad = [np.pad(s, ((0, 0), (0, w - s.shape[1]), (0, 0)), constant_values=255) for s in (top, bottom)]
    return np.concatenate(pad, axis=0)


def build(video: str, styles: list[str], at: float, transition: float, n_frames: int, max_size: int,
          curve: str, margin: float) -> np.ndarray:
    info = probe(video)
    fps = float(info.fps)
    schedule = Schedule.from_cli([styles[0], f"{styles[1]}@{at}"], transition, 1.0, curve=curve)
    lo, hi = schedule.transitions()[0]
    # on the frame grid, so ``times`` below are the decoded frames' times (constant frame rate)
    t_first, t_last = max(0.0, math.ceil((lo - margin) * fps - 1e-6) / fps), hi + margin
    frames = list(read_frames(video, start=t_first, duration=t_last - t_first + 1 / fps, max_size=max_size))
    times = t_first + np.arange(len(frames)) / fps
    pick = sorted(set(np.linspace(0, len(frames) - 1, n_frames).round().astype(int).tolist()))
    mid = int(np.argmin(np.abs(times - at)))
    nets = {s: Stylizer(s, device="cpu") for s in styles}
    tiles, pure = [], {}
    for i in sorted(set(pick) | {mid}):
        outs = {s: torch.from_numpy(net(frames[i])).permute(2, 0, 1).float().div_(255) for s, net in nets.items()}
        mix = schedule.at(float(times[i]))
        img = _to_uint8(blend({s: outs[s][None] for s in mix.weights}, mix.weights)[0])
        if i == mid:
            pure = {s: _to_uint8(o) for s, o in outs.items()} | {"mix": img}
        if i in pick:
            text = f"{times[i]:.2f}s " + " ".join(f"{s.split('_')[0]} {w:.2f}" for s, w in mix.weights.items())
            tiles.append(_label(img, text))
    top = contact_sheet(tiles, columns=5)
    a, b = styles
    row = [pure[a], pure["mix"], pure[b]]
    row += [_crop2x(x) for x in row]
    names = [f"{a} only", f"mix at {times[mid]:.2f}s", f"{b} only"]
    names += [f"{n} (2x crop)" for n in names]
    # scale the comparison tiles so three of them span the sheet above
    width = (top.shape[1] - 4) // 3 - 4
    scale = width / row[0].shape[1]
    row = [cv2.resize(x, (width, round(x.shape[0] * scale)), interpolation=cv2.INTER_NEAREST) for x in row]
    return _stack(top, contact_sheet([_label(x, n) for x, n in zip(row, names)], columns=3))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--styles", nargs=2, default=["starry_night_fast", "cafe_terrace_fast"])
    ap.add_argument("--at", type=float, default=6.48, help="change time in seconds (bikes.mp4: mid-shot)")
    ap.add_argument("--transition", type=float, default=1.5)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--margin", type=float, default=0.2, help="seconds shown before and after the window")
    ap.add_argument("--max-size", type=int, default=320)
    ap.add_argument("--curve", default="linear")
    ap.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = ap.parse_args(argv)
    if Path(args.output).exists() and not args.force:
        print(f"error: {args.output} exists; pass --force to overwrite it.", file=sys.stderr)
        return 2
    try:
        sheet = build(args.video, args.styles, args.at, args.transition, args.frames, args.max_size, args.curve,
                      args.margin)
        write_image(args.output, sheet)
    except FastNSTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

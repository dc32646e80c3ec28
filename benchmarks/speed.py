"""Throughput of the video pipeline, per resolution, preset and stage, measured side by side in one run.

    python benchmarks/speed.py [--sizes 272,360,480,720,1080] [--frames 60] [--presets fast]
                               [--device auto] [--video FILE] [--camera FILE] [--threads N]

For each resolution a synthetic clip (moving gradients and shapes, 25 fps, with an AAC track) is made
in a temporary folder; ``--video`` adds a real file (e.g. bikes.mp4) as its own row. Stages, each timed
on its own (medians over the frames):

- decode:       PyAV decode + RGB conversion (:func:`fastnst.video.read_frames`);
- net full:     the network at the frame's full resolution, fp32 (and bf16 where the CPU has it natively);
- net work:     the network at the style's default working resolution (what ``stylize`` runs);
- upsample:     the edge-aware (guided) upsampling from working to output size;
- stabilise:    the flow-based stabiliser at working resolution;
- encode:       RGB → yuv420p + libx264 with the pipeline's default settings + mux;
- end-to-end:   ``fastnst.pipeline.stylize_video`` with default settings (threads, queues, audio).

``e2e/slowest`` = end-to-end fps ÷ the slowest stage's fps (per-stage figures are single-stage
throughputs; 1.0 means the pipeline hides the other stages completely; above 1.0 means stages ran in
parallel on separate cores). With ``--camera FILE`` the webcam path also runs headless on that file
(newest frame wins, as with a real camera) and reports fps and median capture-to-display latency.
The shipped default style is used (its working size and weights); speed does not depend on weights.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fastnst.devices import cpu_has_native_bf16, pick_device
from fastnst.options import DEFAULT_PRESET
from fastnst.stabilize import Stabilizer
from fastnst.stylizer import Stylizer
from fastnst.upsample import upsample
from fastnst.video import VideoWriter, read_frames

SIZES = {272: (640, 272), 360: (640, 360), 480: (854, 480), 720: (1280, 720), 1080: (1920, 1080)}


def synthetic_clip(path: Path, width: int, height: int, frames: int, fps: int = 25) -> Path:
    """A clip with camera-like content (smooth gradients, moving shapes, mild noise) and AAC audio."""
    import av
    import cv2

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "18"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        a = c.add_stream("aac", rate=48000)
        a.layout = "stereo"
        for i in range(frames):
            img = np.stack([127 + 100 * np.sin(x / 97 + i / 11), 127 + 100 * np.sin(y / 53 - i / 7),
                            127 + 100 * np.sin((x + y) / 151 + i / 13)], -1)
            img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
            for k in range(5):
                cx = int((0.2 + 0.6 * ((i * (k + 1) * 7) % 100) / 100) * width)
                cv2.circle(img, (cx, int(height * (k + 1) / 6)), max(4, height // 12), (40 * k, 200, 90), -1)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        samples = np.zeros((2, 1024), np.float32)
        for j in range(int(frames / fps * 48000 / 1024)):
            f = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
            f.sample_rate, f.pts = 48000, j * 1024
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def _median_ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def stage_times(frames: list[np.ndarray], style: str, device: torch.device, reps: int) -> dict[str, float]:
    """Milliseconds per frame for each in-memory stage."""
    x = torch.from_numpy(frames[0])[None].permute(0, 3, 1, 2).float().div(255)
    out: dict[str, float] = {}
    dtypes = ["fp32"] + (["bf16"] if device.type == "cpu" and cpu_has_native_bf16() else [])
    dtypes += ["fp16"] if device.type == "cuda" else []
    for dt in dtypes:
        full = Stylizer(style, device=device, dtype=dt, work_size=0)
        work = Stylizer(style, device=device, dtype=dt)
        _f_full, w_full = full.prepare(x)
        f_work, w_work = work.prepare(x)
        with torch.inference_mode():
            out[f"net full {dt}"] = _median_ms(lambda st=full, w=w_full: st.network(w), reps)
            out[f"net work {dt}"] = _median_ms(lambda st=work, w=w_work: st.network(w), reps)
    with torch.inference_mode():
        styled = work.network(w_work)
        out["upsample"] = _median_ms(lambda: upsample(styled, w_work, f_work), reps)
        stab = Stabilizer(0.5)
        works = [work.prepare(torch.from_numpy(f)[None].permute(0, 3, 1, 2).float().div(255))[1] for f in frames[:reps + 1]]
        it = iter(works * 2)
        out["stabilise"] = _median_ms(lambda: stab(next(it), styled), reps)
    out["work size"] = tuple(w_work.shape[-2:])
    return out


def encode_ms(frames: list[np.ndarray], tmp: Path) -> float:
    h, w = frames[0].shape[:2]
    t = time.perf_counter()
    with VideoWriter(tmp / "enc.mp4", w, h, fps=25, preset=DEFAULT_PRESET) as vw:
        for i, f in enumerate(frames):
            vw.write(f, i)
    return 1000 * (time.perf_counter() - t) / len(frames)


def run_row(label: str, clip: Path, style: str, device: torch.device, args, tmp: Path) -> dict:
    from fastnst.pipeline import stylize_video

    t = time.perf_counter()
    frames = list(itertools.islice(read_frames(clip), args.frames))
    decode = 1000 * (time.perf_counter() - t) / len(frames)
    row = {"clip": label, "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "decode": decode}
    row.update(stage_times(frames, style, device, args.reps))
    row["encode"] = encode_ms(frames, tmp)
    res = stylize_video(clip, tmp / "e2e.mp4", style, device=device, progress=False, threads=args.threads,
                        duration=args.frames / 25 if label != "file" else None)
    row["e2e fps"] = res.fps
    row["threads"] = res.threads
    stages = [row["decode"], row["encode"], row["net work fp32" if "net work bf16" not in row else "net work bf16"],
              row["upsample"], row["stabilise"]]
    row["e2e/slowest"] = res.fps / (1000 / max(stages))
    return row


def webcam_row(camera: Path, style: str, device: torch.device, frames: int) -> str:
    from fastnst.webcam import run_webcam

    res = run_webcam([style], camera=str(camera), device=device, show=False, max_frames=frames, realtime=True)
    return f"webcam {camera.name}: {res.fps:.1f} fps, median latency {res.latency_ms:.0f} ms, threads {res.threads}"


def print_table(rows: list[dict]) -> None:
    keys = [k for k in rows[0] if k not in ("clip",)]
    for r in rows[1:]:
        keys += [k for k in r if k not in keys and k != "clip"]
    print("| clip | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            cells.append(f"{v:.1f}" if isinstance(v, float) else str(v))
        print(f"| {r['clip']} | " + " | ".join(cells) + " |")
    print("(stage columns: ms per frame, medians; e2e: frames/s of stylize_video with default settings)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="360,480,720,1080", help="synthetic clip heights (272 = bikes' size)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--reps", type=int, default=10, help="repetitions per in-memory stage")
    p.add_argument("--style", default="starry_night_fast")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: measured)")
    p.add_argument("--video", type=Path, action="append", default=[], help="also a real video file")
    p.add_argument("--camera", type=Path, default=None, help="run the webcam path on this file")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    print(f"device {device}, torch {torch.__version__}, native CPU bf16: {cpu_has_native_bf16()}, "
          f"torch threads at start {torch.get_num_threads()}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for video in args.video:
            rows.append(run_row("file", video, args.style, device, args, tmp) | {"clip": video.name})
        for h in (int(s) for s in args.sizes.split(",") if s):
            w, hh = SIZES[h]
            clip = synthetic_clip(tmp / f"clip{h}.mp4", w, hh, args.frames)
            rows.append(run_row(f"{h}p", clip, args.style, device, args, tmp))
        print_table(rows)
        if args.camera is not None:
            print(webcam_row(args.camera, args.style, device, 300))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of the video pipeline: frames/s per resolution and per stage, and how well it overlaps.

    python benchmarks/speed.py [--sizes 360,720,1080] [--frames 60] [--presets fast,quality]
                               [--device auto] [--batch-size N] [--compile] [--dtypes fp32,fp16]

For each resolution a synthetic clip (moving gradients and shapes, libx264 medium crf 18, 25 fps,
with an AAC track) is generated in a temporary folder. Stages, each timed on its own:

- decode: PyAV decode + RGB conversion (:func:`fastnst.video.read_frames`);
- model:  the network on already-decoded frames, in the pipeline's batch size, dtype and CPU thread
          setting (uint8 in → uint8 out, host↔device copies included), timed before and after the
          end-to-end run and averaged (other processes' load drifts on a shared machine);
- encode: RGB → yuv420p + libx264 (same codec settings as the pipeline) + mux;
- end-to-end: :func:`fastnst.pipeline.stylize_video` on the clip (threads, queues, audio remux).

``e2e/slowest`` = end-to-end fps ÷ the slowest stage's fps: 1.0 means the pipeline fully hides the
other stages behind the slowest one. End-to-end includes filling and draining the pipeline (x264's
40-frame look-ahead is encoded at the end), so short clips understate it. Models have random weights of the right architecture (speed
does not depend on the weights). On CUDA, fp32/fp16 and eager/torch.compile variants are run
(``--compile`` adds ``reduce-overhead``, i.e. CUDA graphs); on CPU only fp32 eager.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from fastnst.devices import pick_device
from fastnst.models import build_model
from fastnst.pipeline import Stylizer, set_cpu_threads, stylize_video
from fastnst.video import VideoWriter, read_frames

HEIGHTS = {360: (640, 360), 480: (854, 480), 720: (1280, 720), 1080: (1920, 1080)}


def synthetic_clip(path: Path, width: int, height: int, frames: int, fps: int = 25) -> Path:
    """A clip with camera-like content (smooth gradients, moving shapes, mild noise) and AAC audio."""
    import av
    import cv2

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps, options={"preset": "medium", "crf": "18"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        a = c.add_stream("aac", rate=48000)
        a.layout = "stereo"
        for i in range(frames):
            img = np.stack([
                127 + 100 * np.sin(x / 97 + i / 11), 127 + 100 * np.sin(y / 53 - i / 7),
                127 + 100 * np.sin((x + y) / 151 + i / 13)], -1)
            img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
            for k in range(5):
                cx = int((0.1 + 0.8 * ((i * (k + 1) * 7) % 100) / 100) * width)
                cy = int((0.2 + 0.15 * k) * height)
                cv2.circle(img, (cx, cy), height // 12, (40 * k, 255 - 40 * k, 128), -1)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            f.time_base = Fraction(1, fps)
            c.mux(vs.encode(f))
        c.mux(vs.encode())
        samples = round(48000 * frames / fps)
        for k in range(0, samples, 1024):
            n = min(1024, samples - k)
            tone = (0.2 * np.sin(2 * np.pi * 440 * (k + np.arange(n)) / 48000)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = 48000, k, Fraction(1, 48000)
            c.mux(a.encode(af))
        c.mux(a.encode())
    return path


def time_decode(clip: Path) -> tuple[float, list[np.ndarray]]:
    t = time.perf_counter()
    frames = list(read_frames(clip))
    return len(frames) / (time.perf_counter() - t), frames


def time_encode(frames: list[np.ndarray], out: Path, fps: int = 25) -> float:
    t = time.perf_counter()
    with VideoWriter(out, frames[0].shape[1], frames[0].shape[0], fps=fps, time_base=Fraction(1, fps)) as w:
        for i, f in enumerate(frames):
            w.write(f, i)
    return len(frames) / (time.perf_counter() - t)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(st: Stylizer, frames: list[np.ndarray], batch_size: int) -> float:
    """uint8 host frames → stylized uint8 host frames, in batches (copies included)."""
    host = torch.from_numpy(np.stack(frames))
    if st.device.type == "cuda":
        host = host.pin_memory()
    st.stylize_uint8(host[:batch_size]).cpu()  # warm-up (cuDNN autotune, compile)
    _sync(st.device)
    t = time.perf_counter()
    for i in range(0, len(frames), batch_size):
        st.stylize_uint8(host[i:i + batch_size]).cpu()
    _sync(st.device)
    return len(frames) / (time.perf_counter() - t)


def variants(device: torch.device, dtypes: list[str], compile_: bool) -> list[tuple[str, str | bool]]:
    if device.type != "cuda":
        return [("fp32", False)]
    out: list[tuple[str, str | bool]] = []
    for dt in dtypes:
        out.append((dt, False))
        if compile_:
            out += [(dt, True), (dt, "reduce-overhead")]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="360,720,1080", help="frame heights: 360, 480, 720, 1080")
    ap.add_argument("--frames", type=int, default=60, help="frames per clip")
    ap.add_argument("--model-frames", type=int, default=None,
                    help="frames for the model-only timing (default: --frames)")
    ap.add_argument("--presets", default="fast,quality")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 8 on CUDA, 1 on CPU")
    ap.add_argument("--dtypes", default="fp32,fp16", help="CUDA only; CPU runs fp32")
    ap.add_argument("--compile", action="store_true", help="CUDA: also torch.compile and CUDA graphs")
    ap.add_argument("--threads", type=int, default=None,
                    help="PyTorch CPU threads (default: the pipeline's: all cores but one)")
    args = ap.parse_args(argv)

    device = pick_device(args.device)
    batch = args.batch_size or (8 if device.type == "cuda" else 1)
    heights = [int(s) for s in args.sizes.split(",") if s]
    presets = [p for p in args.presets.split(",") if p]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {dev_name}; batch {batch}; {args.frames} frames per clip; torch {torch.__version__}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fastnst-bench-") as tmp:
        tmp = Path(tmp)
        for h in heights:
            w, hh = HEIGHTS[h]
            clip = synthetic_clip(tmp / f"clip{h}.mp4", w, hh, args.frames)
            dec, frames = time_decode(clip)
            enc = time_encode(frames, tmp / f"enc{h}.mp4")
            model_frames = frames[: args.model_frames or len(frames)]
            for preset in presets:
                torch.manual_seed(0)
                net = build_model(preset=preset)
                for dtype, comp in variants(device, [d for d in args.dtypes.split(",") if d], args.compile):
                    st = Stylizer(net, device=device, dtype=dtype, compile=comp)
                    restore = set_cpu_threads(device, args.threads)
                    try:
                        mod_before = time_model(st, model_frames, batch)
                        res = stylize_video(clip, tmp / f"out{h}.mp4", st, batch_size=batch, progress=False,
                                            threads=args.threads)
                        # timed again after: on a shared machine the load drifts; the mean brackets the run
                        mod = (mod_before + time_model(st, model_frames, batch)) / 2
                    finally:
                        restore()
                    e2e = res.frames / res.seconds
                    slowest = min(dec, mod, enc)
                    mode = "eager" if comp is False else ("compile" if comp is True else comp)
                    rows.append((preset, f"{h}p", dtype, mode, dec, mod, enc, e2e, e2e / slowest))
                    print(f"  {preset} {h}p {dtype} {mode}: decode {dec:.1f}  model {mod:.2f}  encode {enc:.1f}  "
                          f"e2e {e2e:.2f} fps", file=sys.stderr, flush=True)
    head = ("preset", "res", "dtype", "mode", "decode fps", "model fps", "encode fps", "e2e fps", "e2e/slowest")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.1f} | {r[5]:.2f} | {r[6]:.1f} | {r[7]:.2f} | {r[8]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

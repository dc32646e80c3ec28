"""Memory over a long video: does the streaming pipeline stay flat?

Generates a synthetic video (default: 10 minutes of 1280×720 at 25 fps, moving pattern, AAC tone),
stylizes it with ``fastnst.stylize_video`` in this process and samples the process's resident set
size (VmRSS) while it runs. Prints RSS when 10 %, 50 % and 100 % of the frames have been decoded
and the spread between those points (the target: flat within 10 %).

    python benchmarks/memory.py                      # the full 10 minutes (hours on a 2-core CPU)
    python benchmarks/memory.py --minutes 0.5 --size 1280x720 --style starry_night_fast

Progress is counted at the decoder (``fastnst.video.iter_decoded``, wrapped here), which runs at
most one bounded queue ahead of the network, so "10 %" is exact to a few frames.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def make_video(path: Path, seconds: float, w: int, h: int, fps: int = 25) -> Path:
    """A moving gradient with a sliding square and a 440 Hz tone, encoded fast (x264 ultrafast)."""
    import av

    n = max(1, round(seconds * fps))
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 80)], -1).astype(np.uint8)
    rate = 48000
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.time_base = Fraction(1, fps)
        a = c.add_stream("aac", rate=rate)
        a.layout = "mono"
        samples_per_frame = rate // fps
        for i in range(n):
            img = np.roll(base, 7 * i, axis=1)
            x0 = (11 * i) % max(w - 64, 1)
            img[h // 3:h // 3 + 64, x0:x0 + 64] = 255
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in vs.encode(f):
                c.mux(p)
            t = (np.arange(samples_per_frame) + i * samples_per_frame) / rate
            af = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                            format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = rate, i * samples_per_frame, Fraction(1, rate)
            for p in a.encode(af):
                c.mux(p)
        for s in (vs, a):
            for p in s.encode():
                c.mux(p)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the generated video")
    ap.add_argument("--size", default="1280x720", help="WxH of the generated video")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--style", default=None, help="style name or file (default: the default shipped style)")
    ap.add_argument("--input", default=None, help="use this video instead of generating one")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", action="store_true", help="keep the generated and stylized videos")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fastnst-memory-"))
    try:
        return measure(args, work)
    finally:
        if args.keep:
            print(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> int:
    """Generate (or take) the input, stylize it while sampling RSS, print the table; 0 when flat."""
    from fastnst import video
    from fastnst.pipeline import stylize_video

    w, h = (int(v) for v in args.size.lower().split("x"))
    src = Path(args.input) if args.input else None
    if src is None:
        t0 = time.perf_counter()
        src = make_video(work / "long.mp4", args.minutes * 60, w, h, args.fps)
        print(f"generated {src} ({args.minutes:g} min, {w}x{h}) in {time.perf_counter() - t0:.0f} s", flush=True)
    info = video.probe(src)
    total = info.frames or 1
    decoded = [0]
    original = video.iter_decoded

    def counting(*a, **k):
        for item in original(*a, **k):
            if isinstance(item, video.DecodedFrame):
                decoded[0] += 1
            yield item

    video.iter_decoded = counting
    samples: list[tuple[float, int, float]] = []  # (time, frames decoded, RSS MiB)
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter(), decoded[0], rss_mib()))
            stop.wait(0.25)

    before = rss_mib()
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        res = stylize_video(src, work / "styled.mp4", args.style, device=args.device, progress=True)
    finally:
        stop.set()
        thread.join()
        video.iter_decoded = original
    samples.append((time.perf_counter(), decoded[0], rss_mib()))
    seconds = time.perf_counter() - t0
    print(f"\nstylized {res.frames} frames ({res.width}x{res.height}) in {seconds:.0f} s "
          f"({res.frames / seconds:.2f} frames/s); RSS before the run {before:.0f} MiB")
    points = []
    for pct in (10, 50, 100):
        need = min(total, max(1, round(total * pct / 100)))
        # RSS at the first sample on or after the point (the last sample for 100 %).
        hit = next((s for s in samples if s[1] >= need), samples[-1]) if pct < 100 else samples[-1]
        points.append(hit[2])
        print(f"  {pct:3d} %  frame {hit[1]:6d}/{total}  RSS {hit[2]:7.1f} MiB")
    peak = max(s[2] for s in samples)
    spread = (max(points) - min(points)) / max(min(points), 1e-9)
    print(f"  peak {peak:.1f} MiB; 10/50/100 % spread {100 * spread:.1f} % "
          f"({'flat' if spread <= 0.10 else 'NOT flat'} within 10 %)")
    return 0 if spread <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())

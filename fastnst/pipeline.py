"""Stylizing images and videos: :class:`Stylizer` (a callable around a style network) and the
streaming video engine (:func:`stylize_video`), plus :func:`stylize_path` for files and folders.

The engine runs three stages at once, connected by bounded queues so memory stays flat however long
the video is::

    reader thread: demux + decode (PyAV, threaded) + RGB conversion/resize/rotation ──► queue
    main thread:   batches ──► network (fp16 + channels_last on CUDA, fp32 on CPU) ──► uint8 ──► queue
    writer thread: libx264 encode + mux, audio packets remuxed in between ──► .name.part.mp4 ──► rename

On CUDA the main thread also overlaps host↔device copies with compute: frames are packed into
reusable pinned buffers, copied on a side stream (non-blocking), computed on a compute stream and
copied back on a third stream into a ring of pinned output buffers that the writer hands back after
encoding; batch *i* is handed to the writer only after batch *i+1* has been queued on the GPU.

Timestamps: every frame keeps the input's ``pts`` and ``time_base`` (variable frame rate is kept;
AVI outputs, which cannot store timestamps, are renumbered at the nominal rate). A segment
(``start``/``duration``) is shifted to start at 0, audio with it.
"""

from __future__ import annotations

import copy
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .devices import pick_device
from .errors import FastNSTError
from .images import IMAGE_SUFFIXES, list_images, read_image, resize_max, write_image

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def parse_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """``None``/"auto" → fp16 on CUDA, fp32 elsewhere; names like "fp16" → torch dtypes."""
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError as exc:
        raise FastNSTError(f"Unknown precision {dtype!r}; use one of auto, fp32, fp16, bf16.") from exc


class Stylizer:
    """A style network ready for inference on one device.

    ``style``: a registered style name, a ``.safetensors`` path, a :class:`fastnst.styles.StyleModel`
    or a :class:`TransformerNet` (copied, never modified). ``dtype`` defaults to fp16 on CUDA and fp32
    on CPU. ``max_size`` downscales inputs so their longer side is at most that many pixels (the
    output has the reduced size). ``scale`` runs the network at ``scale`` × the input resolution and
    resizes its output back: below 1 gives larger brush strokes and speed, above 1 finer ones.

    Call it on a ``(H,W,3)`` uint8 RGB numpy image → ``(H',W',3)`` uint8, or on a ``(B,3,H,W)``
    float tensor in ``[0,1]`` → ``(B,3,H',W')`` float in ``[0,1]`` on the input's device and dtype.
    """

    def __init__(self, style, *, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
                 max_size: int | None = None, scale: float | None = None, channels_last: bool | None = None,
                 compile: bool | str = False) -> None:
        from .styles import StyleModel, load_style

        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.dtype = parse_dtype(dtype, self.device)
        if scale is not None and not (0 < scale <= 8):
            raise FastNSTError(f"--scale must be in (0, 8], got {scale}.")
        if max_size is not None and max_size < 8:
            raise FastNSTError(f"--max-size must be at least 8 pixels, got {max_size}.")
        self.max_size = max_size
        self.scale = None if scale in (None, 1, 1.0) else float(scale)
        # channels_last suits cuDNN (tensor cores, NHWC I/O for free); oneDNN on CPU measured slower.
        self.channels_last = (self.device.type == "cuda") if channels_last is None else channels_last
        if isinstance(style, StyleModel):
            net, self.name = copy.deepcopy(style.net), style.name
        elif isinstance(style, nn.Module):
            net, self.name = copy.deepcopy(style), type(style).__name__
        else:
            loaded = load_style(style, device="cpu")
            net, self.name = loaded.net, loaded.name
        net = net.eval().requires_grad_(False).to(self.device, self.dtype)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net: nn.Module = net
        self._forward: Callable[[torch.Tensor], torch.Tensor] = net
        if compile:
            mode = compile if isinstance(compile, str) else None
            self._forward = torch.compile(net, mode=mode, dynamic=False)

    def __repr__(self) -> str:
        return f"Stylizer({self.name!r}, device={self.device}, dtype={self.dtype})"

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    @torch.inference_mode()
    def stylize_batch(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,3,H,W)`` float in ``[0,1]`` (any device) → ``(B,3,H',W')`` in ``[0,1]`` on
        :attr:`device` in :attr:`dtype` (H',W' differ from H,W only when ``max_size`` shrinks them)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise FastNSTError(f"Expected a (B,3,H,W) tensor, got shape {tuple(images.shape)}.")
        x = images.to(self.device, self.dtype, non_blocking=True)
        x = resize_max(x, self.max_size)
        h, w = x.shape[-2:]
        if self.scale is not None:
            size = (max(4, round(h * self.scale)), max(4, round(w * self.scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=self.scale < 1)
        y = self._forward(self._layout(x))
        if y.shape[-2:] != (h, w):
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False,
                              antialias=y.shape[-1] > w).clamp_(0, 1)
        return y

    @torch.inference_mode()
    def stylize_uint8(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B,H,W,3)`` uint8 RGB (any device) → ``(B,H',W',3)`` uint8 on :attr:`device`.

        The NHWC→NCHW permute is a view that is already channels_last, so on CUDA no transpose runs.
        """
        x = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).to(self.dtype).div_(255.0)
        y = self.stylize_batch(x)
        return y.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def __call__(self, x):
        if isinstance(x, np.ndarray):
            if x.ndim != 3 or x.shape[2] != 3 or x.dtype != np.uint8:
                raise FastNSTError(f"Expected an (H,W,3) uint8 RGB image, got {x.dtype} {x.shape}.")
            return self.stylize_uint8(torch.from_numpy(np.ascontiguousarray(x))[None])[0].cpu().numpy()
        if isinstance(x, torch.Tensor):
            y = self.stylize_batch(x)
            return y.to(x.device, x.dtype if x.is_floating_point() else torch.float32)
        raise TypeError(f"Stylizer takes a numpy image or a tensor batch, not {type(x).__name__}")


def set_cpu_threads(device: torch.device, threads: int | None) -> Callable[[], None]:
    """Set PyTorch's CPU thread count for a run; returns the function that restores it.

    ``None`` on CPU leaves one core to the decode/encode/capture threads: with every core given to
    PyTorch, its OpenMP workers spin against those threads and throughput collapses (measured 3× to
    100× slower on a busy 2-core machine). On CUDA, ``None`` changes nothing.
    """
    old = torch.get_num_threads()
    if threads is None and device.type == "cpu":
        threads = max(1, min(old, (os.cpu_count() or 2) - 1))
    if threads:
        torch.set_num_threads(int(threads))
    return lambda: torch.set_num_threads(old)


def as_stylizer(style, **kwargs) -> Stylizer:
    """``style`` if it already is a :class:`Stylizer`, else a new one built with ``kwargs``."""
    return style if isinstance(style, Stylizer) else Stylizer(style, **kwargs)


# --------------------------------------------------------------------------------------------------
# Video engine
# --------------------------------------------------------------------------------------------------


@dataclass
class VideoResult:
    """Outcome of :func:`stylize_video`. ``fps`` is throughput (frames per wall-clock second);
    ``video_fps`` the file's nominal frame rate; ``notes`` things the user should know."""

    input: Path
    output: Path
    frames: int
    seconds: float
    fps: float
    width: int
    height: int
    video_fps: Fraction
    audio_copied: int = 0
    audio_transcoded: int = 0
    audio_packets: int = 0
    device: str = "cpu"
    batch_size: int = 1
    notes: list[str] = field(default_factory=list)


class _End:
    """Queue sentinel: the producer has finished."""


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Stopped(Exception):
    """Raised inside a worker thread when the run is being torn down."""


class _Channel:
    """A bounded queue whose blocking calls give up when ``stop`` is set (so threads can be joined)."""

    def __init__(self, maxsize: int, stop: threading.Event) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=maxsize)
        self.stop = stop

    def put(self, item, check: Callable[[], None] | None = None) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            if check is not None:
                check()
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, check: Callable[[], None] | None = None):
        while True:
            if self.stop.is_set():
                raise _Stopped
            if check is not None:
                check()
            try:
                return self.q.get(timeout=0.1)
            except queue.Empty:
                continue


@dataclass
class _Batch:
    """Stylized frames on the host, ``(n,H,W,3)`` uint8 (possibly a view of a pinned buffer that
    ``release`` gives back once encoded), with their pts."""

    frames: np.ndarray
    pts: list[int]
    release: Callable[[], None] | None = None


class _CudaBatcher:
    """Asynchronous CUDA batch runner: pinned input/output buffers reused across batches, H2D copy,
    compute and D2H copy on three streams, so copies of one batch overlap compute of another."""

    def __init__(self, stylizer: Stylizer, batch_size: int, out_ring: int, take: Callable[[queue.Queue], int]) -> None:
        self.st = stylizer
        self.device = stylizer.device
        self.batch_size = batch_size
        self.h2d = torch.cuda.Stream(self.device)
        self.compute = torch.cuda.Stream(self.device)
        self.d2h = torch.cuda.Stream(self.device)
        self.pin_in: list[torch.Tensor] = []
        self.in_done: list[torch.cuda.Event | None] = [None, None]
        self.k = 0
        self.pin_out: list[torch.Tensor] = []
        self.out_ring = out_ring
        self.free: queue.Queue = queue.Queue()
        self.take = take
        self.pending: deque = deque()

    def submit(self, frames: list[np.ndarray], pts: list[int]) -> None:
        n = len(frames)
        if not self.pin_in:
            shape = (self.batch_size, *frames[0].shape)
            self.pin_in = [torch.empty(shape, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
        k, self.k = self.k, self.k ^ 1
        done = self.in_done[k]
        if done is not None:
            done.synchronize()  # the previous H2D copy out of this buffer has finished
        host = self.pin_in[k].numpy()
        np.stack(frames, out=host[:n])
        if n < self.batch_size:
            host[n:] = host[n - 1]  # keep shapes static (compiled graphs); the padding is not emitted
        with torch.cuda.stream(self.h2d):
            x = self.pin_in[k].to(self.device, non_blocking=True)
            ev = torch.cuda.Event()
            ev.record(self.h2d)
            self.in_done[k] = ev
        self.compute.wait_stream(self.h2d)
        with torch.cuda.stream(self.compute):
            x.record_stream(self.compute)  # allocated on h2d, used here: keep the allocator honest
            y = self.st.stylize_uint8(x)
        if not self.pin_out:
            self.pin_out = [torch.empty(tuple(y.shape), dtype=torch.uint8, pin_memory=True)
                            for _ in range(self.out_ring)]
            for j in range(self.out_ring):
                self.free.put(j)
        j = self.take(self.free)
        self.d2h.wait_stream(self.compute)
        with torch.cuda.stream(self.d2h):
            y.record_stream(self.d2h)
            self.pin_out[j].copy_(y, non_blocking=True)
            ev_out = torch.cuda.Event()
            ev_out.record(self.d2h)
        self.pending.append((ev_out, j, n, pts))

    def completed(self, *, keep: int = 1) -> Iterable[_Batch]:
        """Finished batches in order, leaving the newest ``keep`` in flight."""
        while len(self.pending) > keep:
            ev, j, n, pts = self.pending.popleft()
            ev.synchronize()
            yield _Batch(self.pin_out[j].numpy()[:n], pts, release=lambda j=j: self.free.put(j))


def _estimate_total(container, stream, start: float | None, duration: float | None) -> int | None:
    from .video import stream_duration, stream_fps

    fps = float(stream_fps(stream))
    total_s = stream_duration(container, stream)
    n = int(stream.frames or 0)
    if start or duration is not None or n <= 0:
        if total_s is None:
            return round(duration * fps) if duration is not None else None
        remaining = max(0.0, total_s - (start or 0.0))
        if duration is not None:
            remaining = min(remaining, duration)
        return max(1, round(remaining * fps))
    return n


def stylize_video(
    input: str | os.PathLike,
    output: str | os.PathLike,
    style,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    batch_size: int | None = None,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "medium",
    max_size: int | None = None,
    scale: float | None = None,
    start: float | None = None,
    duration: float | None = None,
    progress: bool = True,
    compile: bool | str = False,
    queue_frames: int | None = None,
    threads: int | None = None,
) -> VideoResult:
    """Stylize a video file into ``output``, streaming (constant memory) and keeping the audio.

    ``style``: a style name/path, :class:`~fastnst.styles.StyleModel`, :class:`TransformerNet` or a
    ready :class:`Stylizer` (then ``device``/``dtype``/``scale`` are its own). ``batch_size``
    defaults to 8 on CUDA and 1 on CPU. ``max_size`` downscales frames (longer side, px) while
    decoding; ``scale`` is the network's resolution factor (see :class:`Stylizer`).
    ``start``/``duration`` (seconds) cut a segment. The video is encoded with ``codec``
    (libx264 yuv420p by default, ``crf``/``preset`` for x264/x265); audio streams are copied packet
    for packet, or transcoded to AAC when the container cannot hold them (see ``notes``).

    ``threads``: PyTorch CPU threads during the run (restored after; see :func:`set_cpu_threads`).

    The file appears under ``output`` only when complete; a failure or KeyboardInterrupt removes the
    temporary file. Corrupt, truncated or empty inputs raise :class:`FastNSTError`.
    """
    import av

    from .video import VideoWriter, iter_decoded, open_input, stream_duration, stream_fps

    in_path, out_path = Path(input), Path(output)
    if out_path.exists() and out_path.is_dir():
        raise FastNSTError(f"Output {out_path} is a folder; give a file name such as {out_path / in_path.stem}.mp4.")
    if out_path.suffix.lower() in IMAGE_SUFFIXES or not out_path.suffix:
        raise FastNSTError(f"Output {out_path} needs a video extension such as .mp4, .mkv or .avi.")
    if in_path.exists() and out_path.exists() and in_path.resolve() == out_path.resolve():
        raise FastNSTError("The output must not overwrite the input video.")
    try:
        av.codec.Codec(codec, "w")
    except Exception as exc:
        raise FastNSTError(f"Unknown or unavailable video encoder {codec!r}.") from exc
    if start is not None and start < 0:
        raise FastNSTError("--start must be zero or positive.")
    if duration is not None and duration <= 0:
        raise FastNSTError("--duration must be positive.")

    stylizer = as_stylizer(style, device=device, dtype=dtype, scale=scale)
    cuda = stylizer.device.type == "cuda"
    batch_size = int(batch_size or (8 if cuda else 1))
    if batch_size < 1:
        raise FastNSTError("--batch-size must be at least 1.")
    container, vstream = open_input(in_path)
    audio_streams = list(container.streams.audio)
    fps = stream_fps(vstream)
    tb = Fraction(vstream.time_base) if vstream.time_base else Fraction(1, 1000)
    pts_offset = round(Fraction(start) / tb) if start else 0
    total = _estimate_total(container, vstream, start, duration)
    declared = stream_duration(container, vstream)

    stop = threading.Event()
    q_in = _Channel(queue_frames or max(8, 4 * batch_size), stop)
    q_out = _Channel(max(8, 4 * batch_size), stop)
    state: dict = {"writer": None, "reader_error": None, "writer_error": None, "notes": [], "routes": {}}

    def reader() -> None:
        # The container stays open until the writer is done: queued packets and the audio transcoder
        # still refer to it (packets muxed after the input closed were silently lost).
        try:
            for item in iter_decoded(container, vstream, start=start, duration=duration, max_size=max_size,
                                     audio_streams=audio_streams, path=in_path):
                q_in.put(item)
            q_in.put(_End())
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            try:
                q_in.put(_Failed(exc))
            except _Stopped:
                pass

    def make_writer(frames: np.ndarray) -> VideoWriter:
        # The muxer picks stream time bases at the header; AVI stores no timestamps at all.
        w = VideoWriter(out_path, frames.shape[2], frames.shape[1], fps=fps, time_base=tb, codec=codec, crf=crf,
                        preset=preset)
        for s in audio_streams:
            state["routes"][s.index] = w.add_audio(s, start=start)
        return w

    def writer_loop() -> None:
        early_audio: list = []
        try:
            while True:
                item = q_out.get()
                if isinstance(item, _End):
                    break
                if isinstance(item, _Batch):
                    if state["writer"] is None:
                        state["writer"] = make_writer(item.frames)
                        for p in early_audio:
                            state["writer"].mux_audio(p)
                        early_audio.clear()
                    w = state["writer"]
                    for img, pts in zip(item.frames, item.pts):
                        w.write(img, pts)
                    if item.release is not None:
                        item.release()
                elif state["writer"] is None:
                    early_audio.append(item)
                else:
                    state["writer"].mux_audio(item)
            if state["writer"] is not None:
                state["writer"].finish()
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            state["writer_error"] = exc
            stop.set()

    def check_writer() -> None:
        if state["writer_error"] is not None:
            raise state["writer_error"]

    def take_buffer(free: queue.Queue) -> int:
        while True:
            check_writer()
            if stop.is_set():
                raise _Stopped
            try:
                return free.get(timeout=0.1)
            except queue.Empty:
                continue

    restore_threads = set_cpu_threads(stylizer.device, threads)
    t_reader = threading.Thread(target=reader, name="fastnst-decode", daemon=True)
    t_writer = threading.Thread(target=writer_loop, name="fastnst-encode", daemon=True)
    t0 = time.perf_counter()
    frames_done = 0
    bar = None
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True,
                   desc=in_path.name, leave=True)
        t_reader.start()
        t_writer.start()
        cuda_batcher = _CudaBatcher(stylizer, batch_size, 3, take_buffer) if cuda else None

        def emit(batch: _Batch) -> None:
            nonlocal frames_done
            q_out.put(batch, check_writer)
            frames_done += len(batch.pts)
            bar.update(len(batch.pts))

        def run(frames: list[np.ndarray], pts: list[int]) -> None:
            if cuda_batcher is not None:
                cuda_batcher.submit(frames, pts)
                for b in cuda_batcher.completed(keep=1):
                    emit(b)
            else:
                out = stylizer.stylize_uint8(torch.from_numpy(np.stack(frames)))
                emit(_Batch(out.numpy(), pts))

        frames: list[np.ndarray] = []
        pts_list: list[int] = []
        last_time = 0.0
        while True:
            item = q_in.get(check_writer)
            if isinstance(item, _End):
                break
            if isinstance(item, _Failed):
                raise item.exc
            if isinstance(item, av.Packet):
                q_out.put(item, check_writer)
                continue
            frames.append(item.image)
            pts_list.append(item.pts - pts_offset)
            last_time = item.time
            if len(frames) == batch_size:
                run(frames, pts_list)
                frames, pts_list = [], []
        if frames:
            run(frames, pts_list)
        if cuda_batcher is not None:
            for b in cuda_batcher.completed(keep=0):
                emit(b)
        q_out.put(_End(), check_writer)
        while t_writer.is_alive():
            t_writer.join(timeout=0.1)
        check_writer()
        writer = state["writer"]
        if writer is None:
            raise FastNSTError(f"{in_path} produced no frames to write.")
        writer.commit()
        bar.total = frames_done  # the header's frame count is only an estimate
        bar.refresh()
    except BaseException as exc:
        stop.set()
        for t in (t_reader, t_writer):
            if t.is_alive():
                t.join(timeout=10)
        if state["writer"] is not None:
            state["writer"].abort()
        if isinstance(exc, _Stopped) and state["writer_error"] is not None:
            raise state["writer_error"] from None
        raise
    finally:
        restore_threads()
        if bar is not None:
            bar.close()
        if not (t_reader.is_alive() or t_writer.is_alive()):
            container.close()
    seconds = time.perf_counter() - t0
    writer = state["writer"]
    routes = state["routes"]
    notes = list(writer.notes)
    if declared and duration is None and last_time + 2 / float(fps) < 0.9 * declared:
        notes.append(f"the video ended at {last_time:.1f} s although its header says {declared:.1f} s "
                     "(truncated file?)")
    return VideoResult(
        input=in_path, output=out_path, frames=frames_done, seconds=seconds, fps=frames_done / max(seconds, 1e-9),
        width=writer.width, height=writer.height, video_fps=fps,
        audio_copied=sum(1 for r in routes.values() if r == "copy"),
        audio_transcoded=sum(1 for r in routes.values() if r == "aac"), audio_packets=writer.audio_packets,
        device=str(stylizer.device), batch_size=batch_size, notes=notes,
    )


# --------------------------------------------------------------------------------------------------
# Images, folders, dispatch
# --------------------------------------------------------------------------------------------------


@dataclass
class PathResult:
    """Outcome of :func:`stylize_path`: the files written, and the video result when it was a video."""

    outputs: list[Path]
    seconds: float
    video: VideoResult | None = None


def stylize_image(input: str | os.PathLike, output: str | os.PathLike, style, **kwargs) -> Path:
    """Stylize one image file into ``output`` (written atomically)."""
    stylizer = as_stylizer(style, **kwargs)
    return write_image(output, stylizer(read_image(input)))


def stylize_path(
    input: str | os.PathLike,
    output: str | os.PathLike,
    style,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    max_size: int | None = None,
    scale: float | None = None,
    progress: bool = True,
    **video_kwargs,
) -> PathResult:
    """Stylize an image, a folder of images (→ a folder mirroring its layout) or a video file
    (→ :func:`stylize_video`, with ``video_kwargs``), choosing by what ``input`` is."""
    in_path, out_path = Path(input), Path(output)
    t0 = time.perf_counter()
    if not in_path.exists():
        raise FastNSTError(f"Input {in_path} does not exist.")
    if in_path.is_dir():
        images = list_images(in_path)
        if not images:
            raise FastNSTError(f"Folder {in_path} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        if out_path.exists() and not out_path.is_dir():
            raise FastNSTError(f"Output {out_path} must be a folder when the input is a folder.")
        if out_path.resolve() == in_path.resolve():
            raise FastNSTError("The output folder must differ from the input folder.")
        stylizer = as_stylizer(style, device=device, dtype=dtype, max_size=max_size, scale=scale)
        from tqdm.auto import tqdm

        outputs = []
        for src in tqdm(images, unit="image", disable=not progress, desc=in_path.name):
            outputs.append(write_image(out_path / src.relative_to(in_path), stylizer(read_image(src))))
        return PathResult(outputs, time.perf_counter() - t0)
    if in_path.suffix.lower() in IMAGE_SUFFIXES:
        if out_path.is_dir():
            out_path = out_path / in_path.name
        if out_path.exists() and out_path.resolve() == in_path.resolve():
            raise FastNSTError("The output must not overwrite the input image.")
        stylizer = as_stylizer(style, device=device, dtype=dtype, max_size=max_size, scale=scale)
        return PathResult([write_image(out_path, stylizer(read_image(in_path)))], time.perf_counter() - t0)
    if max_size is not None and max_size < 8:
        raise FastNSTError(f"--max-size must be at least 8 pixels, got {max_size}.")
    result = stylize_video(in_path, out_path, style, device=device, dtype=dtype, max_size=max_size, scale=scale,
                           progress=progress, **video_kwargs)
    return PathResult([result.output], result.seconds, result)


def stylize_frames(frames: Iterable[np.ndarray], style, **kwargs) -> Iterable[np.ndarray]:
    """Lazily stylize an iterable of ``(H,W,3)`` uint8 frames, one at a time (for scripts/metrics)."""
    stylizer = as_stylizer(style, **kwargs)
    for img in frames:
        yield stylizer(img)


__all__ = [
    "PathResult",
    "Stylizer",
    "VideoResult",
    "as_stylizer",
    "parse_dtype",
    "stylize_frames",
    "stylize_image",
    "stylize_path",
    "stylize_video",
]

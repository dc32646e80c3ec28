"""Stylizing images and videos: :func:`stylize_video` (the streaming engine of :mod:`fastnst.engine`
wired to the frame stages of :class:`fastnst.stylizer.Stylizer`, through a :class:`fastnst.mixer.Mixer`
that follows a style :class:`fastnst.timeline.Schedule`) and :func:`stylize_path` for files and
folders. :class:`Stylizer` is re-exported here for compatibility.

Schedule times are seconds on the input video's own clock (each decoded frame's ``time``), also
with ``start``: a change at 8 s in a run from ``start=5`` happens 3 s into the output. Images are
rendered as the schedule stands at 0 s."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .devices import parse_dtype
from .engine import Batch, Channel, CudaBatcher, End, Failed, Reader, Stopped, Writer, check_output
from .errors import FastNSTError
from .images import IMAGE_SUFFIXES, list_images, read_image, write_image
from .mixer import Mixer, build_mixer, plan_styles
from .options import DEFAULT_ENCODER_THREADS, DEFAULT_PRESET, DEFAULT_STABILIZE, DEFAULT_UPSAMPLER
from .stabilize import Stabilizer
from .stylizer import Stylizer, ThreadTuner, as_stylizer, work_shape
from .timeline import Mix, Schedule, format_mix

# --------------------------------------------------------------------------------------------------
# Video engine
# --------------------------------------------------------------------------------------------------


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


@dataclass
class VideoResult:
    """Outcome of :func:`stylize_video`. ``fps`` is throughput (frames per wall-clock second);
    ``video_fps`` the file's nominal frame rate; ``notes`` things the user should know;
    ``threads`` the PyTorch CPU thread count used (measured choice unless given)."""

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
    threads: int | None = None
    work_size: tuple[int, int] | None = None


@dataclass
class _Run:
    """What the main loop of one :func:`stylize_video` call works with."""

    mixer: Mixer
    schedule: Schedule
    stabilizer: Stabilizer | None
    batch_size: int
    q_in: Channel
    q_out: Channel
    writer: Writer
    tuner: ThreadTuner
    bar: object
    frames_done: int = 0
    last_time: float = 0.0
    work: tuple[int, int] | None = None
    mixes: list[Mix] = field(default_factory=list)  # of the batch being submitted (CUDA)

    @property
    def stylizer(self) -> Stylizer:
        return self.mixer.first


def _stylize_frames(run: _Run, frames: list[np.ndarray]) -> torch.Tensor:
    st = run.stylizer
    if run.work is None:
        h, w = frames[0].shape[:2]
        run.work = work_shape(h, w, work_size=st.work_size, scale=st.scale)
    return run.mixer.stylize_uint8(torch.from_numpy(np.stack(frames)), run.mixes, run.stabilizer)


def _emit(run: _Run, batch: Batch) -> None:
    run.q_out.put(batch, run.writer.check)
    run.frames_done += len(batch.pts)
    run.bar.update(len(batch.pts))


def _main_loop(run: _Run, pts_offset: int, cuda: CudaBatcher | None) -> None:
    """Take decoded frames in batches through the network stages and hand them to the writer."""
    import av

    def flush(frames: list[np.ndarray], pts: list[int], times: list[float]) -> None:
        run.mixes = [run.schedule.at(t) for t in times]
        if cuda is not None:
            cuda.submit(frames, pts)
            for b in cuda.completed(keep=1):
                _emit(run, b)
        else:
            _emit(run, Batch(_stylize_frames(run, frames).numpy(), pts))
            run.tuner.tick()

    frames: list[np.ndarray] = []
    pts_list: list[int] = []
    times: list[float] = []
    while not isinstance(item := run.q_in.get(run.writer.check), End):
        if isinstance(item, Failed):
            raise item.exc
        if isinstance(item, av.Packet):
            run.q_out.put(item, run.writer.check)
            continue
        frames.append(item.image)
        pts_list.append(item.pts - pts_offset)
        times.append(item.time)  # the input's own clock, which schedule times refer to
        run.last_time = item.time
        if len(frames) == run.batch_size:
            flush(frames, pts_list, times)
            frames, pts_list, times = [], [], []
    if frames:
        flush(frames, pts_list, times)
    if cuda is not None:
        for b in cuda.completed(keep=0):
            _emit(run, b)
    run.q_out.put(End(), run.writer.check)


def _take_buffer(writer: Writer, stop: threading.Event) -> Callable[[queue.Queue], int]:
    def take(free: queue.Queue) -> int:
        while True:
            writer.check()
            if stop.is_set():
                raise Stopped
            try:
                return free.get(timeout=0.1)
            except queue.Empty:
                continue

    return take


def cuda_batch_size(width: int | None, height: int | None) -> int:
    """Frames per CUDA batch: 8 up to 1080p, fewer for larger frames so that activations of the
    quality preset stay within a few GB (8 frames of 4K ran out of memory on a 24 GB card)."""
    pixels = max(1, (width or 1920) * (height or 1080))
    return max(1, min(8, (8 * 1920 * 1080) // pixels))


def _make_stabilizer(stabilize: float | None) -> Stabilizer | None:
    strength = DEFAULT_STABILIZE if stabilize is None else float(stabilize)
    if not 0.0 <= strength <= 1.0:
        raise FastNSTError(f"--stabilize must be between 0 and 1, got {stabilize}.")
    return Stabilizer(strength) if strength > 0 else None


def stylize_video(
    input: str | os.PathLike,
    output: str | os.PathLike,
    style=None,
    *,
    schedule: Schedule | None = None,
    strength: float = 1.0,
    preserve_color: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    batch_size: int | None = None,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = DEFAULT_PRESET,
    max_size: int | None = None,
    scale: float | None = None,
    work_size: int | None = None,
    upsampler: str = DEFAULT_UPSAMPLER,
    stabilize: float | None = None,
    start: float | None = None,
    duration: float | None = None,
    progress: bool = True,
    compile: bool | str = False,
    queue_frames: int | None = None,
    threads: int | None = None,
    force: bool = True,
) -> VideoResult:
    """Stylize a video file into ``output``, streaming (constant memory) and keeping the audio.

    ``style``: a style name/path, a blend ``"a:0.6,b:0.4"``, :class:`~fastnst.styles.StyleModel`,
    :class:`TransformerNet` or a ready :class:`Stylizer` (then ``device``/``dtype``/``scale``/
    ``work_size``/``compile`` are its own); None: the default style. Or ``schedule``
    (:class:`fastnst.timeline.Schedule`, e.g. :func:`fastnst.timeline.load_schedule`): styles over
    time with cross-fades, its times in seconds on the input's own clock (also with ``start``); a
    change at or after the video's end is an error. ``strength`` in [0, 1] scales the style's (or
    every schedule entry's) strength: 0 gives the input back. ``preserve_color`` keeps the input's
    colours (style on luminance, YIQ).
    ``batch_size`` defaults to 8 on CUDA and 1 on CPU. ``max_size`` downscales frames (longer side,
    px) while decoding; ``work_size``/``scale`` set the network's working resolution (see
    :class:`Stylizer`). ``stabilize`` in [0, 1] blends the previous output along the input's motion
    (:class:`fastnst.stabilize.Stabilizer`; default :data:`DEFAULT_STABILIZE`, 0 = off).
    ``start``/``duration`` (seconds) cut a segment. The video is encoded with ``codec`` (libx264
    yuv420p by default, ``crf``/``preset`` for x264/x265); audio streams are copied packet for
    packet, or transcoded to AAC when the container cannot hold them (see ``notes``).
    ``threads``: PyTorch CPU threads (default: measured over the first frames; restored after).

    The file appears under ``output`` only when complete; a failure or KeyboardInterrupt removes the
    temporary file. Corrupt, truncated or empty inputs raise :class:`FastNSTError`.
    """
    from tqdm.auto import tqdm

    from .video import VideoWriter, iter_decoded, open_input, stream_duration, stream_fps

    in_path, out_path = Path(input), Path(output)
    check_output(in_path, out_path, codec, force=force)
    if start is not None and start < 0:
        raise FastNSTError("--start must be zero or positive.")
    if duration is not None and duration <= 0:
        raise FastNSTError("--duration must be positive.")
    stabilizer = _make_stabilizer(stabilize)
    schedule, ready = plan_styles(style, schedule, strength)
    if len(schedule.entries) > 1:
        schedule.check_duration(_video_duration(in_path))
    mixer = build_mixer(schedule.styles(), ready, preserve_color=preserve_color, device=device, dtype=dtype,
                        scale=scale, work_size=work_size, upsampler=upsampler, compile=compile)
    stylizer = mixer.first
    cuda = stylizer.device.type == "cuda"
    if batch_size is not None and int(batch_size) < 1:
        raise FastNSTError("--batch-size must be at least 1.")
    container, vstream = open_input(in_path)
    batch_size = int(batch_size or (cuda_batch_size(vstream.codec_context.width, vstream.codec_context.height)
                                    if cuda else 1))
    audio_streams = list(container.streams.audio)
    fps = stream_fps(vstream)
    tb = Fraction(vstream.time_base) if vstream.time_base else Fraction(1, 1000)
    routes: dict[int, str] = {}
    declared = stream_duration(container, vstream) if duration is None else None

    def make_writer(frames: np.ndarray) -> VideoWriter:
        # The muxer picks stream time bases at the header; AVI stores no timestamps at all.
        w = VideoWriter(out_path, frames.shape[2], frames.shape[1], fps=fps, time_base=tb, codec=codec, crf=crf,
                        preset=preset, options=_encoder_options(codec))
        for s in audio_streams:
            routes[s.index] = w.add_audio(s, start=start)
        return w

    stop = threading.Event()
    q_in = Channel(queue_frames or max(8, 4 * batch_size), stop)
    q_out = Channel(max(8, 4 * batch_size), stop)
    decoded = iter_decoded(container, vstream, start=start, duration=duration, max_size=max_size,
                           audio_streams=audio_streams, path=in_path)
    reader, writer = Reader(decoded, q_in), Writer(q_out, make_writer, stop)
    tuner = ThreadTuner(stylizer.device, threads)
    bar = tqdm(total=_estimate_total(container, vstream, start, duration), unit="frame", disable=not progress,
               dynamic_ncols=True, desc=in_path.name, leave=True)
    run = _Run(mixer, schedule, stabilizer, batch_size, q_in, q_out, writer, tuner, bar)
    try:
        batcher = _cuda_batcher(run, stop) if cuda else None
        seconds = _execute(run, reader, stop, batcher, round(Fraction(start) / tb) if start else 0, in_path)
    finally:
        tuner.restore()
        bar.close()
        if not (reader.thread.is_alive() or writer.thread.is_alive()):
            container.close()
    return _video_result(run, in_path, out_path, fps, seconds, routes, declared)


def _cuda_batcher(run: _Run, stop: threading.Event) -> CudaBatcher:
    def run_batch(x: torch.Tensor) -> torch.Tensor:
        # called inside submit(), right after flush() set run.mixes; a short last batch is padded with
        # copies of its last frame (not emitted), so pad its mixes alike
        mixes = run.mixes + run.mixes[-1:] * (len(x) - len(run.mixes))
        return run.mixer.stylize_uint8(x, mixes, run.stabilizer)

    return CudaBatcher(run.mixer.first.device, run_batch, run.batch_size, 3, _take_buffer(run.writer, stop))


def _execute(run: _Run, reader: Reader, stop: threading.Event, batcher: CudaBatcher | None, pts_offset: int,
             in_path: Path) -> float:
    """Run the three stages to the end and commit the output; returns the seconds taken. On any
    failure (or Ctrl-C) every stage is stopped and the temporary output removed before re-raising."""
    writer = run.writer
    t0 = time.perf_counter()
    try:
        reader.thread.start()
        writer.thread.start()
        _main_loop(run, pts_offset, batcher)
        while writer.thread.is_alive():
            writer.thread.join(timeout=0.1)
        writer.check()
        if writer.writer is None:
            raise FastNSTError(f"{in_path} produced no frames to write.")
        writer.writer.commit()
        run.bar.total = run.frames_done  # the header's frame count is only an estimate
        run.bar.refresh()
    except BaseException as exc:
        stop.set()
        for t in (reader.thread, writer.thread):
            if t.is_alive():
                t.join(timeout=10)
        if writer.writer is not None:
            writer.writer.abort()
        if isinstance(exc, Stopped) and writer.error is not None:
            raise writer.error from None
        raise
    return time.perf_counter() - t0


def _video_duration(path: Path) -> float | None:
    """The video's duration in seconds from its headers (None when they do not say)."""
    from .video import probe

    return probe(path).duration


def _schedule_notes(schedule: Schedule, last_time: float) -> list[str]:
    """Style changes that the processed frames never reached (a segment ending before them)."""
    return [f"the change to {format_mix(e.mix)!r} at {e.start:g} s lies after the last frame processed "
            f"({last_time:.2f} s)" for e in schedule.entries[1:] if e.start - e.transition / 2 > last_time]


def _encoder_options(codec: str) -> dict[str, str]:
    # x264's own threads compete with PyTorch's for the same cores; measured in benchmarks/speed.py.
    return {"threads": str(DEFAULT_ENCODER_THREADS)} if codec in ("libx264", "libx265") and DEFAULT_ENCODER_THREADS else {}


def _video_result(run: _Run, in_path: Path, out_path: Path, fps: Fraction, seconds: float,
                  routes: dict[int, str], declared: float | None) -> VideoResult:
    w = run.writer.writer
    notes = list(w.notes)
    if declared and run.last_time + 2 / float(fps) < 0.9 * declared:
        notes.append(f"the video ended at {run.last_time:.1f} s although its header says {declared:.1f} s "
                     "(truncated file?)")
    notes += _schedule_notes(run.schedule, run.last_time)
    if run.stabilizer is not None and run.stabilizer.cuts:
        notes.append(f"stabilisation restarted at {run.stabilizer.cuts} shot cut(s)")
    return VideoResult(
        input=in_path, output=out_path, frames=run.frames_done, seconds=seconds,
        fps=run.frames_done / max(seconds, 1e-9), width=w.width, height=w.height, video_fps=fps,
        audio_copied=sum(1 for r in routes.values() if r == "copy"),
        audio_transcoded=sum(1 for r in routes.values() if r == "aac"), audio_packets=w.audio_packets,
        device=str(run.stylizer.device), batch_size=run.batch_size, notes=notes,
        threads=run.tuner.chosen, work_size=run.work,
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


def _image_renderer(style, schedule: Schedule | None, strength: float, preserve_color: bool,
                    **stylizer_kwargs) -> Callable[[np.ndarray], np.ndarray]:
    """``(H,W,3)`` uint8 → stylized uint8, as the schedule (or style) stands at 0 s."""
    schedule, ready = plan_styles(style, schedule, strength)
    mix = schedule.at(0.0)
    mixer = build_mixer(list(mix.weights), ready, preserve_color=preserve_color, **stylizer_kwargs)
    return lambda image: mixer(image, mix)


def stylize_path(
    input: str | os.PathLike,
    output: str | os.PathLike,
    style=None,
    *,
    schedule: Schedule | None = None,
    strength: float = 1.0,
    preserve_color: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    max_size: int | None = None,
    scale: float | None = None,
    work_size: int | None = None,
    upsampler: str = DEFAULT_UPSAMPLER,
    progress: bool = True,
    **video_kwargs,
) -> PathResult:
    """Stylize an image, a folder of images (→ a folder mirroring its layout) or a video file
    (→ :func:`stylize_video`, with ``video_kwargs``), choosing by what ``input`` is.

    ``style``/``schedule``/``strength``/``preserve_color`` as in :func:`stylize_video`; images are
    rendered as the schedule stands at 0 s (blends, strength and colour preservation apply)."""
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
        render = _image_renderer(style, schedule, strength, preserve_color, device=device, dtype=dtype,
                                 max_size=max_size, scale=scale, work_size=work_size, upsampler=upsampler)
        from tqdm.auto import tqdm

        outputs = []
        for src in tqdm(images, unit="image", disable=not progress, desc=in_path.name):
            outputs.append(write_image(out_path / src.relative_to(in_path), render(read_image(src))))
        return PathResult(outputs, time.perf_counter() - t0)
    if in_path.suffix.lower() in IMAGE_SUFFIXES:
        if out_path.is_dir():
            out_path = out_path / in_path.name
        if out_path.exists() and out_path.resolve() == in_path.resolve():
            raise FastNSTError("The output must not overwrite the input image.")
        if out_path.exists() and not video_kwargs.get("force", True):
            raise FastNSTError(f"Output {out_path} already exists; pass --force to replace it.")
        render = _image_renderer(style, schedule, strength, preserve_color, device=device, dtype=dtype,
                                 max_size=max_size, scale=scale, work_size=work_size, upsampler=upsampler)
        return PathResult([write_image(out_path, render(read_image(in_path)))], time.perf_counter() - t0)
    if max_size is not None and max_size < 8:
        raise FastNSTError(f"--max-size must be at least 8 pixels, got {max_size}.")
    result = stylize_video(in_path, out_path, style, schedule=schedule, strength=strength,
                           preserve_color=preserve_color, device=device, dtype=dtype, max_size=max_size, scale=scale,
                           work_size=work_size, upsampler=upsampler, progress=progress, **video_kwargs)
    return PathResult([result.output], result.seconds, result)


__all__ = [
    "DEFAULT_STABILIZE",
    "PathResult",
    "Stylizer",
    "VideoResult",
    "as_stylizer",
    "parse_dtype",
    "stylize_path",
    "stylize_video",
]

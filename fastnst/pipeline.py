"""Stylizing images and videos: :func:`stylize_video` (the streaming engine of :mod:`fastnst.engine`
wired to the frame stages of :class:`fastnst.stylizer.Stylizer`, through a :class:`fastnst.mixer.Mixer`
that follows a style :class:`fastnst.timeline.Schedule`) and :func:`stylize_path` for files and
folders. :class:`Stylizer` is re-exported here for compatibility.

Schedule times are seconds on the input video's own clock (each decoded frame's ``time``), also
with ``start``: a change at 8 s in a run from ``start=5`` happens 3 s into the output. Images are
rendered as the schedule stands at 0 s."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .devices import parse_dtype
from .engine import (
    Batch,
    Channel,
    CudaBatcher,
    End,
    Failed,
    Reader,
    Stopped,
    Writer,
    check_memory,
    check_output,
    memory_errors,
)
from .errors import FastNSTError
from .fileio import check_name, check_writable, refuse_existing
from .images import IMAGE_SUFFIXES, list_images, read_image, resize_shape, write_image
from .mixer import Mixer, build_mixer, plan_styles
from .options import (
    DEFAULT_CRF,
    DEFAULT_ENCODER_THREADS,
    DEFAULT_PRESET,
    DEFAULT_STABILIZE,
    EngineOptions,
    VideoOptions,
    apply_settings,
    with_settings,
)
from .stabilize import Stabilizer, stream_state
from .stylizer import Stylizer, ThreadTuner, as_stylizer, stylizer_kwargs, work_shape
from .timeline import Mix, Schedule, format_mix

# --------------------------------------------------------------------------------------------------
# Video engine
# --------------------------------------------------------------------------------------------------


@dataclass
class VideoResult:
    """Outcome of :func:`stylize_video`. ``width``/``height``: the size written, which
    ``size_note`` explains when it is not the frames' own (padded to even); ``fps`` is throughput
    (frames per wall-clock second); ``video_fps`` the file's nominal frame rate; ``notes`` things
    the user should know;
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
    size_note: str = ""


@dataclass
class _Source:
    """The opened input video and what the output takes from it."""

    path: Path
    container: object
    stream: object
    audio: list
    fps: Fraction
    time_base: Fraction
    declared: float | None  # the duration its headers give; None for a segment (--duration)
    notes: list[str] = field(default_factory=list)  # what the decoder met (a change of frame size)


def _open_source(path: Path, video: VideoOptions) -> _Source:
    from .video import open_input, stream_duration, stream_fps

    container, stream = open_input(path)
    tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000)
    declared = stream_duration(container, stream) if video.duration is None else None
    return _Source(path, container, stream, list(container.streams.audio), stream_fps(stream), tb, declared)


class _OutputFactory:
    """Makes the output's video writer from the first stylized batch (its size is known only then)
    and adds the audio streams; :attr:`routes` records how each was carried ("copy" or "aac")."""

    def __init__(self, path: Path, source: _Source, video: VideoOptions) -> None:
        self.path, self.source, self.video = path, source, video
        self.routes: dict[int, str] = {}

    def __call__(self, frames: np.ndarray):
        from .video import VideoWriter

        src, v = self.source, self.video
        # The muxer picks stream time bases at the header; AVI stores no timestamps at all.
        writer = VideoWriter(self.path, frames.shape[2], frames.shape[1], fps=src.fps, time_base=src.time_base,
                             codec=v.codec, crf=DEFAULT_CRF if v.crf is None else v.crf,
                             preset=v.preset or DEFAULT_PRESET, options=_encoder_options(v.codec))
        for s in src.audio:
            self.routes[s.index] = writer.add_audio(s, start=v.start)
        return writer


@dataclass
class _Run:
    """Everything one :func:`stylize_video` call works with: the styles, the three stages and the
    queues between them, and what the main loop has done so far."""

    mixer: Mixer
    schedule: Schedule
    stabilizer: Stabilizer | None
    source: _Source
    output: _OutputFactory
    batch_size: int
    stop: threading.Event
    q_in: Channel
    q_out: Channel
    reader: Reader
    writer: Writer
    tuner: ThreadTuner
    bar: object
    frames_done: int = 0
    last_time: float = 0.0
    work: tuple[int, int] | None = None
    mixes: list[Mix] = field(default_factory=list)  # of the batch being submitted

    @property
    def stylizer(self) -> Stylizer:
        return self.mixer.first

    def run_batch(self, x: torch.Tensor) -> torch.Tensor:
        """The CUDA batcher's network step, called inside ``submit()`` right after :func:`_flush` set
        :attr:`mixes`; a short last batch is padded with copies of its last frame (not emitted), so
        its mixes are padded alike."""
        mixes = self.mixes + self.mixes[-1:] * (len(x) - len(self.mixes))
        return self.mixer.stylize_uint8(x, mixes, self.stabilizer)

    def take_buffer(self, free: queue.Queue) -> int:
        """A free output buffer of the CUDA batcher; fails fast when the writer failed or the run stops."""
        while True:
            self.writer.check()
            if self.stop.is_set():
                raise Stopped
            try:
                return free.get(timeout=0.1)
            except queue.Empty:
                continue


def _start_run(mixer: Mixer, schedule: Schedule, stabilizer: Stabilizer | None, source: _Source, out_path: Path,
               engine: EngineOptions, video: VideoOptions, progress: bool, queue_frames: int | None) -> _Run:
    """The stages of one run, wired with their queues (the threads are started by :func:`_execute`)."""
    from tqdm.auto import tqdm

    from .video import estimate_frames, iter_decoded

    device = mixer.first.device
    ctx = source.stream.codec_context
    batch_size = int(video.batch_size or (cuda_batch_size(ctx.width, ctx.height) if device.type == "cuda" else 1))
    if ctx.width and ctx.height:
        check_memory(mixer.stylizers.values(), *resize_shape(ctx.height, ctx.width, engine.max_size),
                     batch=batch_size, what=f"for {source.path}")
    stop = threading.Event()
    q_in = Channel(queue_frames or max(8, 4 * batch_size), stop)
    q_out = Channel(max(8, 4 * batch_size), stop)
    decoded = iter_decoded(source.container, source.stream, start=video.start, duration=video.duration,
                           max_size=engine.max_size, audio_streams=source.audio, path=source.path,
                           notes=source.notes)
    output = _OutputFactory(out_path, source, video)
    bar = tqdm(total=estimate_frames(source.container, source.stream, video.start, video.duration), unit="frame",
               disable=not progress, dynamic_ncols=True, desc=source.path.name, leave=True)
    return _Run(mixer, schedule, stabilizer, source, output, batch_size, stop, q_in, q_out, Reader(decoded, q_in),
                Writer(q_out, output, stop), ThreadTuner(device, engine.threads), bar)


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


def _flush(run: _Run, cuda: CudaBatcher | None, frames: list[np.ndarray], pts: list[int],
           times: list[float]) -> None:
    """Take one batch through the network stages and hand what is finished to the writer."""
    run.mixes = [run.schedule.at(t) for t in times]
    if cuda is not None:
        cuda.submit(frames, pts)
        for b in cuda.completed(keep=1):
            _emit(run, b)
    else:
        _emit(run, Batch(_stylize_frames(run, frames).numpy(), pts))
        run.tuner.tick()


def _main_loop(run: _Run, pts_offset: int, cuda: CudaBatcher | None) -> None:
    """Take decoded frames in batches through the network stages and hand them to the writer."""
    import av

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
            _flush(run, cuda, frames, pts_list, times)
            frames, pts_list, times = [], [], []
    if frames:
        _flush(run, cuda, frames, pts_list, times)
    if cuda is not None:
        for b in cuda.completed(keep=0):
            _emit(run, b)
    run.q_out.put(End(), run.writer.check)


def cuda_batch_size(width: int | None, height: int | None) -> int:
    """Frames per CUDA batch: 8 up to 1080p, fewer for larger frames so that activations of the
    quality preset stay within a few GB (8 frames of 4K ran out of memory on a 24 GB card)."""
    pixels = max(1, (width or 1920) * (height or 1080))
    return max(1, min(8, (8 * 1920 * 1080) // pixels))


def _stabilize_strength(stabilize: float | None) -> float:
    strength = DEFAULT_STABILIZE if stabilize is None else float(stabilize)
    if not 0.0 <= strength <= 1.0:
        raise FastNSTError(f"--stabilize must be between 0 and 1, got {stabilize}.")
    return strength


def _check_request(in_path: Path, out_path: Path, video: VideoOptions, force: bool) -> None:
    """Refuse a request that cannot work before anything is loaded or decoded (one sentence each)."""
    from .video import check_segment

    check_output(in_path, out_path, video.codec, force=force, crf=video.crf, preset=video.preset)
    check_segment(video.start, video.duration)
    if video.batch_size is not None and int(video.batch_size) < 1:
        raise FastNSTError("--batch-size must be at least 1.")


def _options(engine: EngineOptions | None, video: VideoOptions | None, settings: dict,
             function: str) -> tuple[EngineOptions, VideoOptions]:
    """``engine``/``video`` (default: their defaults) with keyword ``settings`` applied by field name."""
    engine_, left = apply_settings(engine or EngineOptions(), settings)
    return engine_, with_settings(video or VideoOptions(), left, function)


def stylize_video(
    input: str | os.PathLike,
    output: str | os.PathLike,
    style=None,
    *,
    schedule: Schedule | None = None,
    engine: EngineOptions | None = None,
    video: VideoOptions | None = None,
    progress: bool = True,
    compile: bool | str = False,
    queue_frames: int | None = None,
    force: bool = True,
    **settings,
) -> VideoResult:
    """Stylize a video file into ``output``, streaming (constant memory) and keeping the audio.

    ``style``: a style name/path, a blend ``"a:0.6,b:0.4"``, :class:`~fastnst.styles.StyleModel`,
    :class:`TransformerNet` or a ready :class:`Stylizer` (then its own device, dtype, working size
    and compilation hold); None: the default style. Or ``schedule``
    (:class:`fastnst.timeline.Schedule`, e.g. :func:`fastnst.timeline.load_schedule`): styles over
    time with cross-fades, its times in seconds on the input's own clock (also with ``start``); a
    change at or after the video's end is an error.

    Settings come as :class:`~fastnst.options.EngineOptions` ``engine`` (device, dtype, strength,
    preserve_color, max_size, scale, work_size, upsampler, stabilize, threads) and
    :class:`~fastnst.options.VideoOptions` ``video`` (start, duration, batch_size, codec, crf,
    preset), or as keyword ``settings`` of those names (``stylize_video(a, b, device="cpu",
    work_size=256, start=5)``), which override them; defaults and meanings are the fields'.
    Audio streams are copied packet for packet, or transcoded to AAC when the container cannot hold
    them (see ``notes``). ``compile`` is passed to :class:`Stylizer`; ``queue_frames`` sizes the
    decoder's queue.

    The file appears under ``output`` only when complete (``force=False``: never replacing a file);
    a failure or KeyboardInterrupt removes the temporary file. Corrupt, truncated or empty inputs
    raise :class:`FastNSTError`.
    """
    engine, video = _options(engine, video, settings, "stylize_video")
    in_path, out_path = Path(input), Path(output)
    _check_request(in_path, out_path, video, force)
    strength = _stabilize_strength(engine.stabilize)
    schedule, ready = plan_styles(style, schedule, engine.strength)
    if len(schedule.entries) > 1:
        schedule.check_duration(_video_duration(in_path))
    mixer = build_mixer(schedule.styles(), ready, preserve_color=engine.preserve_color,
                        **stylizer_kwargs(engine, compile=compile))
    stabilizer = stream_state(strength, video=mixer.video)
    source = _open_source(in_path, video)
    run = _start_run(mixer, schedule, stabilizer, source, out_path, engine, video, progress, queue_frames)
    try:
        batcher = _cuda_batcher(run) if run.stylizer.device.type == "cuda" else None
        with memory_errors(f"stylizing {in_path}"):
            seconds = _execute(run, batcher, round(Fraction(video.start) / source.time_base) if video.start else 0)
    finally:
        run.tuner.restore()
        run.bar.close()
        if not (run.reader.thread.is_alive() or run.writer.thread.is_alive()):
            source.container.close()
    return _video_result(run, seconds)


def _cuda_batcher(run: _Run) -> CudaBatcher:
    return CudaBatcher(run.stylizer.device, run.run_batch, run.batch_size, 3, run.take_buffer)


def _execute(run: _Run, batcher: CudaBatcher | None, pts_offset: int) -> float:
    """Run the three stages to the end and commit the output; returns the seconds taken. On any
    failure (or Ctrl-C) every stage is stopped and the temporary output removed before re-raising."""
    reader, writer = run.reader, run.writer
    t0 = time.perf_counter()
    try:
        reader.thread.start()
        writer.thread.start()
        _main_loop(run, pts_offset, batcher)
        while writer.thread.is_alive():
            writer.thread.join(timeout=0.1)
        writer.check()
        if writer.writer is None:
            raise FastNSTError(f"{run.source.path} produced no frames to write.")
        writer.writer.commit()
        run.bar.total = run.frames_done  # the header's frame count is only an estimate
        run.bar.refresh()
    except BaseException as exc:
        run.stop.set()
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


def _video_result(run: _Run, seconds: float) -> VideoResult:
    w, src, routes = run.writer.writer, run.source, run.output.routes
    notes = list(src.notes) + list(w.notes)
    if src.declared and run.last_time + 2 / float(src.fps) < 0.9 * src.declared:
        notes.append(f"the video ended at {run.last_time:.1f} s although its header says {src.declared:.1f} s "
                     "(truncated file?)")
    notes += _schedule_notes(run.schedule, run.last_time)
    notes += run.mixer.engine_notes
    if run.stabilizer is not None and run.stabilizer.cuts:
        notes.append(f"stabilisation restarted at {run.stabilizer.cuts} shot cut(s)")
    return VideoResult(
        input=src.path, output=run.output.path, frames=run.frames_done, seconds=seconds,
        fps=run.frames_done / max(seconds, 1e-9), width=w.encoded_size[0], height=w.encoded_size[1],
        size_note=w.size_note, video_fps=src.fps,
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
    """Outcome of :func:`stylize_path`: the files written, and the video result when it was a video;
    ``notes`` for images (a video's are in its result)."""

    outputs: list[Path]
    seconds: float
    video: VideoResult | None = None
    notes: list[str] = field(default_factory=list)


class _ImageRenderer:
    """``(H,W,3)`` uint8 → stylized uint8, as the schedule (or style) stands at 0 s."""

    def __init__(self, style, schedule: Schedule | None, engine: EngineOptions) -> None:
        schedule, ready = plan_styles(style, schedule, engine.strength)
        self.mix = schedule.at(0.0)
        self.mixer = build_mixer(list(self.mix.weights), ready, preserve_color=engine.preserve_color,
                                 **stylizer_kwargs(engine, max_size=engine.max_size))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        check_memory(self.mixer.stylizers.values(), h, w, what=f"for a {w}x{h} image")
        with memory_errors(f"stylizing a {w}x{h} image"):
            return self.mixer(image, self.mix)


class BatchError(FastNSTError):
    """Some images of a folder run failed after others were written: :attr:`written` (the files that
    exist), :attr:`failed` (``(input, reason)``) and :attr:`untried` (inputs left when a write
    failure stopped the run: a full disk fails every later image too)."""

    def __init__(self, written: list[Path], failed: list[tuple[Path, str]], untried: list[Path]) -> None:
        self.written, self.failed, self.untried = written, failed, untried
        total = len(written) + len(failed) + len(untried)
        reasons = "; ".join(reason.rstrip(".") for _, reason in failed)
        rest = f"; the remaining {len(untried)} were not tried" if untried else ""
        super().__init__(f"{len(failed) + len(untried)} of {total} images were not written "
                         f"({len(written)} were): {reasons}{rest}.")


def _some(paths: list[Path], limit: int = 5) -> str:
    names = ", ".join(str(p) for p in paths[:limit])
    return names + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _folder_inputs(in_path: Path, out_path: Path) -> list[Path]:
    """The images of a folder run; an output folder inside the input folder is left out, so a second
    run never stylizes the first run's results again."""
    out_real, in_real = out_path.resolve(), in_path.resolve()
    if out_real == in_real:
        raise FastNSTError("The output folder must differ from the input folder.")
    images = [p for p in list_images(in_path) if not p.resolve().is_relative_to(out_real)]
    if not images:
        raise FastNSTError(f"Folder {in_path} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    return images


def _check_batch(jobs: list[tuple[Path, Path]], in_path: Path, out_path: Path, force: bool) -> None:
    """Refuse a folder run before anything is written: an input whose header cannot be read (or is
    over the pixel limit), an output that exists (without ``force``) or is a folder."""
    from .images import check_pixels, header_size

    bad: list[str] = []
    for src, _ in jobs:
        try:
            size = header_size(src)
            if size is None:
                raise FastNSTError(f"{src} (not a readable image: unknown or damaged header)")
            check_pixels(size[0], size[1], None, str(src))
        except OSError as exc:
            bad.append(f"{src} ({exc.strerror or exc})")
        except FastNSTError as exc:
            bad.append(str(exc).rstrip("."))
    if bad:
        raise FastNSTError(f"{len(bad)} of the {len(jobs)} images in {in_path} cannot be stylized, so nothing was "
                           f"written: {'; '.join(bad[:5])}{f'; and {len(bad) - 5} more' if len(bad) > 5 else ''}.")
    folders = [dst for _, dst in jobs if dst.is_dir()]
    if folders:
        raise FastNSTError(f"Output {folders[0]} is a folder; move it away (nothing was written).")
    taken = [dst for _, dst in jobs if dst.exists()]
    if taken and not force:
        raise FastNSTError(f"Outputs already exist under {out_path} ({len(taken)} of {len(jobs)}: {_some(taken)}); "
                           "pass --force to replace them (nothing was written).")


def _stylize_folder(in_path: Path, out_path: Path, render: Callable[[], Callable], progress: bool,
                    force: bool) -> list[Path]:
    """Every image under ``in_path`` → the same place under ``out_path``; ``render()`` makes the renderer
    once the request is known to be sound. An image that fails once others are written does not stop
    the others (a :class:`BatchError` at the end lists both), except a failed write, which would fail
    again for every later image."""
    from tqdm.auto import tqdm

    if out_path.exists() and not out_path.is_dir():
        raise FastNSTError(f"Output {out_path} must be a folder when the input is a folder.")
    jobs = [(src, out_path / src.relative_to(in_path)) for src in _folder_inputs(in_path, out_path)]
    _check_batch(jobs, in_path, out_path, force)
    check_writable(out_path, folder=True)
    renderer = render()
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    # closed before any error is raised, so the message starts a line of its own
    with tqdm(total=len(jobs), unit="image", disable=not progress, desc=in_path.name) as bar, \
            _listing_on_interrupt(written):
        for i, (src, dst) in enumerate(jobs):
            try:
                image = renderer(read_image(src))
            except FastNSTError as exc:
                failed.append((src, str(exc)))
                bar.update()
                continue
            try:
                written.append(write_image(dst, image))
            except FastNSTError as exc:
                failed.append((src, str(exc)))
                raise BatchError(written, failed, [s for s, _ in jobs[i + 1:]]) from exc
            bar.update()
    if failed:
        raise BatchError(written, failed, [])
    return written


@contextlib.contextmanager
def _listing_on_interrupt(written: list[Path]) -> Iterator[None]:
    """Ctrl-C or SIGTERM during a folder run: the interrupt carries the files already written
    (``.written``), so the command line can say what exists."""
    try:
        yield
    except KeyboardInterrupt as exc:
        exc.written = list(written)  # type: ignore[attr-defined]
        raise


def _stylize_image(in_path: Path, out_path: Path, render: Callable[[], Callable], force: bool) -> Path:
    if out_path.is_dir():
        out_path = out_path / in_path.name
    if out_path.exists() and out_path.resolve() == in_path.resolve():
        raise FastNSTError("The output must not overwrite the input image.")
    image = read_image(in_path)  # a broken input is the first thing to say
    if out_path.suffix.lower() not in IMAGE_SUFFIXES:
        raise FastNSTError(f"Cannot write images as {out_path.suffix or 'files without an extension'}; use .png or .jpg.")
    refuse_existing(out_path, force)
    check_writable(out_path)
    return write_image(out_path, render()(image))


def stylize_path(
    input: str | os.PathLike,
    output: str | os.PathLike,
    style=None,
    *,
    schedule: Schedule | None = None,
    engine: EngineOptions | None = None,
    video: VideoOptions | None = None,
    progress: bool = True,
    force: bool = True,
    **settings,
) -> PathResult:
    """Stylize an image, a folder of images (→ a folder mirroring its layout) or a video file
    (→ :func:`stylize_video`), choosing by what ``input`` is.

    ``style``/``schedule``/``engine``/``video``/``settings`` as in :func:`stylize_video` (``video``
    settings, ``compile`` and ``queue_frames`` only matter for a video); images are rendered as the
    schedule stands at 0 s (blends, strength and colour preservation apply)."""
    extra = {k: settings.pop(k) for k in ("compile", "queue_frames") if k in settings}
    engine, video = _options(engine, video, settings, "stylize_path")
    in_path, out_path = check_name(input), check_name(output)
    t0 = time.perf_counter()
    if not in_path.exists():
        raise FastNSTError(f"Input {in_path} does not exist.")
    made: list[_ImageRenderer] = []  # the renderer, once the request is known to be sound, for its notes

    def render() -> _ImageRenderer:
        made.append(_ImageRenderer(style, schedule, engine))
        return made[-1]

    if in_path.is_dir() or in_path.suffix.lower() in IMAGE_SUFFIXES:
        written = (_stylize_folder(in_path, out_path, render, progress, force) if in_path.is_dir()
                   else [_stylize_image(in_path, out_path, render, force)])
        return PathResult(written, time.perf_counter() - t0, notes=made[0].mixer.engine_notes if made else [])
    if engine.max_size is not None and engine.max_size < 8:
        raise FastNSTError(f"--max-size must be at least 8 pixels, got {engine.max_size}.")
    result = stylize_video(in_path, out_path, style, schedule=schedule, engine=engine, video=video,
                           progress=progress, force=force, **extra)
    return PathResult([result.output], result.seconds, result)


__all__ = [
    "DEFAULT_STABILIZE",
    "BatchError",
    "EngineOptions",
    "PathResult",
    "Stylizer",
    "VideoOptions",
    "VideoResult",
    "as_stylizer",
    "parse_dtype",
    "stylize_path",
    "stylize_video",
]

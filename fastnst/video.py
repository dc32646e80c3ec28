"""Video file edges (PyAV): probing, decoding to ``(H,W,3)`` uint8 RGB, encoding, audio remux.

Frames leave this module upright (the container's display rotation is applied to the pixels, so
outputs carry no rotation metadata) and, when asked, downscaled during the colour conversion
(one swscale pass). Timestamps travel with the frames as ``pts`` in the input stream's
``time_base``; :class:`VideoWriter` encodes them unchanged, so variable frame rate survives.

Audio is remuxed packet by packet (the bytes are not touched); a codec the output container cannot
hold is transcoded to AAC instead, and :attr:`VideoWriter.notes` says so. Outputs are written under
a temporary name in the destination folder (:func:`fastnst.fileio.temp_path`, ``.name.TOKEN.part.mp4``)
and renamed when complete.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import heapq
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import FastNSTError
from .fileio import atomic_path, cannot_write
from .options import CRF_RANGE, DEFAULT_CRF, PRESETS

DEFAULT_FPS = Fraction(25)

# Codecs whose rate control takes the x264-style ``crf``/``preset`` options (ranges: fastnst.options).
_CRF_CODECS = ("libx264", "libx265", "libx264rgb")
# x264 and x265 refuse odd sizes in chroma-subsampled formats (4:2:0, 4:2:2); 4:4:4 takes any size.
_EVEN_ONLY = ("libx264", "libx265")
_SUBSAMPLED = ("yuv420", "yuvj420", "yuv422", "yuvj422", "nv")
# FFmpeg errors that mean the output cannot be written (rather than an encoder failure)
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EFBIG, errno.EPERM)


@dataclass
class VideoInfo:
    """What a video file holds, from its headers and its first decoded frame.

    ``width``/``height`` are the displayed size (after rotation); ``coded_width``/``coded_height``
    what the decoder produces. ``frames`` is an estimate when the container stores no count
    (duration × frame rate). ``rotation`` is the counter-clockwise display angle in degrees.
    """

    path: Path
    width: int
    height: int
    coded_width: int
    coded_height: int
    fps: Fraction
    frames: int
    duration: float | None
    rotation: int
    codec: str
    time_base: Fraction
    has_audio: bool
    audio_codec: str | None
    audio_streams: int = 0
    container: str = ""
    pix_fmt: str = ""  # the decoded frames' pixel format: yuv420p, yuv444p, rgb24…
    chroma_subsampled: bool = False  # colour stored below the picture's resolution (4:2:0, 4:2:2, nv12…)


@dataclass
class DecodedFrame:
    """One decoded frame: ``image`` is ``(H,W,3)`` uint8 RGB (upright, resized); ``pts`` is in
    ``time_base`` units of the input stream (never None: missing stamps are synthesised);
    ``time`` in seconds."""

    image: np.ndarray
    pts: int
    time: float


@dataclass
class VideoSize:
    """Planned decode geometry: coded (pre-rotation) target size and the quarter turns to apply."""

    width: int
    height: int
    quarter_turns: int

    @property
    def display(self) -> tuple[int, int]:
        """(width, height) of the upright frames."""
        return (self.height, self.width) if self.quarter_turns % 2 else (self.width, self.height)


# --------------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FastNSTError(f"Video {path} does not exist.")
    if not path.is_file():
        raise FastNSTError(f"{path} is not a file.")
    if path.stat().st_size == 0:
        raise FastNSTError(f"Video {path} is empty (0 bytes).")


def open_input(path: str | os.PathLike, *, max_pixels: int | None = None):
    """Open a video file for demuxing; unreadable files raise :class:`FastNSTError`, and so do frames
    over ``max_pixels`` (``None``: :data:`fastnst.images.DEFAULT_MAX_PIXELS` or the
    :func:`fastnst.images.pixel_limit` in force; 0: no limit), judged from the stream's header before
    anything is decoded.

    Returns ``(container, video_stream)``; the caller closes the container.
    """
    import av

    from .images import check_pixels

    path = Path(path)
    _check_file(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise FastNSTError(f"Cannot read {path} as a video (corrupt, truncated or unsupported file: {exc}).") from exc
    if not container.streams.video:
        container.close()
        raise FastNSTError(f"{path} has no video stream.")
    stream = container.streams.video[0]
    try:
        check_pixels(stream.codec_context.width or 0, stream.codec_context.height or 0, max_pixels,
                     f"Video {path}: each frame")
    except FastNSTError:
        container.close()
        raise
    # Must be set before the codec opens (first decode); frame+slice threading is several times faster.
    stream.thread_type = "AUTO"
    return container, stream


def stream_fps(stream) -> Fraction:
    """Nominal frame rate of a video stream (average, else guessed, else 25)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < rate < 1000:
            return Fraction(rate)
    return DEFAULT_FPS


def stream_duration(container, stream) -> float | None:
    """Declared duration in seconds (stream, else container), or None when neither says."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _quarter_turns(rotation: float | None) -> int:
    """Counter-clockwise display angle → number of np.rot90 quarter turns (0..3)."""
    return round((rotation or 0) / 90.0) % 4


def plan_size(coded_width: int, coded_height: int, rotation: int, max_size: int | None) -> VideoSize:
    """Decode geometry: downscale (never up) so the longer side is at most ``max_size``; a downscaled
    size is rounded to even numbers, so that it keeps the 4:2:0 encoding every player plays."""
    w, h = coded_width, coded_height
    if max_size and max(w, h) > max_size:
        s = max(2, max_size - max_size % 2) / max(w, h)
        w, h = (max(2, 2 * round(v * s / 2)) for v in (w, h))
    return VideoSize(w, h, _quarter_turns(rotation))


def frame_to_rgb(frame, size: VideoSize, *, fit: bool = False) -> np.ndarray:
    """A decoded ``av.VideoFrame`` → ``(H,W,3)`` uint8 RGB, resized and turned upright. ``fit`` (for
    a frame of another size than the stream's first): scaled to fit inside ``size`` and centred on
    black, rather than stretched to another shape."""
    w, h = size.width, size.height
    if fit:
        s = min(w / frame.width, h / frame.height)
        w, h = min(w, max(1, round(frame.width * s))), min(h, max(1, round(frame.height * s)))
    if (frame.width, frame.height) != (w, h):
        img = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
    else:
        img = frame.to_ndarray(format="rgb24")
    if (w, h) != (size.width, size.height):
        top, left = (size.height - h) // 2, (size.width - w) // 2
        img = np.pad(img, ((top, size.height - h - top), (left, size.width - w - left), (0, 0)))
    if size.quarter_turns:
        img = np.ascontiguousarray(np.rot90(img, size.quarter_turns))
    return img


def probe(path: str | os.PathLike, *, max_pixels: int | None = None) -> VideoInfo:
    """Read a video's headers and decode its first frame (for the size and the rotation);
    ``max_pixels`` as in :func:`open_input`."""
    import av

    path = Path(path)
    container, stream = open_input(path, max_pixels=max_pixels)
    with container:
        first = None
        try:
            for first in container.decode(stream):
                break
        except (av.error.FFmpegError, ValueError) as exc:
            raise FastNSTError(f"Cannot decode {path}: corrupt or truncated video ({exc}).") from exc
        if first is None:
            raise FastNSTError(f"{path} contains no decodable video frames.")
        rotation = round(getattr(first, "rotation", 0) or 0)
        cw, ch = first.width, first.height
        size = plan_size(cw, ch, rotation, None)
        w, h = size.display
        fps = stream_fps(stream)
        duration = stream_duration(container, stream)
        frames = int(stream.frames or 0)
        if frames <= 0 and duration:
            frames = round(duration * fps)
        audio = list(container.streams.audio)
        return VideoInfo(
            path=path, width=w, height=h, coded_width=cw, coded_height=ch, fps=fps, frames=frames,
            duration=duration, rotation=rotation, codec=stream.codec_context.name,
            time_base=Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000),
            has_audio=bool(audio), audio_codec=audio[0].codec_context.name if audio else None,
            audio_streams=len(audio), container=container.format.name, pix_fmt=first.format.name,
            chroma_subsampled=any(c.width < cw or c.height < ch for c in first.format.components),
        )


def estimate_frames(container, stream, start: float | None, duration: float | None) -> int | None:
    """How many frames decoding ``[start, start + duration)`` will give, for a progress bar (None: unknown)."""
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


def _seek(container, start: float | None) -> None:
    if start and start > 0:
        import av

        # Seek to the key frame at or before ``start``; frames before it are decoded and dropped.
        container.seek(int(start * av.time_base), backward=True, any_frame=False)


class _PtsReorder:
    """Gives decoded frames (which leave the decoder in display order) increasing timestamps.

    Frame pts are normally increasing already; but AVI stores no pts, so with B-frames the decoded
    stamps come out shuffled within the reorder depth (1, 4, 3, 5, 2, …). Holding ``depth`` frames
    and handing out the smallest stamp seen so far restores the order exactly for any shuffle no
    deeper than ``depth``, and is a no-op for well-behaved streams (variable frame rate included).

    A stamp further back than any reorder can explain is a discontinuity (concatenated .ts files,
    a camera's stream restarting): later stamps are shifted to continue one frame period after the
    latest, so the second part neither overlaps the first nor gets squeezed into single ticks.
    """

    def __init__(self, step: int, first: int, depth: int = 8) -> None:
        self.step, self.first, self.depth = step, first, depth
        self.frames: deque = deque()
        self.heap: list[int] = []
        self.top: int | None = None  # largest stamp seen
        self.last: int | None = None  # last stamp handed out
        self.offset = 0  # added to the stream's stamps after discontinuities

    def push(self, frame) -> Iterator[tuple[object, int]]:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:  # no stamp at all: one frame period after the latest
            pts = self.first if self.top is None else self.top + self.step
        else:
            pts += self.offset
            if self.top is not None and pts < self.top - self.depth * self.step:
                self.offset += self.top + self.step - pts
                pts = self.top + self.step
        self.top = pts if self.top is None else max(self.top, pts)
        heapq.heappush(self.heap, pts)
        self.frames.append(frame)
        while len(self.frames) > self.depth:
            yield self._pop()

    def flush(self) -> Iterator[tuple[object, int]]:
        while self.frames:
            yield self._pop()

    def _pop(self) -> tuple[object, int]:
        pts = heapq.heappop(self.heap)
        if self.last is not None and pts <= self.last:  # duplicates: nudge one tick
            pts = self.last + 1
        self.last = pts
        return self.frames.popleft(), pts


@dataclass
class _Window:
    """The part ``[t_start, t_end)`` (seconds) of a decoded stream, with its state explicit: the
    decode geometry (planned from the first frame kept, whose size is checked first), the frames
    kept so far, and whether the video part is over."""

    time_base: Fraction
    t_start: float
    t_end: float
    max_size: int | None
    max_pixels: int | None
    path: str | os.PathLike
    size: VideoSize | None = None
    n: int = 0
    done: bool = False
    seen: set = field(default_factory=set)  # coded sizes met so far (a stream may change size)
    first: tuple[int, int] | None = None  # the first frame's coded size, which sets the output's
    notes: list[str] = field(default_factory=list)

    def frames(self, ready: Iterable[tuple[object, int]]) -> Iterator[DecodedFrame]:
        """The decoded ``(frame, pts)`` pairs inside the window, as :class:`DecodedFrame`."""
        from .images import check_pixels

        for frame, pts in ready:
            t = float(pts * self.time_base)
            if t < self.t_start - 1e-6 or self.done:
                continue
            if t >= self.t_end:
                self.done = True
                continue
            if (frame.width, frame.height) not in self.seen:
                check_pixels(frame.width, frame.height, self.max_pixels, f"Video {self.path}: each frame")
                if self.size is None:
                    self.size = plan_size(frame.width, frame.height, getattr(frame, "rotation", 0), self.max_size)
                    self.first = (frame.width, frame.height)
                else:
                    w, h = self.size.display
                    self.notes.append(f"the frame size changes to {frame.width}x{frame.height} at {t:.2f} s; those "
                                      f"frames were fitted into {w}x{h}, black borders keeping their shape")
                self.seen.add((frame.width, frame.height))
            self.n += 1
            yield DecodedFrame(frame_to_rgb(frame, self.size, fit=(frame.width, frame.height) != self.first),
                               int(pts), t)

    def audio(self, packet) -> str:
        """``"keep"`` an audio packet inside the window, ``"skip"`` one outside it (or empty), or
        ``"stop"``: past the end with the video part over, nothing more is wanted."""
        if packet.size == 0 or packet.pts is None:
            return "skip"
        t = float(packet.pts * packet.time_base)
        end = t + float((packet.duration or 0) * packet.time_base)
        # A packet that ends inside the window holds some of its sound; from the file's start, so do the
        # ones stamped before 0: AAC's priming packet (encoder delay), which the next one's decoding
        # overlaps with, and which MP4 hides from players by an edit list.
        if t < self.t_end and (self.t_start <= 0 or t >= self.t_start - 1e-6 or end > self.t_start + 1e-6):
            return "keep"
        return "stop" if self.done and t >= self.t_end else "skip"


def check_segment(start: float | None, duration: float | None) -> None:
    """Refuse a segment that cannot be decoded (one sentence): ``start`` < 0 or ``duration`` ≤ 0."""
    if start is not None and start < 0:
        raise FastNSTError("--start must be zero or positive.")
    if duration is not None and duration <= 0:
        raise FastNSTError("--duration must be positive.")


def iter_decoded(
    container,
    stream,
    *,
    start: float | None = None,
    duration: float | None = None,
    max_size: int | None = None,
    audio_streams: Sequence = (),
    path: str | os.PathLike = "input",
    max_pixels: int | None = None,
    notes: list[str] | None = None,
) -> Iterator[DecodedFrame | object]:
    """Demux and decode: yields :class:`DecodedFrame` for video and raw ``av.Packet`` objects for the
    given audio streams, in demux order, restricted to ``[start, start + duration)``.

    The ``pts`` sequence is strictly increasing (see :class:`_PtsReorder`; missing stamps become the
    previous one plus a frame period). PyAV's demux ends with an empty packet per stream, whose
    decode flushes the frames the decoder held back. The first frame's size is checked against
    ``max_pixels`` (as in :func:`open_input`, for containers whose header states no size), and so
    is each new size of a stream that changes size; such frames are fitted into the first frame's
    size (:func:`frame_to_rgb`) and ``notes`` (a list, when given) gets a line for each new size.
    """
    import av

    check_segment(start, duration)
    tb = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000)
    t_start = float(start or 0.0)
    window = _Window(tb, t_start, t_start + duration if duration is not None else math.inf, max_size, max_pixels,
                     path, notes=notes if notes is not None else [])
    reorder = _PtsReorder(step=max(1, round(1 / (stream_fps(stream) * tb))), first=round(Fraction(t_start) / tb))
    _seek(container, start)
    audio_ids = {s.index for s in audio_streams}
    try:
        for packet in container.demux(stream, *audio_streams):
            if packet.stream.index in audio_ids:
                verdict = window.audio(packet)
                if verdict == "stop":
                    break
                if verdict == "keep":
                    yield packet
            elif not window.done:
                for frame in packet.decode():
                    yield from window.frames(reorder.push(frame))
            elif not audio_ids:
                break
        yield from window.frames(reorder.flush())
    except av.error.FFmpegError as exc:
        raise FastNSTError(f"Decoding {path} failed after {window.n} frames: corrupt or truncated video "
                           f"({exc}).") from exc
    if window.n == 0:
        where = f" after {t_start:g} s" if t_start else ""
        raise FastNSTError(f"{path} contains no decodable video frames{where}.")


def read_frames(
    path: str | os.PathLike,
    *,
    start: float | None = None,
    duration: float | None = None,
    max_size: int | None = None,
    max_pixels: int | None = None,
) -> Iterator[np.ndarray]:
    """Decode a video file lazily: yields ``(H,W,3)`` uint8 RGB frames, upright (rotation applied),
    downscaled so the longer side is at most ``max_size``, from ``start`` seconds for ``duration``
    seconds. Raises :class:`FastNSTError` for missing, empty, corrupt or truncated files.

    The file is opened on the first ``next()`` and closed when the iterator finishes or is closed.
    ``max_pixels`` as in :func:`open_input`.
    """
    container, stream = open_input(path, max_pixels=max_pixels)  # fail early, before the first next()

    def gen() -> Iterator[np.ndarray]:
        with container:
            for item in iter_decoded(container, stream, start=start, duration=duration, max_size=max_size,
                                     path=path, max_pixels=max_pixels):
                yield item.image  # type: ignore[union-attr]

    return gen()


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def check_encoder(codec: str, crf: float | None = None, preset: str | None = None, *, strict: bool = True) -> str:
    """Refuse an encoder, CRF or preset that cannot work, before anything is decoded; returns the
    encoder's FFmpeg name (``h264`` → ``libx264``). ``crf``/``preset`` None: not given. ``strict``:
    refuse a CRF or preset given for an encoder that takes neither (else they are ignored)."""
    import av

    try:
        encoder = av.Codec(codec, "w")
    except Exception as exc:  # av raises several types for unknown names
        raise FastNSTError(f"Unknown or unavailable video encoder {codec!r}; libx264 (the default), libx265, "
                           "libvpx-vp9 and mpeg4 are common (`fastnst info` lists this FFmpeg's).") from exc
    if encoder.type != "video":
        raise FastNSTError(f"{codec!r} is an {encoder.type} codec, not a video encoder; give --codec a video encoder "
                           "such as libx264 (the default) or libx265 (the audio is copied on its own).")
    name = encoder.name
    if name in _CRF_CODECS:
        lo, hi = CRF_RANGE
        if crf is not None and not lo <= float(crf) <= hi:  # NaN fails too
            raise FastNSTError(f"--crf must be from {lo} (lossless) to {hi} (worst) for {name}, got {float(crf):g}.")
        if preset is not None and preset not in PRESETS:
            raise FastNSTError(f"--preset must be one of {', '.join(PRESETS)} for {name}, got {preset!r}.")
    elif strict and (crf is not None or preset is not None):
        given = [f for f, v in (("--crf", crf), ("--preset", preset)) if v is not None]
        raise FastNSTError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} to libx264 and "
                           f"libx265 only; the {name} encoder takes neither (leave {'them' if len(given) > 1 else 'it'} out).")
    return name


@functools.cache
def _muxers() -> dict[str, str]:
    import av

    found: dict[str, str] = {}
    for name in sorted(av.formats_available):
        try:
            extensions = av.ContainerFormat(name, "w").extensions
        except ValueError:  # demuxer-only names have no writer
            extensions = ()
        for ext in extensions:
            found.setdefault(ext.lower(), name)
    return found


def check_container(path: str | os.PathLike, codec: str) -> str:
    """The FFmpeg muxer that ``path``'s extension picks, checked to hold ``codec`` video; a
    :class:`FastNSTError` otherwise (before any folder or file is made)."""
    import io

    import av

    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    muxer = _muxers().get(ext)
    if muxer is None or muxer == "image2":
        raise FastNSTError(f"Output {path}: .{ext or '(none)'} is not a video file type FFmpeg can write; "
                           "use .mp4, .mkv or .avi.")
    with av.open(io.BytesIO(), "w", format=muxer) as probe_container:
        supported = probe_container.supported_codecs
    if supported and codec not in supported:
        raise FastNSTError(f"A .{ext} file cannot hold {codec} video; use .mkv, or another --codec.")
    return muxer


def pick_pix_fmt(codec: str, width: int, height: int) -> str:
    """The pixel format to encode ``width × height`` frames with: 4:2:0 (yuv420p, what every player
    plays) unless x264/x265 would then need the size padded to even, where 4:4:4 (yuv444p) keeps the
    exact size; an encoder without yuv420p gets its first format."""
    import av

    formats = [f.name for f in (av.Codec(codec, "w").video_formats or [])]
    if (width % 2 or height % 2) and av.Codec(codec, "w").name in _EVEN_ONLY and "yuv444p" in formats:
        return "yuv444p"
    return "yuv420p" if not formats or "yuv420p" in formats else formats[0]


def even_pad(img: np.ndarray) -> np.ndarray:
    """Pad ``(H,W,3)`` to even H and W by repeating the last row/column (yuv420p needs even sizes)."""
    h, w = img.shape[:2]
    ph, pw = h % 2, w % 2
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return img


class _Aborted(Exception):
    """Handed to the writer's atomic_path to make it delete the temporary file."""


@dataclass
class _AudioRoute:
    out: object
    transcode: bool
    in_stream: object
    offset: int = 0  # ticks (input time_base) subtracted from timestamps, for segments
    last_dts: int | None = None
    packets: int = 0


@dataclass
class VideoWriter:
    """Encode ``(H,W,3)`` uint8 RGB frames to a video file, remuxing audio from an input container.

    ``time_base`` is the unit of the ``pts`` passed to :meth:`write` (the input stream's, so
    timestamps and variable frame rate are kept); ``fps`` is the nominal rate for the encoder's rate
    control. ``pix_fmt`` None: :func:`pick_pix_fmt` (an odd size is kept, in 4:4:4, with x264/x265);
    an odd size that the encoder cannot take in ``pix_fmt`` is padded to even by edge repetition
    (:attr:`encoded_size`, :attr:`size_note`). ``crf``/``preset`` apply to x264/x265 only (checked by
    :func:`check_encoder`). Use as a context manager:
    leaving it normally finalises and renames; leaving it by an exception deletes the temporary file
    (:attr:`tmp`, named by :func:`fastnst.fileio.temp_path` with the output's extension, which
    picks the muxer).
    """

    path: Path
    width: int
    height: int
    fps: Fraction = DEFAULT_FPS
    time_base: Fraction | None = None
    codec: str = "libx264"
    crf: float | None = DEFAULT_CRF
    preset: str | None = "medium"
    pix_fmt: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        import av

        self.path = Path(self.path)
        if not self.path.suffix:
            raise FastNSTError(f"Output {self.path} needs an extension (.mp4, .mkv, .avi, …) to pick a container.")
        self._choose_format()
        # fileio's atomic_path, held open across calls: commit() leaves it (rename), abort() fails it (delete);
        # it creates the folder, and removes it again if this writer fails having created it
        self._output = atomic_path(self.path)
        self.tmp = self._output.__enter__()
        self.fps = Fraction(self.fps).limit_denominator(1_000_000) if self.fps else DEFAULT_FPS
        self.time_base = Fraction(self.time_base) if self.time_base else 1 / self.fps
        self._audio: dict[int, _AudioRoute] = {}
        self._last_pts: int | None = None
        self.frames = 0
        self._state = "closed"  # nothing to close yet if the container cannot be opened
        self._file = None
        try:
            # A file object of ours, not a path: after a failed write (a full disk) PyAV keeps a path's
            # descriptor open even once the container is closed, and the deleted file's space with it.
            self._file = open(self.tmp, "wb", buffering=0)  # noqa: SIM115 - closed by finish() or abort()
            self.container = av.open(self._file, mode="w", format=_muxers().get(self.path.suffix.lower()[1:]))
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            self.abort()
            raise FastNSTError(f"Cannot write {self.path} ({exc}).") from exc
        self._state = "open"
        try:
            self._open_video()
        except BaseException:
            self.abort()
            raise

    def _choose_format(self) -> None:
        """The encoder's name, pixel format and encoded size, and a note when the size is not the frames'."""
        self.codec = check_encoder(self.codec, self.crf, self.preset, strict=False)
        self.pix_fmt = self.pix_fmt or pick_pix_fmt(self.codec, self.width, self.height)
        odd = bool(self.width % 2 or self.height % 2)
        pad = odd and self.codec in _EVEN_ONLY and self.pix_fmt.startswith(_SUBSAMPLED)
        self.encoded_size = (self.width + self.width % 2, self.height + self.height % 2) if pad else \
            (self.width, self.height)
        self.size_note = f"padded to even for {self.pix_fmt}" if pad else ""
        if odd and self.pix_fmt == "yuv444p":
            self.size_note = "yuv444p, to keep the odd size"
            self.notes.append(f"{self.width}x{self.height} is odd, so it was encoded in 4:4:4 (yuv444p) to keep it; "
                              "some players (browsers among them) play only 4:2:0 video")

    def _open_video(self) -> None:
        import av

        w, h = self.encoded_size
        options = dict(self.options)
        if self.codec in _CRF_CODECS:
            if self.container.format.name == "avi":
                options.setdefault("bf", "0")  # AVI has no pts: B-frames would read back out of order
            if self.crf is not None:
                options.setdefault("crf", f"{float(self.crf):g}")
            if self.preset:
                options.setdefault("preset", self.preset)
        if self.codec == "libx265":
            options.setdefault("x265-params", "log-level=error")  # x265 logs a page to stderr per run otherwise
        try:
            vs = self.container.add_stream(self.codec, rate=self.fps, options=options)
        except (av.error.FFmpegError, ValueError, TypeError) as exc:
            raise FastNSTError(f"Unknown or unavailable video codec {self.codec!r} ({exc}).") from exc
        if vs.type != "video":
            raise FastNSTError(f"{self.codec!r} is not a video codec.")
        vs.width, vs.height, vs.pix_fmt = w, h, self.pix_fmt
        # AVI stores no timestamps (one chunk per tick): encode at 1/fps and renumber the frames.
        self._out_time_base = 1 / self.fps if self.container.format.name == "avi" else self.time_base
        vs.codec_context.time_base = self._out_time_base
        vs.time_base = self._out_time_base
        self.stream = vs

    # -- audio ------------------------------------------------------------------------------------

    def add_audio(self, in_stream, *, start: float | None = None) -> str:
        """Route an input audio stream to the output: packet copy when the container can hold the
        codec, else AAC transcode. ``start`` (s) shifts timestamps for segments. Returns "copy" or
        "aac"."""
        import av

        name = in_stream.codec_context.name
        supported = self.container.supported_codecs
        offset = round(Fraction(start or 0) / Fraction(in_stream.time_base)) if start else 0
        if name in supported:
            try:
                out = self.container.add_stream_from_template(in_stream)
                self._audio[in_stream.index] = _AudioRoute(out, False, in_stream, offset)
                return "copy"
            except (av.error.FFmpegError, ValueError):
                pass
        rate = in_stream.codec_context.sample_rate or 48000
        out = self.container.add_stream("aac", rate=rate)
        # By channel count: sources often carry an unordered layout ("1 channels") that AAC refuses.
        channels = in_stream.codec_context.channels or 2
        out.codec_context.layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels, "stereo")
        self._audio[in_stream.index] = _AudioRoute(out, True, in_stream, offset)
        self.notes.append(f"audio stream {in_stream.index} ({name}) cannot go into {self.path.suffix}; "
                          "transcoded to AAC")
        return "aac"

    def mux_audio(self, packet) -> None:
        """Write one demuxed audio packet (timestamps shifted for segments, DTS kept increasing)."""
        route = self._audio.get(packet.stream.index)
        if route is None or packet.size == 0:
            return
        if route.transcode:
            self._transcode(route, packet)
            return
        if packet.dts is not None and route.last_dts is not None:
            # a jump back by over a second is a discontinuity (concatenated files): continue after the
            # last packet, as the video does (_PtsReorder), instead of squeezing the rest into ticks
            dts = packet.dts - route.offset
            if (route.last_dts - dts) * packet.time_base > 1:
                route.offset -= route.last_dts + (packet.duration or 1) - dts
        if route.offset:
            if packet.pts is not None:
                packet.pts -= route.offset
            if packet.dts is not None:
                packet.dts -= route.offset
        # MP4 rejects non-increasing DTS; duplicate stamps in source AAC are common: nudge one tick.
        if packet.dts is not None:
            if route.last_dts is not None and packet.dts <= route.last_dts:
                packet.dts = route.last_dts + 1
                if packet.pts is not None and packet.pts < packet.dts:
                    packet.pts = packet.dts
            route.last_dts = packet.dts
        packet.stream = route.out
        with self._encoding():
            self.container.mux(packet)
        route.packets += 1

    def _transcode(self, route: _AudioRoute, packet) -> None:
        with self._encoding():
            for frame in route.in_stream.codec_context.decode(packet):
                self._encode_audio(route, frame)

    def _encode_audio(self, route: _AudioRoute, frame) -> None:
        if frame is not None and frame.pts is not None and route.offset:
            frame.pts -= route.offset
        for out_packet in route.out.encode(frame):
            self.container.mux(out_packet)
            route.packets += 1

    @property
    def audio_packets(self) -> int:
        return sum(r.packets for r in self._audio.values())

    @contextlib.contextmanager
    def _encoding(self) -> Iterator[None]:
        """FFmpeg's errors while encoding or muxing as one sentence (a full disk is the usual one)."""
        import av

        try:
            yield
        except (av.error.FFmpegError, OSError) as exc:  # OSError: from our file object, below FFmpeg
            if exc.errno in _WRITE_ERRNOS:
                raise cannot_write(self.path, exc) from exc
            raise FastNSTError(f"Encoding {self.path} failed ({exc.strerror or exc}).") from exc

    # -- video ------------------------------------------------------------------------------------

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        """Encode one ``(H,W,3)`` uint8 RGB frame at ``pts`` (``time_base`` units; None → next
        frame at the nominal rate)."""
        import av

        tb = self._out_time_base
        if pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + max(1, round(1 / (self.fps * tb)))
        elif tb != self.time_base:
            pts = round(pts * self.time_base / tb)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        if self.encoded_size != (rgb.shape[1], rgb.shape[0]):
            rgb = even_pad(rgb)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = int(pts)
        frame.time_base = tb
        with self._encoding():
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        self.frames += 1

    # -- finishing --------------------------------------------------------------------------------

    def finish(self) -> None:
        """Flush the encoders and close the container (the file keeps its temporary name)."""
        if self._state != "open":
            return
        try:
            with self._encoding():
                for packet in self.stream.encode():
                    self.container.mux(packet)
                for route in self._audio.values():
                    if route.transcode:
                        for frame in route.in_stream.codec_context.decode(None):
                            self._encode_audio(route, frame)
                        self._encode_audio(route, None)
                self.container.close()
                self._file.close()
        except BaseException:
            self.abort()
            raise
        self._state = "finished"

    def commit(self) -> Path:
        """Move the finished file to its final name (atomic within one filesystem)."""
        self.finish()
        if self._state == "finished":
            self._output.__exit__(None, None, None)
            self._state = "committed"
        return self.path

    def close(self) -> Path:
        """:meth:`finish` then :meth:`commit`."""
        return self.commit()

    def abort(self) -> None:
        """Close and delete the temporary file; the final name is never touched."""
        if self._state in ("committed", "aborted"):
            return
        if self._state == "open":
            with contextlib.suppress(Exception):  # best effort: the file is deleted anyway
                self.container.close()
        if self._file is not None:
            with contextlib.suppress(OSError):  # its last buffer cannot be flushed to a full disk
                self._file.close()
        self._state = "aborted"
        self._output.__exit__(_Aborted, _Aborted(), None)  # atomic_path deletes the temporary file

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray] | Iterator[np.ndarray], *,
                fps: float | Fraction = DEFAULT_FPS, codec: str = "libx264", crf: int | None = 18,
                preset: str | None = "medium") -> Path:
    """Encode ``(H,W,3)`` uint8 RGB frames at a constant rate (convenience for scripts and tests)."""
    writer: VideoWriter | None = None
    try:
        for img in frames:
            if writer is None:
                writer = VideoWriter(Path(path), img.shape[1], img.shape[0], fps=Fraction(fps).limit_denominator(100000),
                                     codec=codec, crf=crf, preset=preset)
            writer.write(img)
        if writer is None:
            raise FastNSTError("write_video got no frames.")
        return writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


__all__ = [
    "CRF_RANGE",
    "PRESETS",
    "DecodedFrame",
    "VideoInfo",
    "VideoSize",
    "VideoWriter",
    "check_container",
    "check_encoder",
    "check_segment",
    "estimate_frames",
    "even_pad",
    "frame_to_rgb",
    "iter_decoded",
    "open_input",
    "pick_pix_fmt",
    "plan_size",
    "probe",
    "read_frames",
    "stream_fps",
    "write_video",
]

"""Live style transfer in three stages — capture, network, display/record — each in its own thread
with a one-frame hand-over where the newest frame wins; an overlay with fps and capture-to-display
latency, keys, optional recording.

The source is a camera index, a video file or a stream URL (so it runs without a camera). Cameras
buffer several frames (V4L2): reading them in a thread and dropping all but the newest keeps the
latency at one frame whatever the network's speed. File sources are paced at their frame rate, like
a camera, unless ``realtime=False`` (then every frame is shown).

Keys: ``q``/Esc quit, ``s`` snapshot, space toggles side-by-side, ``n``/``p`` next/previous style,
``1``-``9`` pick a style, ``+``/``-`` strength up/down by 0.1. A new style or strength is reached by
a cross-fade (:class:`fastnst.timeline.Fader`, 0.5 s by default), not a cut: the outgoing and the
incoming networks both run during the fade (:class:`fastnst.mixer.Mixer`).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import FastNSTError
from .fileio import put_label
from .options import DEFAULT_FADE, DEFAULT_STABILIZE, EngineOptions, WebcamOptions, with_settings
from .timeline import Fader, Mix, StyleMix, format_mix

WINDOW = "fastnst"
KEY_ESC = 27
STRENGTH_STEP = 0.1  # per + / - key press
_MS = Fraction(1, 1000)  # recording time base: wall-clock milliseconds (variable frame rate)


@dataclass
class WebcamResult:
    """Outcome of :func:`run_webcam`: frames stylized, wall time, mean fps, files written, notes."""

    frames: int
    seconds: float
    fps: float
    snapshots: list[Path] = field(default_factory=list)
    record: Path | None = None
    latency_ms: float | None = None  # median capture-to-display latency
    threads: int | None = None
    notes: list[str] = field(default_factory=list)  # why an engine asked for is not the one that ran


@dataclass
class ViewState:
    """What the loop shows; changed by keys (see :func:`handle_key`)."""

    n_styles: int
    style: int = 0
    strength: float = 1.0
    side_by_side: bool = False
    snapshot: bool = False
    quit: bool = False


def handle_key(state: ViewState, key: int) -> ViewState:
    """Apply one key code (``cv2.waitKey`` result, -1 for none) to ``state`` in place; returns it."""
    if key < 0:
        return state
    key &= 0xFF
    ch = chr(key).lower() if 32 <= key < 127 else ""
    if key == KEY_ESC or ch == "q":
        state.quit = True
    elif ch == "s":
        state.snapshot = True
    elif ch == " ":
        state.side_by_side = not state.side_by_side
    elif ch == "n":
        state.style = (state.style + 1) % state.n_styles
    elif ch == "p":
        state.style = (state.style - 1) % state.n_styles
    elif ch.isdigit() and ch != "0" and int(ch) <= state.n_styles:
        state.style = int(ch) - 1
    elif ch in ("+", "=", "-", "_"):  # = and _ share the keys of + and - on most layouts
        step = STRENGTH_STEP if ch in ("+", "=") else -STRENGTH_STEP
        state.strength = min(1.0, max(0.0, round(state.strength + step, 6)))
    return state


class LiveMix:
    """The mixture to render now: follows ``state.style`` (an index into ``mixes``) and
    ``state.strength`` with a cross-fade of ``fade`` seconds whenever either changes; a change
    during a fade starts from the blend on screen, so nothing jumps."""

    def __init__(self, mixes: Sequence[StyleMix], state: ViewState, *, fade: float = DEFAULT_FADE) -> None:
        self.mixes, self.state = list(mixes), state
        self._target = (state.style, state.strength)
        self.fader = Fader(self.mixes[state.style], state.strength, duration=fade)

    def at(self, now: float) -> Mix:
        """The mixture at clock time ``now`` (seconds, increasing, e.g. ``time.perf_counter()``)."""
        style, strength = self.state.style, self.state.strength
        if (style, strength) != self._target:
            mix = self.mixes[style] if style != self._target[0] else None
            self.fader.set(now, mix, strength)
            self._target = (style, strength)
        return self.fader.at(now)


def check_gui() -> None:
    """Raise :class:`FastNSTError` when no window can be opened (headless OpenCV, no display)."""
    import cv2

    m = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if m is not None and m.group(1).upper() == "NONE":
        raise FastNSTError("This OpenCV build has no GUI support (opencv-python-headless?): install "
                           "opencv-python, or run with --no-window and --record OUT.mp4.")
    # Qt aborts the whole process, uncatchably, when it finds no display: look before it does.
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise FastNSTError("No display found (DISPLAY is not set): run from a desktop session, or with "
                           "--no-window and --record OUT.mp4.")


class Handover:
    """A one-slot hand-over from a producer thread to a consumer where the newest item wins, so a slow
    consumer never makes the producer fall behind; ``lossless``: the producer waits instead until the
    previous item was taken (every item delivered once). Items are numbered 1, 2, …; the producer ends
    with :meth:`end`, the consumer side (or a shutdown) releases a waiting producer with :meth:`stop`."""

    def __init__(self, lossless: bool = False) -> None:
        self.lossless = lossless
        self.error: BaseException | None = None  # what ended the producer, if it failed
        self._cond = threading.Condition()
        self._item = None
        self._made = 0
        self._taken = 0
        self._ended = False
        self._stopped = False

    def put(self, item) -> None:
        with self._cond:
            if self.lossless:
                self._cond.wait_for(lambda: self._taken >= self._made or self._stopped)
            self._item, self._made = item, self._made + 1
            self._cond.notify_all()

    def end(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.error, self._ended = error, True
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def take(self, after: int | None = None, timeout: float = 10.0) -> tuple[int, object] | None:
        """The newest item numbered above ``after`` (default: the last one taken) as ``(number, item)``;
        waits up to ``timeout`` s. None when the producer has ended — then :attr:`error` says whether
        it failed — or nothing came in time. An item made before a failure is still delivered first."""
        with self._cond:
            after = self._taken if after is None else after
            self._cond.wait_for(lambda: self._made > after or self._ended, timeout=timeout)
            if self._made > after and self._item is not None:
                self._taken = self._made
                self._cond.notify_all()
                return self._made, self._item
            return None


def _utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (a file name with undecodable bytes holds lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class FrameGrabber:
    """Reads a capture source in a thread, keeping only the newest frame as ``(H,W,3)`` uint8 RGB.

    ``source``: camera index (int or digit string), video file path or URL. File sources are paced
    at their frame rate when ``realtime`` (default for files), so they behave like a camera; with
    ``realtime=False`` a file is read as fast as it is consumed, every frame delivered once.
    ``autostart=False`` opens the source without reading it until :meth:`start`.
    """

    def __init__(self, source: int | str, *, realtime: bool | None = None, max_size: int | None = None,
                 autostart: bool = True) -> None:
        import cv2

        if isinstance(source, str) and source.isdigit():
            source = int(source)
        self.source = source
        is_file = isinstance(source, str) and Path(source).is_file()
        if isinstance(source, str) and not is_file and "://" not in source:
            raise FastNSTError(f"Camera source {source!r} is neither a camera index, an existing file nor a URL.")
        if isinstance(source, str) and not _utf8(source):  # OpenCV's capture segfaults on such a name
            raise FastNSTError(f"OpenCV cannot open {source!r}: its name is not valid UTF-8; rename the file.")
        # OpenCV logs every backend it tries to stderr; the failure is reported as one sentence below.
        # Its FFmpeg logs on its own ("moov atom not found", "Stream ends prematurely"): quiet unless asked.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            self.cap = cv2.VideoCapture(source)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not self.cap.isOpened():
            self.cap.release()
            what = f"camera {source}" if isinstance(source, int) else str(source)
            raise FastNSTError(f"Cannot open {what} with OpenCV.")
        self.period = 0.0
        self.lossless = is_file and realtime is False
        if is_file and (realtime is None or realtime):
            # CAP_PROP_FPS is unreliable for files; the container knows better.
            from .video import probe

            self.period = 1.0 / float(probe(source).fps)
        self.max_size = max_size
        self._frames = Handover(self.lossless)  # items: (rgb, perf_counter() at capture)
        self.captured_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastnst-capture", daemon=True)
        if autostart:
            self.start()

    def start(self) -> None:
        """Start reading (once)."""
        if self._thread.ident is None:
            self._thread.start()

    def frame_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of the frames it will deliver (after ``max_size``), from the capture's
        own properties (reliable for sizes, unlike its fps); None where the source does not say."""
        import cv2

        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w <= 0 or h <= 0:
            return None
        if self.max_size and max(h, w) > self.max_size:
            s = self.max_size / max(h, w)
            h, w = max(1, round(h * s)), max(1, round(w * s))
        return h, w

    def _run(self) -> None:
        import cv2

        due = time.perf_counter()
        try:
            while not self._stop.is_set():
                ok, bgr = self.cap.read()
                if not ok or bgr is None:
                    break
                if self.max_size and max(bgr.shape[:2]) > self.max_size:
                    s = self.max_size / max(bgr.shape[:2])
                    bgr = cv2.resize(bgr, (max(1, round(bgr.shape[1] * s)), max(1, round(bgr.shape[0] * s))),
                                     interpolation=cv2.INTER_AREA)
                self._frames.put((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.perf_counter()))
                if self.period:
                    due += self.period
                    delay = due - time.perf_counter()
                    if delay > 0:
                        self._stop.wait(delay)
                    else:
                        due = time.perf_counter()
        except BaseException as exc:  # noqa: BLE001 - reported by read()
            self._frames.end(exc)
        else:
            self._frames.end()

    def read(self, after: int = 0, timeout: float = 10.0) -> tuple[int, np.ndarray] | None:
        """The newest frame newer than sequence number ``after`` as ``(seq, rgb)``; waits for it.
        None when the source has ended (or nothing arrived within ``timeout`` seconds)."""
        got = self._frames.take(after, timeout)
        if got is None:
            if self._frames.error is not None:
                raise FastNSTError(f"Reading from {self.source} failed: {self._frames.error}") from self._frames.error
            return None
        seq, (rgb, self.captured_at) = got
        return seq, rgb

    def close(self) -> None:
        self._stop.set()
        self._frames.stop()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        self.cap.release()


class FpsMeter:
    """Exponential moving average of the loop rate."""

    def __init__(self, smoothing: float = 0.9) -> None:
        self.smoothing = smoothing
        self.fps = 0.0
        self._last: float | None = None

    def tick(self) -> float:
        now = time.perf_counter()
        if self._last is not None:
            inst = 1.0 / max(now - self._last, 1e-6)
            self.fps = inst if self.fps == 0 else self.smoothing * self.fps + (1 - self.smoothing) * inst
        self._last = now
        return self.fps


def compose(original: np.ndarray, stylized: np.ndarray, side_by_side: bool) -> np.ndarray:
    """The frame to show: the stylized one, or input | stylized at the stylized one's size."""
    if not side_by_side:
        return stylized
    import cv2

    if original.shape[:2] != stylized.shape[:2]:
        original = cv2.resize(original, (stylized.shape[1], stylized.shape[0]), interpolation=cv2.INTER_AREA)
    return np.concatenate([original, stylized], axis=1)


def overlay(view: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Draw text lines (outlined, top-left) on a copy of ``view``."""
    img = np.ascontiguousarray(view).copy()
    for i, text in enumerate(lines):
        put_label(img, text, (8, 22 + 22 * i))
    return img


@dataclass
class Styled:
    """A stylized frame handed from the network stage to the display stage."""

    seq: int
    original: np.ndarray
    image: np.ndarray
    captured_at: float
    style: int
    mix: Mix | None = None


class NetworkStage:
    """Thread: stylizes the newest captured frame with the current mixture (:class:`LiveMix`: the
    chosen style and strength, cross-faded) and offers the result in a one-slot hand-over where the
    newest wins, so a slow display never makes the network fall behind the camera. ``lossless``
    (files read with ``realtime=False``): every result is kept until taken. One
    :class:`fastnst.stabilize.Stabilizer` per stream, kept running across the (smooth) fades."""

    def __init__(self, grabber: FrameGrabber, mixer, live: LiveMix, state: ViewState, *, stabilize: float,
                 tuner, lossless: bool) -> None:
        from .stabilize import stream_state

        self.grabber, self.mixer, self.live, self.state, self.tuner = grabber, mixer, live, state, tuner
        self.stabilizer = stream_state(stabilize, video=mixer.video)
        self._results = Handover(lossless)  # items: Styled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastnst-network", daemon=True)
        self._thread.start()

    def _stylize(self, seq: int, rgb: np.ndarray, captured_at: float, style: int) -> Styled:
        mix = self.live.at(time.perf_counter())
        return Styled(seq, rgb, self.mixer(rgb, mix, self.stabilizer), captured_at, style, mix)

    def _run(self) -> None:
        seq = 0
        try:
            while not self._stop.is_set() and (got := self.grabber.read(seq)) is not None:
                seq, rgb = got
                item = self._stylize(seq, rgb, self.grabber.captured_at, self.state.style)
                self.tuner.tick()
                self._results.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised by take()
            self._results.end(exc)
        else:
            self._results.end()

    def take(self, timeout: float = 10.0) -> Styled | None:
        """The newest result not yet taken; waits for it. None when the source has ended (a finished
        frame goes out before the error that ended the stage is raised)."""
        got = self._results.take(timeout=timeout)
        if got is None and self._results.error is not None:
            raise self._results.error
        return None if got is None else got[1]

    def close(self) -> None:
        self._stop.set()
        self._results.stop()
        self._thread.join(timeout=10)


def _show(cv2, view: np.ndarray, lines: list[str], state: ViewState) -> bool:
    """Draw one frame in the window and apply the key pressed; False when the window was closed."""
    cv2.imshow(WINDOW, cv2.cvtColor(overlay(view, lines), cv2.COLOR_RGB2BGR))
    handle_key(state, cv2.waitKey(1))
    return cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1


@dataclass
class _Display:
    """The display/record stage's state (main thread: OpenCV windows must live there)."""

    record: Path | None
    snapshot_dir: Path
    show: bool
    t0: float = field(default_factory=time.perf_counter)
    writer: object = None
    snapshots: list[Path] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    meter: FpsMeter = field(default_factory=FpsMeter)
    n: int = 0

    def handle(self, item: Styled, state: ViewState, names: Sequence[str], labels: dict[str, str]) -> bool:
        """Record, snapshot and show one stylized frame; False when the user closed the window."""
        from .images import write_image
        from .video import VideoWriter

        out = item.image
        if self.record is not None:
            if self.writer is None:
                self.writer = VideoWriter(self.record, out.shape[1], out.shape[0], fps=30, time_base=_MS,
                                          preset="veryfast")
            self.writer.write(out, round((time.perf_counter() - self.t0) * 1000))
        self.n += 1
        fps = self.meter.tick()
        self.latencies.append(time.perf_counter() - item.captured_at)
        view = compose(item.original, out, state.side_by_side)
        if state.snapshot:
            state.snapshot = False
            name = f"fastnst_{time.strftime('%Y%m%d_%H%M%S')}_{self.n:05d}.png"
            self.snapshots.append(write_image(self.snapshot_dir / name, view))
        if not self.show:
            return True
        import cv2

        mix = item.mix.weights if item.mix is not None else {}
        shown = format_mix({labels.get(n, n): w for n, w in mix.items()}) if len(mix) > 1 else names[item.style]
        strength = item.mix.strength if item.mix is not None else 1.0
        lines = [f"{fps:5.1f} fps  {1000 * self.latencies[-1]:4.0f} ms  {shown} ({item.style + 1}/{len(names)})",
                 f"strength {strength:.1f}  (+/-)"]
        return _show(cv2, view, lines, state)


    def abort(self) -> None:
        """Remove a recording that cannot be finished (the run failed)."""
        if self.writer is not None:
            self.writer.abort()

    def result(self, threads: int | None, notes: list[str]) -> WebcamResult:
        """Close the recording and sum the run up."""
        recorded = self.writer.close() if self.writer is not None else None
        seconds = time.perf_counter() - self.t0
        latency = float(np.median(self.latencies)) * 1000 if self.latencies else None
        return WebcamResult(self.n, seconds, self.n / max(seconds, 1e-9), self.snapshots, recorded,
                            latency_ms=latency, threads=threads, notes=notes)


def _plan_mixes(styles: Sequence) -> tuple[list[StyleMix], dict[str, object]]:
    """One mixture per style argument, and the style objects that are not names (see
    :func:`fastnst.mixer.plan_styles`); every name is checked before anything is loaded."""
    from .mixer import plan_styles

    mixes, ready = [], {}
    for i, s in enumerate(styles):
        schedule, objects = plan_styles(s)
        mix = schedule.entries[0].mix
        for key, obj in objects.items():  # two models of one name are still two styles
            if key in ready and ready[key] is not obj:
                mix = ((f"{key}#{i + 1}", 1.0),)
            ready[mix[0][0]] = obj
        mixes.append(mix)
    return mixes, ready


def _checked(o: WebcamOptions) -> tuple[float, float]:
    """The start strength and the stabilisation strength of ``o``; FastNSTError for values out of range."""
    from .mixer import check_strength

    strength = check_strength(o.engine.strength)
    stab = DEFAULT_STABILIZE if o.engine.stabilize is None else float(o.engine.stabilize)
    if not 0.0 <= stab <= 1.0:
        raise FastNSTError(f"--stabilize must be between 0 and 1, got {o.engine.stabilize}.")
    if not (o.fade >= 0 and np.isfinite(o.fade)):
        raise FastNSTError(f"--fade must be zero or more seconds, got {o.fade}.")
    return strength, stab


class _Stages:
    """The capture and network threads and the window of one run, opened and closed together."""

    def __init__(self) -> None:
        self.grabber: FrameGrabber | None = None
        self.net: NetworkStage | None = None
        self.window = False

    def open(self, o: WebcamOptions, mixer, live: LiveMix, state: ViewState, *, stabilize: float, tuner,
             realtime: bool | None) -> NetworkStage:
        import cv2

        self.grabber = FrameGrabber(o.camera, realtime=realtime, max_size=o.engine.max_size, autostart=False)
        size = self.grabber.frame_size()
        if size is not None:  # an engine's conversion happens now, not while the camera's frames pile up
            mixer.warm_up(*size)
        self.grabber.start()
        self.net = NetworkStage(self.grabber, mixer, live, state, stabilize=stabilize, tuner=tuner,
                                lossless=self.grabber.lossless)
        if o.show:
            try:
                cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
            except cv2.error as exc:
                raise FastNSTError(f"OpenCV cannot open a window ({exc}); use --no-window with --record.") from exc
            self.window = True
        return self.net

    def close(self) -> None:
        for stage in (self.net, self.grabber):
            if stage is not None:
                stage.close()
        if self.window:
            import cv2

            cv2.destroyWindow(WINDOW)
            cv2.waitKey(1)


def _show_loop(net: NetworkStage, display: _Display, state: ViewState, mixer, mixes: Sequence[StyleMix],
               max_frames: int | None) -> None:
    """Take stylized frames from the network stage and show/record them until q, the end or ``max_frames``."""
    labels = {n: st.name for n, st in mixer.stylizers.items()}
    names = [format_mix({labels[n]: w for n, w in m}) for m in mixes]
    while not state.quit and (item := net.take()) is not None:
        if not display.handle(item, state, names, labels) or (max_frames and display.n >= max_frames):
            break


def run_webcam(styles: Sequence | None = None, *, options: WebcamOptions | None = None,
               realtime: bool | None = None, **settings) -> WebcamResult:
    """Stylize a live source until ``q``/Esc, its end, or ``max_frames`` frames.

    Three stages, each in its own thread with a one-frame hand-over where the newest frame wins:
    capture (:class:`FrameGrabber`), network (:class:`NetworkStage`: working resolution, network,
    stabilisation, edge-aware upsampling) and display/record (this thread). The slowest stage sets
    the rate and latency stays at about one frame per stage.

    ``styles``: style names/paths/blends ``"a:0.6,b:0.4"``/models (``None`` = the default style; by
    default ``options.style``); keys switch between them with a ``fade``-second cross-fade. The
    settings are a :class:`~fastnst.options.WebcamOptions` ``options`` (its ``engine`` as in
    :func:`fastnst.pipeline.stylize_video`, frames downscaled to ``max_size`` 640 by default) or
    keyword ``settings`` of its field names, which override it (``run_webcam(["a"], camera="in.mp4",
    show=False, max_frames=10)``). ``record``: also write the stylized frames to this video file,
    with their wall-clock timestamps (kept when the run is stopped with q, Esc or Ctrl-C; removed if
    it fails). ``show=False`` runs without a window. ``realtime``: see :class:`FrameGrabber`.
    """
    from .mixer import build_mixer
    from .stylizer import ThreadTuner, stylizer_kwargs

    o = with_settings(options or WebcamOptions(), settings, "run_webcam")
    styles = list(styles) if styles is not None else (o.style or [None])
    if not styles:
        raise FastNSTError("Give at least one --style.")
    strength, stab = _checked(o)
    mixes, ready = _plan_mixes(styles)
    if o.show:
        check_gui()
    # All styles are loaded up front so switching is instant.
    mixer = build_mixer([n for m in mixes for n, _ in m], ready, preserve_color=o.engine.preserve_color,
                        **stylizer_kwargs(o.engine))
    state = ViewState(len(mixes), strength=strength, side_by_side=o.side_by_side)
    display = _Display(Path(o.record) if o.record is not None else None, Path(o.snapshot_dir), o.show)
    tuner, stages = ThreadTuner(mixer.device, o.engine.threads), _Stages()
    try:
        net = stages.open(o, mixer, LiveMix(mixes, state, fade=o.fade), state, stabilize=stab, tuner=tuner,
                          realtime=realtime)
        _show_loop(net, display, state, mixer, mixes, o.max_frames)
    except KeyboardInterrupt:
        pass  # Ctrl-C is the stop button of a headless run: keep what was recorded
    except BaseException:
        display.abort()
        raise
    finally:
        stages.close()
        tuner.restore()
    return display.result(tuner.chosen, mixer.engine_notes)


__all__ = ["DEFAULT_FADE", "EngineOptions", "FpsMeter", "FrameGrabber", "Handover", "LiveMix", "NetworkStage",
           "Styled", "ViewState", "WebcamOptions", "WebcamResult", "check_gui", "compose", "handle_key", "overlay",
           "run_webcam"]

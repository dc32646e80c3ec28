"""The streaming video engine: three stages connected by bounded queues, so memory stays flat however
long the video is::

    reader thread:  demux + decode (PyAV, threaded) + RGB conversion/resize/rotation ──► queue
    main thread:    batches ──► resize to working size ──► network ──► stabilise ──► upsample ──► uint8 ──► queue
    writer thread:  encode + mux, audio packets remuxed in between ──► .NAME.TOKEN.part.mp4 ──► rename (fastnst.fileio)

Each stage is a small object with explicit state (:class:`Reader`, :class:`Writer`, and the frame
stages of :class:`fastnst.stylizer.Stylizer`); :func:`stylize_video` wires them together.

On CUDA the main thread also overlaps host↔device copies with compute (:class:`CudaBatcher`): frames
are packed into reusable pinned buffers, copied on a side stream, computed on a compute stream and
copied back on a third stream into a ring of pinned output buffers that the writer hands back after
encoding; batch *i* is handed to the writer only after batch *i+1* has been queued on the GPU.

Timestamps: every frame keeps the input's ``pts`` and ``time_base`` (variable frame rate is kept;
AVI outputs, which cannot store timestamps, are renumbered at the nominal rate). A segment
(``start``/``duration``) is shifted to start at 0, audio with it.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import FastNSTError
from .fileio import refuse_existing


class End:
    """Queue sentinel: the producer has finished."""


class Failed:
    """Queue item: the producer failed with ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Stopped(Exception):
    """Raised inside a worker thread when the run is being torn down."""


class Channel:
    """A bounded queue whose blocking calls give up when ``stop`` is set (so threads can be joined)."""

    def __init__(self, maxsize: int, stop: threading.Event) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=maxsize)
        self.stop = stop

    def _wait(self, op: Callable[[], object], check: Callable[[], None] | None, empty_or_full) -> object:
        while True:
            if self.stop.is_set():
                raise Stopped
            if check is not None:
                check()
            try:
                return op()
            except empty_or_full:
                continue

    def put(self, item, check: Callable[[], None] | None = None) -> None:
        self._wait(lambda: self.q.put(item, timeout=0.1), check, queue.Full)

    def get(self, check: Callable[[], None] | None = None):
        return self._wait(lambda: self.q.get(timeout=0.1), check, queue.Empty)


@dataclass
class Batch:
    """Stylized frames on the host, ``(n,H,W,3)`` uint8 (possibly a view of a pinned buffer that
    ``release`` gives back once encoded), with their pts."""

    frames: np.ndarray
    pts: list[int]
    release: Callable[[], None] | None = None


class Reader:
    """Decode thread: puts :class:`fastnst.video.DecodedFrame` items and audio packets on ``out``,
    then :class:`End` (or :class:`Failed`). The container stays open until the writer is done: queued
    packets and the audio transcoder still refer to it."""

    def __init__(self, frames: Iterable, out: Channel) -> None:
        self.frames, self.out = frames, out
        self.thread = threading.Thread(target=self._run, name="fastnst-decode", daemon=True)

    def _run(self) -> None:
        try:
            for item in self.frames:
                self.out.put(item)
            self.out.put(End())
        except Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            try:
                self.out.put(Failed(exc))
            except Stopped:
                pass


class Writer:
    """Encode thread: takes :class:`Batch` items and audio packets from ``inbox`` until :class:`End`.

    The video writer is created from the first batch (its size is known only then); audio packets
    that arrive before it are held back. ``make_writer(frames)`` builds it. An error is kept in
    :attr:`error` and sets ``stop`` so the other stages wind down.
    """

    def __init__(self, inbox: Channel, make_writer: Callable[[np.ndarray], object], stop: threading.Event) -> None:
        self.inbox, self.make_writer, self.stop = inbox, make_writer, stop
        self.writer = None
        self.error: BaseException | None = None
        self._early_audio: list = []
        self.thread = threading.Thread(target=self._run, name="fastnst-encode", daemon=True)

    def check(self) -> None:
        """Re-raise the writer's error in the calling thread."""
        if self.error is not None:
            raise self.error

    def _write_batch(self, batch: Batch) -> None:
        if self.writer is None:
            self.writer = self.make_writer(batch.frames)
            for p in self._early_audio:
                self.writer.mux_audio(p)
            self._early_audio.clear()
        for img, pts in zip(batch.frames, batch.pts):
            self.writer.write(img, pts)
        if batch.release is not None:
            batch.release()

    def _run(self) -> None:
        try:
            while not isinstance(item := self.inbox.get(), End):
                if isinstance(item, Batch):
                    self._write_batch(item)
                elif self.writer is None:
                    self._early_audio.append(item)
                else:
                    self.writer.mux_audio(item)
            if self.writer is not None:
                self.writer.finish()
        except Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc
            self.stop.set()


class CudaBatcher:
    """Asynchronous CUDA batch runner: pinned input/output buffers reused across batches, H2D copy,
    compute and D2H copy on three streams, so copies of one batch overlap compute of another.

    ``run(x)`` maps a ``(B,H,W,3)`` uint8 device tensor to ``(B,H',W',3)`` uint8 on the device.
    ``take(free)`` blocks until an output buffer index is free (and fails fast if the writer failed).
    """

    def __init__(self, device: torch.device, run: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
                 out_ring: int, take: Callable[[queue.Queue], int]) -> None:
        self.device, self.run, self.batch_size = device, run, batch_size
        self.h2d = torch.cuda.Stream(device)
        self.compute = torch.cuda.Stream(device)
        self.d2h = torch.cuda.Stream(device)
        self.pin_in: list[torch.Tensor] = []
        self.in_done: list[torch.cuda.Event | None] = [None, None]
        self.k = 0
        self.pin_out: list[torch.Tensor] = []
        self.out_ring = out_ring
        self.free: queue.Queue = queue.Queue()
        self.take = take
        self.pending: deque = deque()
        # The weights were converted on the default stream: the compute stream must see them finished.
        self.compute.wait_stream(torch.cuda.current_stream(device))

    def _upload(self, frames: list[np.ndarray]) -> torch.Tensor:
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
            ev = torch.cuda.Event(blocking=True)  # blocking: a spinning wait steals a core from the codec
            ev.record(self.h2d)
            self.in_done[k] = ev
        return x

    def submit(self, frames: list[np.ndarray], pts: list[int]) -> None:
        x = self._upload(frames)
        self.compute.wait_stream(self.h2d)
        with torch.cuda.stream(self.compute):
            x.record_stream(self.compute)  # allocated on h2d, used here: keep the allocator honest
            y = self.run(x)
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
            ev_out = torch.cuda.Event(blocking=True)
            ev_out.record(self.d2h)
        self.pending.append((ev_out, j, len(frames), pts))

    def completed(self, *, keep: int = 1) -> Iterable[Batch]:
        """Finished batches in order, leaving the newest ``keep`` in flight."""
        while len(self.pending) > keep:
            ev, j, n, pts = self.pending.popleft()
            ev.synchronize()
            yield Batch(self.pin_out[j].numpy()[:n], pts, release=lambda j=j: self.free.put(j))


# --------------------------------------------------------------------------------------------------
# Memory: refuse a working size that clearly cannot fit, and say what to lower when one did not
# --------------------------------------------------------------------------------------------------

LOWER = "lower --scale, --work-size or --max-size"
_PROBE = 64  # px: the side of the probe forward whose activations are scaled to the real size


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (CPU or CUDA, PyTorch or numpy)."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "Cannot allocate memory", "DefaultCPUAllocator"))


@contextlib.contextmanager
def memory_errors(what: str) -> Iterator[None]:
    """Turn an allocation failure inside the block into one :class:`FastNSTError` sentence that says
    what to lower; ``what`` names the work (e.g. "stylizing photo.jpg")."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise FastNSTError(f"Out of memory {what}; {LOWER}.") from None  # the allocator's text helps no user


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left() -> int | None:
    """What ``ulimit -v`` still allows this process to map, if it is limited."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        return soft - size
    except (ImportError, OSError, ValueError, StopIteration):
        return None


def _cgroup_left() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def available_memory(device: torch.device) -> int | None:
    """Bytes a new allocation can still get on ``device`` (the tightest of the free RAM, ``ulimit -v``
    and the cgroup limit on a CPU; the free memory of a CUDA device), or None when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    known = [v for v in (_meminfo_available(), _address_space_left(), _cgroup_left()) if v is not None]
    return min(known) if known else None


# Keyed by the module itself, weakly: an id() key outlives its network, and a new network that
# reuses the address would read the old one's figure.
_per_pixel_cache: weakref.WeakKeyDictionary[torch.nn.Module, float] = weakref.WeakKeyDictionary()


def activation_bytes_per_pixel(net: torch.nn.Module) -> float:
    """A lower bound on the network's activation memory per input pixel: the largest input + output
    of any one layer in a small probe forward (any architecture), per probe pixel. The real peak is
    higher (the residual stream, the allocator's slack), which makes a refusal based on it safe."""
    if net not in _per_pixel_cache:
        p = next(net.parameters())
        peak = 0

        def hook(module, inputs, output) -> None:
            nonlocal peak
            tensors = [t for t in (*inputs, output) if isinstance(t, torch.Tensor)]
            peak = max(peak, sum(t.numel() * t.element_size() for t in tensors))

        leaves = [m for m in net.modules() if not any(True for _ in m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        try:
            with torch.inference_mode():
                net(torch.zeros(1, 3, _PROBE, _PROBE, device=p.device, dtype=p.dtype))
        finally:
            for h in handles:
                h.remove()
        _per_pixel_cache[net] = peak / (_PROBE * _PROBE)
    return _per_pixel_cache[net]


def check_memory(stylizers: Iterable, height: int, width: int, *, batch: int = 1, what: str = "") -> None:
    """Refuse up front, with what to lower, when the networks' activations at the working size of a
    ``height × width`` frame (``batch`` at a time) clearly cannot fit the memory left."""
    from .images import resize_shape
    from .stylizer import work_shape

    needs = []
    device = None
    for st in stylizers:
        net = getattr(st, "net", None)
        if not isinstance(net, torch.nn.Module) or not any(True for _ in net.parameters()):
            continue  # another runtime: nothing to measure here
        h, w = resize_shape(height, width, st.max_size)
        wh, ww = work_shape(h, w, work_size=st.work_size, scale=st.scale)
        needs.append((activation_bytes_per_pixel(net) * wh * ww * batch, wh, ww))
        device = st.device
    if not needs or device is None:
        return
    need, wh, ww = max(needs)
    left = available_memory(device)
    if left is not None and need > left:
        raise FastNSTError(f"The network would run at {ww}x{wh}{f' {what}' if what else ''}, which needs at least "
                           f"{_size(need)} for its activations, and {_size(max(left, 0))} are free; {LOWER}.")


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_output(in_path: Path, out_path: Path, codec: str, *, force: bool = True, crf: float | None = None,
                 preset: str | None = None) -> None:
    """Refuse outputs that cannot work before any decoding starts and before any folder is made (one
    sentence each): a folder or image name, the input itself, an existing file without ``force``, a
    file type FFmpeg cannot write, an encoder, CRF or preset that does not exist (``crf``/``preset``
    None: not given)."""
    from .fileio import check_name, check_writable
    from .images import IMAGE_SUFFIXES
    from .video import check_container, check_encoder

    check_name(out_path)
    if out_path.exists() and out_path.is_dir():
        raise FastNSTError(f"Output {out_path} is a folder; give a file name such as {out_path / in_path.stem}.mp4.")
    if out_path.suffix.lower() in IMAGE_SUFFIXES or not out_path.suffix:
        raise FastNSTError(f"Output {out_path} needs a video extension such as .mp4, .mkv or .avi.")
    if in_path.exists() and out_path.exists() and in_path.resolve() == out_path.resolve():
        raise FastNSTError("The output must not overwrite the input video.")
    check_container(out_path, check_encoder(codec, crf, preset))
    refuse_existing(out_path, force)
    check_writable(out_path)


__all__ = ["Batch", "Channel", "CudaBatcher", "End", "Failed", "Reader", "Stopped", "Writer", "available_memory",
           "check_memory", "check_output", "is_out_of_memory", "memory_errors"]

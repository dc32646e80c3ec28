"""The streaming engine: its stages on their own (Channel, Reader, Writer, check_output), composed
without a network, and styles over time flowing through the whole engine (cross-fades, segments)."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fastnst
from fastnst.engine import Batch, Channel, End, Failed, Reader, Stopped, Writer, check_output
from fastnst.errors import FastNSTError
from fastnst.fileio import leftovers
from fastnst.pipeline import stylize_video
from fastnst.timeline import Entry, Schedule, make_mix
from fastnst.video import DecodedFrame, VideoWriter, iter_decoded, open_input, read_frames

from .conftest import BRIGHT, DARK, make_video, media_stats

# --------------------------------------------------------------------------------------------------
# Channel: a bounded queue whose waits end when the run is torn down
# --------------------------------------------------------------------------------------------------


def test_channel_is_fifo_and_a_put_waits_for_room() -> None:
    ch = Channel(2, threading.Event())
    ch.put(1)
    ch.put(2)
    third = threading.Thread(target=ch.put, args=(3,))
    third.start()
    third.join(0.25)
    assert third.is_alive()  # full: the producer waits
    assert ch.get() == 1
    third.join(2)
    assert not third.is_alive() and [ch.get(), ch.get()] == [2, 3]


def test_channel_waits_give_up_when_stopped() -> None:
    stop = threading.Event()
    ch = Channel(1, stop)
    outcome: list[str] = []

    def consumer() -> None:
        try:
            ch.get()
        except Stopped:
            outcome.append("stopped")

    t = threading.Thread(target=consumer)
    t.start()
    time.sleep(0.15)  # waiting on an empty channel
    stop.set()
    t.join(2)
    assert outcome == ["stopped"]
    with pytest.raises(Stopped):
        ch.put("late")


def test_channel_check_is_polled_while_waiting_and_its_error_raised() -> None:
    calls = []

    def check() -> None:  # e.g. the writer's check(): fail fast when the other end has died
        calls.append(1)
        if len(calls) == 3:
            raise OSError("writer failed")

    with pytest.raises(OSError, match="writer failed"):
        Channel(1, threading.Event()).get(check)
    assert len(calls) == 3


# --------------------------------------------------------------------------------------------------
# Reader: items, then End; an error as Failed; a stop ends the thread
# --------------------------------------------------------------------------------------------------


def _drain(ch: Channel, n: int) -> list:
    return [ch.get() for _ in range(n)]


def test_reader_forwards_every_item_then_end() -> None:
    ch = Channel(3, threading.Event())  # smaller than the input: the reader waits for the consumer
    reader = Reader(iter(range(7)), ch)
    reader.thread.start()
    items = _drain(ch, 8)
    reader.thread.join(2)
    assert items[:7] == list(range(7)) and isinstance(items[7], End) and not reader.thread.is_alive()


def test_reader_hands_a_decode_error_to_the_consumer() -> None:
    def frames():
        yield "frame 0"
        raise FastNSTError("in.mp4 is truncated")

    ch = Channel(4, threading.Event())
    reader = Reader(frames(), ch)
    reader.thread.start()
    first, failed = _drain(ch, 2)
    reader.thread.join(2)
    assert first == "frame 0" and isinstance(failed, Failed) and str(failed.exc) == "in.mp4 is truncated"


def test_reader_ends_when_the_run_is_torn_down() -> None:
    stop = threading.Event()
    reader = Reader(itertools.count(), Channel(1, stop))  # an endless input, nobody consuming
    reader.thread.start()
    time.sleep(0.15)
    stop.set()
    reader.thread.join(2)
    assert not reader.thread.is_alive()


# --------------------------------------------------------------------------------------------------
# Writer: the video writer made from the first batch, early audio held back, errors handed over
# --------------------------------------------------------------------------------------------------


class FakeVideo:
    """Records what the Writer stage asks of a video writer."""

    def __init__(self, frames: np.ndarray) -> None:
        self.size = frames.shape[1:3]
        self.log: list[tuple] = []

    def write(self, img: np.ndarray, pts: int) -> None:
        self.log.append(("frame", int(img[0, 0, 0]), pts))

    def mux_audio(self, packet) -> None:
        self.log.append(("audio", packet))

    def finish(self) -> None:
        self.log.append(("finish",))


def _batch(values, pts, release=None) -> Batch:
    return Batch(np.stack([np.full((4, 6, 3), v, np.uint8) for v in values]), list(pts), release)


def test_writer_holds_early_audio_until_the_first_batch_and_releases_buffers() -> None:
    stop = threading.Event()
    inbox = Channel(8, stop)
    released: list[int] = []
    writer = Writer(inbox, FakeVideo, stop)
    writer.thread.start()
    for item in ("a0", "a1", _batch([10, 20], [0, 1], lambda: released.append(1)), "a2",
                 _batch([30], [2], lambda: released.append(2)), End()):
        inbox.put(item)
    writer.thread.join(2)
    writer.check()
    assert writer.writer.size == (4, 6) and released == [1, 2] and not stop.is_set()
    assert writer.writer.log == [("audio", "a0"), ("audio", "a1"), ("frame", 10, 0), ("frame", 20, 1),
                                 ("audio", "a2"), ("frame", 30, 2), ("finish",)]


def test_writer_error_stops_the_run_and_is_raised_by_check() -> None:
    class DiskFull(FakeVideo):
        def write(self, img, pts) -> None:
            raise OSError(28, "No space left on device")

    stop = threading.Event()
    inbox = Channel(1, stop)
    writer = Writer(inbox, DiskFull, stop)
    writer.thread.start()
    inbox.put(_batch([1], [0]))
    writer.thread.join(2)
    assert stop.is_set() and not writer.thread.is_alive()
    with pytest.raises(OSError, match="No space"):
        writer.check()
    with pytest.raises(Stopped):  # a producer waiting on the writer's inbox is released, not hung
        inbox.put(_batch([2], [1]))
        inbox.put(_batch([3], [2]))


def test_stages_compose_without_a_network(tmp_path: Path) -> None:
    """decode → (an inverting stand-in for the network) → encode, audio remuxed in between."""
    src = make_video(tmp_path / "in.mp4", w=32, h=24, n=8, fps=10)
    out = tmp_path / "out.mkv"
    stop = threading.Event()
    q_in, q_out = Channel(4, stop), Channel(4, stop)
    container, stream = open_input(src)
    with container:
        audio = container.streams.audio[0]

        def make_writer(frames: np.ndarray) -> VideoWriter:
            w = VideoWriter(out, frames.shape[2], frames.shape[1], fps=10, time_base=stream.time_base,
                            crf=0, preset="ultrafast")
            w.add_audio(audio)
            return w

        reader = Reader(iter_decoded(container, stream, audio_streams=[audio]), q_in)
        writer = Writer(q_out, make_writer, stop)
        reader.thread.start()
        writer.thread.start()
        while not isinstance(item := q_in.get(writer.check), End):
            assert not isinstance(item, Failed)
            q_out.put(_inverted(item) if isinstance(item, DecodedFrame) else item, writer.check)
        q_out.put(End())
        writer.thread.join(10)
        writer.check()
        writer.writer.commit()
    a, b = media_stats(src), media_stats(out)
    # Matroska stores no negative time: the AAC priming packet (1024 samples before 0, which MP4 hides by
    # an edit list) moves both streams later by its length, as FFmpeg's own remux does; sync is kept
    assert b["frames"] == a["frames"] == 8 and np.allclose(b["times"], np.add(a["times"], 1024 / 16000), atol=1e-3)
    assert a["audio_packets"] > 3 and b["audio_packets"] == a["audio_packets"]
    for got, orig in zip(read_frames(out), read_frames(src)):
        assert np.abs(got.astype(int) - (255 - orig.astype(int))).mean() < 3
    assert leftovers(tmp_path) == []


def _inverted(frame) -> Batch:
    return Batch((255 - frame.image)[None], [frame.pts])


def test_writer_stage_keeps_variable_timestamps(tmp_path: Path) -> None:
    out = tmp_path / "vfr.mkv"
    stop = threading.Event()
    inbox = Channel(4, stop)
    writer = Writer(inbox, lambda f: VideoWriter(out, f.shape[2], f.shape[1], fps=10, preset="ultrafast"), stop)
    writer.thread.start()
    inbox.put(Batch(np.zeros((2, 16, 24, 3), np.uint8), [0, 2]))
    inbox.put(Batch(np.zeros((1, 16, 24, 3), np.uint8), [5]))
    inbox.put(End())
    writer.thread.join(10)
    writer.check()
    assert not out.exists()  # finished, not yet committed: the output appears only on commit
    writer.writer.commit()
    assert np.allclose(media_stats(out)["times"], [0.0, 0.2, 0.5], atol=1e-3)


# --------------------------------------------------------------------------------------------------
# check_output: refusals before anything is decoded
# --------------------------------------------------------------------------------------------------


def test_check_output_refuses_before_decoding(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    src.write_bytes(b"not decoded")
    (tmp_path / "folder").mkdir()
    cases = [(tmp_path / "folder", "libx264", "is a folder"), (tmp_path / "o.png", "libx264", "video extension"),
             (tmp_path / "noext", "libx264", "video extension"), (src, "libx264", "overwrite the input"),
             (tmp_path / "o.mp4", "no_such_encoder", "Unknown or unavailable")]
    for out, codec, message in cases:
        with pytest.raises(FastNSTError, match=message):
            check_output(src, out, codec)
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"keep")
    with pytest.raises(FastNSTError, match="--force"):
        check_output(src, existing, "libx264", force=False)
    check_output(src, existing, "libx264", force=True)
    assert existing.read_bytes() == b"keep"


# --------------------------------------------------------------------------------------------------
# Styles over time through the engine: cross-fades, segments
# --------------------------------------------------------------------------------------------------


def two_styles(a: Path, b: Path, change: float, transition: float) -> Schedule:
    return Schedule((Entry(make_mix([(str(a), 1.0)]), 0.0, transition),
                     Entry(make_mix([(str(b), 1.0)]), change, transition)))


def expected_level(schedule: Schedule, t: float, levels: dict[str, float]) -> float:
    mix = schedule.at(t)
    return 255 * sum(w * levels[n] for n, w in mix.weights.items())


def test_crossfade_keeps_frames_times_audio_and_follows_the_schedule(tmp_path: Path, flats) -> None:
    src = make_video(tmp_path / "in.mp4", w=32, h=24, n=30, fps=10)
    out = tmp_path / "out.mp4"
    sched = two_styles(*flats, change=1.5, transition=1.0)  # fade over [1.0, 2.0] s
    # batches of 4 mix frames of different weights (and frames of one style) in one batch
    res = stylize_video(src, out, schedule=sched, device="cpu", progress=False, batch_size=4, stabilize=0,
                       threads=1)
    a, b = media_stats(src), media_stats(out)
    assert res.frames == b["frames"] == a["frames"] == 30
    assert np.allclose(b["times"], a["times"], atol=1e-3)
    assert a["audio_packets"] > 10 and abs(b["audio_packets"] - a["audio_packets"]) <= 1
    levels = {str(flats[0]): DARK, str(flats[1]): BRIGHT}
    got = np.array([f.astype(float).mean() for f in read_frames(out)])
    want = np.array([expected_level(sched, t, levels) for t in a["times"]])
    assert np.abs(got - want).max() < 1.5  # every frame is the scheduled mixture
    steps = np.diff(got)
    # the fade climbs in even steps of (0.8-0.2)*255 / (1 s * 10 fps) ≈ 15 levels; no jump
    assert steps.max() < 15.3 + 2 * 1.5 and (steps > -1).all()  # (±1.5 levels per frame: 8-bit YUV)
    assert ((steps > 10) == ((np.array(a["times"][1:]) > 1.0) & (np.array(a["times"][1:]) <= 2.0 + 1e-6))).all()
    assert leftovers(tmp_path) == []


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_crossfade_on_cuda_with_a_short_last_batch(tmp_path: Path, flats) -> None:
    src = make_video(tmp_path / "in.mp4", n=11, fps=10, audio=None)  # batches 4+4+3: the last one padded
    out = tmp_path / "gpu.mp4"
    sched = two_styles(*flats, change=0.5, transition=0.6)
    res = stylize_video(src, out, schedule=sched, device="cuda", batch_size=4, progress=False, stabilize=0)
    levels = {str(flats[0]): DARK, str(flats[1]): BRIGHT}
    got = np.array([f.astype(float).mean() for f in read_frames(out)])
    assert res.frames == 11 and np.abs(got - [expected_level(sched, i / 10, levels) for i in range(11)]).max() < 1.5


def test_start_keeps_schedule_times_on_the_video_clock(tmp_path: Path, flats) -> None:
    src = make_video(tmp_path / "in.mp4", w=32, h=24, n=30, fps=10, audio=None)
    out = tmp_path / "seg.mp4"
    sched = two_styles(*flats, change=1.5, transition=1.0)
    res = stylize_video(src, out, schedule=sched, device="cpu", progress=False, stabilize=0, start=1.0,
                        duration=1.5, threads=1)
    got = [f.astype(float).mean() for f in read_frames(out)]
    assert res.frames == len(got) == 15
    # output frame i is input time 1.0 + i/10: the fade starts at the first output frame
    want = [expected_level(sched, 1.0 + i / 10, {str(flats[0]): DARK, str(flats[1]): BRIGHT}) for i in range(15)]
    assert np.abs(np.array(got) - want).max() < 1.5


def test_change_after_the_segment_is_a_note(tmp_path: Path, flats) -> None:
    src = make_video(tmp_path / "in.mp4", w=32, h=24, n=30, fps=10, audio=None)
    res = stylize_video(src, tmp_path / "o.mp4", schedule=two_styles(*flats, 2.5, 0.5), device="cpu",
                        progress=False, duration=1.0, stabilize=0, threads=1)
    assert any("after the last frame" in n for n in res.notes)


def test_api_schedule_file_with_strengths(tmp_path: Path, flats) -> None:
    src = make_video(tmp_path / "in.mp4", w=32, h=24, n=20, fps=10, audio=None)
    toml = tmp_path / "s.toml"
    toml.write_text(f'transition = 0\n[[styles]]\nstyle = "{flats[0].as_posix()}"\n'
                    f'[[styles]]\nstyle = "{flats[1].as_posix()}"\nstart = 1\nstrength = 0.5\n')
    out = tmp_path / "out.mkv"
    fastnst.stylize_video(src, out, schedule=fastnst.load_schedule(toml), device="cpu", progress=False,
                          stabilize=0, crf=0, threads=1)
    frames = list(read_frames(out))
    inputs = list(read_frames(src))
    assert len(frames) == 20 and abs(frames[0].mean() - 255 * DARK) < 1.5
    # after the cut: half way between the input and the bright style
    want = (inputs[15].astype(float) + 255 * BRIGHT) / 2
    assert np.abs(frames[15] - want).mean() < 2.0


# --------------------------------------------------------------------------------------------------
# Memory: the up-front estimate and the wording of allocation failures
# --------------------------------------------------------------------------------------------------


def test_activation_estimate_grows_with_the_network() -> None:
    from fastnst.engine import activation_bytes_per_pixel
    from fastnst.models import Arch, TransformerNet

    small = activation_bytes_per_pixel(TransformerNet(Arch((8, 8, 8), 1)).eval())
    big = activation_bytes_per_pixel(TransformerNet(Arch((32, 64, 128), 1)).eval())
    assert 0 < small < big
    # at least one full-resolution 32-channel layer's input and output in fp32; at most a few kB a pixel
    assert 2 * 32 * 4 <= big < 4096


def test_activation_estimate_belongs_to_its_network() -> None:
    """CI once read a freed small network's figure for a new big one at the same address (an id()
    key): the estimate must neither outlive its network nor be found by a new one."""
    import gc
    import weakref

    from fastnst.engine import activation_bytes_per_pixel
    from fastnst.models import Arch, TransformerNet

    for _ in range(20):  # give the allocator many chances to reuse an address
        small = TransformerNet(Arch((8, 8, 8), 1)).eval()
        figure = activation_bytes_per_pixel(small)
        gone = weakref.ref(small)
        del small
        gc.collect()
        assert gone() is None  # the cache does not keep a network alive
        assert activation_bytes_per_pixel(TransformerNet(Arch((32, 64, 128), 1)).eval()) > figure


def test_check_memory_refuses_what_cannot_fit(monkeypatch) -> None:
    from fastnst import engine
    from fastnst.models import Arch, TransformerNet
    from fastnst.stylizer import Stylizer

    st = Stylizer(TransformerNet(Arch((8, 8, 8), 1)), device="cpu", dtype="fp32", work_size=0)
    monkeypatch.setattr(engine, "available_memory", lambda device: 10**6)
    engine.check_memory([st], 16, 16)  # a few hundred kB
    with pytest.raises(FastNSTError, match=r"would run at 1000x800, .* MiB .*lower --scale, --work-size or --max-size"):
        engine.check_memory([st], 800, 1000)
    st.max_size = 100
    engine.check_memory([st], 800, 1000)  # --max-size brings it down before the network
    monkeypatch.setattr(engine, "available_memory", lambda device: None)  # unknown: no refusal
    st.max_size = None
    engine.check_memory([st], 8000, 10000)


def test_available_memory_on_this_cpu_is_plausible() -> None:
    from fastnst.engine import available_memory

    left = available_memory(torch.device("cpu"))
    assert left is None or 0 < left < 2**50

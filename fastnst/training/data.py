"""Training data: photo folders (and optional video files) turned into two-frame training pairs.

Every item is a pair ``(frame1, frame2)`` of ``(3,S,S)`` float images in ``[0,1]`` with a flow
``(2,S,S)`` and a trust mask ``(1,S,S)`` such that, in :mod:`fastnst.flow`'s convention,
``frame2(p) ≈ frame1(p + flow(p))`` wherever ``mask(p) = 1``.

*Photos* (the synthetic pair, Ruder et al. 2018 / Gao et al. 2018 style): a random square crop of
the photo (side ``U(crop_min, 1)`` × its shorter side), resized to ``S`` and randomly mirrored, is
``frame1``. A random smooth flow ``f`` (:func:`fastnst.flow.synthetic_flow`: small global similarity
motion plus a bicubically upsampled local deformation) gives::

    frame2 = clamp((1 + b) · W(frame1, f) + n, 0, 1),   b ~ U(±frame_brightness),  n ~ N(0, frame_noise²)

with ``W(I, f)(p) = I(p + f(p))`` (bilinear, ``align_corners=True``). ``mask`` is 1 where
``p + f(p)`` lies inside ``frame1`` (elsewhere ``frame2`` holds border-clamped, invented pixels).

*Video pairs*: consecutive decoded frames ``(prev, next)`` share one random crop; ``frame1 = next``,
``frame2 = prev``, ``flow = DIS(prev → next)`` and ``mask`` = the forward-backward consistency mask
(:func:`fastnst.flow.forward_backward_mask`), so the same formula ``frame2 ≈ W(frame1, flow)`` holds.

Randomness is a pure function of ``(seed, k)`` where ``k`` is the sample's position in the
infinite training stream (:class:`StreamSampler`): the data are the same with any number of
workers or processes, and a resumed run sees exactly what an uninterrupted one would have seen.
"""

from __future__ import annotations

import signal
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import FastNSTError
from ..flow import dis_flow, forward_backward_mask, synthetic_flow, warp
from ..images import list_images, read_image


@dataclass(frozen=True)
class PairParams:
    """How second frames are made (see the module docstring)."""

    temporal: bool = True
    flow_shift: float = 6.0
    flow_zoom: float = 0.03
    flow_rotate: float = 2.0
    flow_local: float = 2.0
    frame_noise: float = 0.02
    frame_brightness: float = 0.05


def camera(frames: torch.Tensor, brightness: float, noise: float, generator: torch.Generator) -> torch.Tensor:
    """``frames`` ``(B,3,H,W)`` in [0,1] as a camera's: each frame a gain ``1 + U(±brightness)`` and a
    sensor noise ``N(0, noise²)`` of its own, drawn from ``generator`` (on the CPU), clamped to [0,1]."""
    b = frames.shape[0]
    gain = 1.0 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * brightness
    grain = torch.randn(frames.shape, generator=generator) * noise
    return (frames * gain.to(frames) + grain.to(frames)).clamp(0, 1)


def moving_occluders(frames: int, b: int, size: int, share: float, generator: torch.Generator,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Objects that move on their own across a chain of ``frames`` frames (video networks' training):
    ``(box, step)`` where ``box`` ``(b,1,size,size)`` is 1 on each sample's rectangle in the first frame
    (all 0 for the ``1 − share`` samples without one) and ``step`` ``(b,2,1,1)`` its motion per frame
    in px, in :func:`fastnst.flow.warp`'s convention: the box of frame ``k`` (0-based) is
    ``warp(box, −k·step)``. Sides ``U(0.15, 0.4)·size``, speed up to ``size/16`` px a frame."""
    g = generator
    side = (0.15 + 0.25 * torch.rand(b, 2, generator=g)) * size
    corner = torch.rand(b, 2, generator=g) * (size - side)
    step = (torch.rand(b, 2, generator=g) * 2 - 1) * (size / 16)
    present = torch.rand(b, generator=g) < share
    coords = torch.arange(size, dtype=torch.float32)
    inside_x = (coords >= corner[:, :1]) & (coords < corner[:, :1] + side[:, :1])  # (b,size)
    inside_y = (coords >= corner[:, 1:]) & (coords < corner[:, 1:] + side[:, 1:])
    box = (inside_y[:, :, None] & inside_x[:, None, :] & present.view(b, 1, 1)).float().unsqueeze(1)
    return box.to(device), step.view(b, 2, 1, 1).to(device)


def find_photos(folders: Sequence[str | Path]) -> list[Path]:
    """All image files under ``folders`` (recursively), sorted, without duplicates."""
    found: dict[Path, None] = {}
    for folder in folders:
        for p in list_images(folder, recursive=True):
            found.setdefault(p.resolve(), None)
    return sorted(found)


def split_validation(photos: Sequence[Path], n_val: int) -> tuple[list[Path], list[Path]]:
    """Hold out ``n_val`` photos, evenly spaced over the sorted list (deterministic); at most a
    quarter of the photos is held out so tiny folders still train. Returns ``(train, val)``."""
    n_val = max(0, min(n_val, len(photos) // 4))
    if n_val == 0:
        return list(photos), []
    idx = {int(i) for i in np.linspace(0, len(photos) - 1, n_val + 2)[1:-1].round()}
    val = [p for i, p in enumerate(photos) if i in idx]
    train = [p for i, p in enumerate(photos) if i not in idx]
    return train, val


def center_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The central square of ``(H,W,3)`` uint8 ``rgb``, resized to ``size`` × ``size``."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return _resize(rgb[y:y + s, x:x + s], size)


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(rgb), (size, size), interpolation=interp)


def _to_chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


def read_video_pairs(path: str | Path, max_pairs: int, min_side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``max_pairs`` pairs of consecutive frames ``(prev, next)`` as ``(H,W,3)`` uint8 RGB,
    spread evenly over the video and downscaled so the shorter side is about ``min_side`` px."""
    import av
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FastNSTError(f"Video {path} does not exist.")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FastNSTError(f"{path} has no video stream.")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            n = stream.frames
            if not n and container.duration and stream.average_rate:
                n = int(container.duration / 1e6 * float(stream.average_rate))
            stride = max(1, (n - 1) // max_pairs) if n > 1 else 1  # unknown length: the first frames
            pairs: list[tuple[np.ndarray, np.ndarray]] = []
            prev: np.ndarray | None = None
            for i, frame in enumerate(container.decode(stream)):
                starts = i % stride == 0
                if not starts and prev is None:
                    continue  # only decoded frames that belong to a pair are converted
                rgb = frame.to_ndarray(format="rgb24")
                s = min_side / min(rgb.shape[:2])
                if s < 1:
                    rgb = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)),
                                     interpolation=cv2.INTER_AREA)
                if prev is not None:
                    pairs.append((prev, rgb))
                    if len(pairs) >= max_pairs:
                        break
                prev = rgb if starts else None
    except av.error.FFmpegError as exc:
        raise FastNSTError(f"Cannot decode {path} ({exc}).") from exc
    if not pairs:
        raise FastNSTError(f"{path} has fewer than two decodable frames.")
    return pairs


class TrainingPairs(Dataset):
    """Photos and video frame pairs as training items; ``dataset[k]`` for any stream position ``k ≥ 0``.

    Each item is a dict: ``frame1``, ``frame2`` ``(3,S,S)`` float in ``[0,1]``, ``flow``
    ``(2,S,S)`` px, ``mask`` ``(1,S,S)`` in ``{0,1}`` (see the module docstring). Without the
    temporal branch ``frame2``, ``flow`` and ``mask`` are omitted.
    """

    def __init__(
        self,
        photos: Sequence[Path],
        size: int,
        *,
        seed: int = 0,
        params: PairParams = PairParams(),
        crop_min: float = 0.6,
        video_pairs: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    ) -> None:
        self.photos = list(photos)
        self.video_pairs = list(video_pairs)
        if not self.photos and not self.video_pairs:
            raise FastNSTError("No training images: the content folders hold no image files.")
        self.size = size
        self.seed = seed
        self.params = params
        self.crop_min = float(min(max(crop_min, 0.05), 1.0))
        self._perm_epoch = -1
        self._perm = np.arange(0)

    def __len__(self) -> int:
        return len(self.photos) + len(self.video_pairs)

    def source(self, k: int) -> int:
        """Index of the photo/pair at stream position ``k``: a fresh permutation every epoch."""
        n = len(self)
        epoch = k // n
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, 1, epoch]).permutation(n)
            self._perm_epoch = epoch
        return int(self._perm[k % n])

    def _crop_box(self, rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int]:
        side = max(1, round(min(h, w) * rng.uniform(self.crop_min, 1.0)))
        return int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)), side

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 2, int(k)])
        i = self.source(int(k))
        flip = bool(rng.random() < 0.5)
        if i < len(self.photos):
            rgb = self._read_photo(i)
            y, x, s = self._crop_box(rng, *rgb.shape[:2])
            crop = _resize(rgb[y:y + s, x:x + s], self.size)
            frame1 = _to_chw(crop[:, ::-1] if flip else crop)
            if not self.params.temporal:
                return {"frame1": frame1}
            return {"frame1": frame1, **self._synthetic_second_frame(frame1, rng)}
        prev, nxt = self.video_pairs[i - len(self.photos)]
        y, x, s = self._crop_box(rng, *prev.shape[:2])
        a, b = (_resize(f[y:y + s, x:x + s], self.size) for f in (prev, nxt))
        if flip:
            a, b = np.ascontiguousarray(a[:, ::-1]), np.ascontiguousarray(b[:, ::-1])
        if not self.params.temporal:
            return {"frame1": _to_chw(b)}
        fw = torch.from_numpy(dis_flow(a, b)).permute(2, 0, 1).unsqueeze(0)
        bw = torch.from_numpy(dis_flow(b, a)).permute(2, 0, 1).unsqueeze(0)
        mask = forward_backward_mask(fw, bw)
        return {"frame1": _to_chw(b), "frame2": _to_chw(a), "flow": fw[0], "mask": mask[0]}

    def _read_photo(self, i: int) -> np.ndarray:
        """Photo ``i``, or the next readable one: one corrupt file in a large folder (COCO has a few
        odd ones) must not end a long run."""
        for j in range(len(self.photos)):
            path = self.photos[(i + j) % len(self.photos)]
            try:
                return read_image(path)
            except FastNSTError as exc:
                warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
        raise FastNSTError("None of the training photos can be read.")

    def _synthetic_second_frame(self, frame1: torch.Tensor, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        p = self.params
        g = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        flow = synthetic_flow(1, self.size, self.size, max_shift=p.flow_shift, max_zoom=p.flow_zoom,
                              max_rotate_deg=p.flow_rotate, local_amplitude=p.flow_local, generator=g)
        frame2, valid = warp(frame1.unsqueeze(0), flow)
        frame2 = camera(frame2, p.frame_brightness, p.frame_noise, g)
        return {"frame2": frame2[0], "flow": flow[0], "mask": valid[0]}


class StreamSampler(Sampler[int]):
    """Sharded, resumable sampler of stream positions for steps ``start_step … end_step − 1``.

    At global step ``s`` the process of rank ``r`` among ``world`` takes positions
    ``(s·world + r)·batch + j`` for ``j < batch``: all processes together consume one contiguous
    block per step (the same data as one process with ``world × batch``), no two share a sample,
    and starting at ``start_step`` continues a run exactly. :class:`TrainingPairs` maps positions
    to photos through a per-epoch permutation, so this plays the part of a ``DistributedSampler``
    without epochs.
    """

    def __init__(self, batch: int, end_step: int, *, rank: int = 0, world: int = 1, start_step: int = 0) -> None:
        self.batch, self.rank, self.world = batch, rank, world
        self.start_step, self.end_step = start_step, end_step

    def __iter__(self) -> Iterator[int]:
        s = self.start_step
        while s < self.end_step:
            base = (s * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)
            s += 1

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step) * self.batch


def worker_init(_: int) -> None:
    """Keep each DataLoader worker single-threaded: the workers already run in parallel.

    OpenCV's thread count is deliberately left alone: ``cv2.setNumThreads`` in a forked child
    deadlocks when the parent had used OpenCV's thread pool (seen with opencv-python 4.x).

    SIGTERM is ignored here: a signal to the whole process group (``kill -- -PGID``, ``pkill -f``, a
    batch scheduler) would otherwise kill the workers first and crash the main process mid-step,
    before its SIGTERM handler writes the checkpoint. The main process shuts the workers down itself,
    and they exit on their own when it dies (PyTorch's worker watchdog).
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)

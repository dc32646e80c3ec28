"""The trainer's data (fastnst/training/data.py): photos, validation split, sampler, synthetic and video pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastnst.errors import FastNSTError
from fastnst.flow import warp
from fastnst.training.data import (
    PairParams,
    StreamSampler,
    TrainingPairs,
    find_photos,
    read_video_pairs,
    split_validation,
)

from ..conftest import smooth_image


def test_photos_found_recursively_and_validation_held_out(photos):
    found = find_photos([photos, photos / "nested"])
    assert len(found) == 10 and all(p.suffix == ".png" for p in found)
    train, val = split_validation(found, 2)
    assert len(val) == 2 and len(train) == 8 and not set(train) & set(val)
    assert split_validation(found, 2) == (train, val)
    assert split_validation(found[:3], 4) == (found[:3], [])  # tiny folders keep everything for training


def test_a_corrupt_photo_is_skipped_with_a_warning(photos):
    files = find_photos([photos])
    files[0].write_bytes(b"\x89PNG broken")
    ds = TrainingPairs(files, 16, params=PairParams(temporal=False))
    k = next(k for k in range(len(ds)) if ds.source(k) == 0)
    with pytest.warns(UserWarning, match="skipping"):
        assert ds[k]["frame1"].shape == (3, 16, 16)


def test_stream_sampler_shards_disjointly_and_resumes():
    whole = list(StreamSampler(3, 4, world=1))
    r0 = list(StreamSampler(3, 4, rank=0, world=2))
    r1 = list(StreamSampler(3, 4, rank=1, world=2))
    assert whole == list(range(12))
    assert not set(r0) & set(r1) and sorted(r0 + r1) == list(range(24))
    assert r0[:3] == [0, 1, 2] and r1[:3] == [3, 4, 5]  # one contiguous block per step
    assert list(StreamSampler(3, 4, start_step=2)) == whole[6:]
    assert len(StreamSampler(3, 4, start_step=1)) == 9


def test_synthetic_pairs_follow_the_flow_and_are_reproducible(photos):
    files = find_photos([photos])
    params = PairParams(frame_noise=0.0, frame_brightness=0.0)
    ds = TrainingPairs(files, 24, seed=5, params=params)
    item = ds[7]
    assert item["frame1"].shape == (3, 24, 24) and item["frame2"].shape == (3, 24, 24)
    assert item["flow"].shape == (2, 24, 24) and item["mask"].shape == (1, 24, 24)
    assert 0.0 <= float(item["frame1"].min()) and float(item["frame1"].max()) <= 1.0
    warped, valid = warp(item["frame1"][None], item["flow"][None])
    assert torch.allclose(warped[0], item["frame2"], atol=1e-6)  # frame2 = W(frame1, flow)
    assert torch.equal(valid[0], item["mask"]) and 0.3 < float(item["mask"].mean()) <= 1.0
    assert float(item["flow"].abs().max()) > 0.5
    again = TrainingPairs(files, 24, seed=5, params=params)[7]
    assert all(torch.equal(item[k], again[k]) for k in item)
    other = ds[8]
    assert not torch.equal(item["frame1"], other["frame1"])
    epoch = {ds.source(k) for k in range(len(ds))}
    assert epoch == set(range(len(ds)))  # every photo once per epoch
    plain = TrainingPairs(files, 24, params=PairParams(temporal=False))[0]
    assert set(plain) == {"frame1"}
    noisy = TrainingPairs(files, 24, seed=5)[7]
    assert 0.005 < float((noisy["frame2"] - item["frame2"]).abs().mean()) < 0.1


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"qscale": "2"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_video_frames_become_pairs_with_dis_flow_and_mask(tmp_path):
    big = smooth_image(80, 120, seed=11)
    frames = [np.ascontiguousarray(big[8:72, 2 * t:2 * t + 96]) for t in range(9)]  # pans 2 px/frame
    video = tmp_path / "pan.mp4"
    _write_video(video, frames)
    pairs = read_video_pairs(video, max_pairs=3, min_side=48)
    assert len(pairs) == 3 and pairs[0][0].shape == (48, 72, 3)
    ds = TrainingPairs([], 40, video_pairs=pairs, crop_min=1.0)
    item = ds[0]
    assert float(item["mask"].mean()) > 0.6
    warped, _ = warp(item["frame1"][None], item["flow"][None])
    m = item["mask"][None]
    err_aligned = float(((warped - item["frame2"][None]).abs() * m).sum() / m.sum())
    err_raw = float(((item["frame1"] - item["frame2"]).abs()[None] * m).sum() / m.sum())
    assert err_aligned < 0.5 * err_raw
    with pytest.raises(FastNSTError, match="does not exist"):
        read_video_pairs(tmp_path / "none.mp4", 3, 48)

"""The trainer (``train/``): configuration, data, short CPU runs with a random VGG, resume, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from fastnst.errors import FastNSTError
from fastnst.flow import warp
from fastnst.images import write_image
from fastnst.models import Arch, TransformerNet
from fastnst.styles import load_style
from fastnst.training.config import GATYS_STYLE_LAYERS, TrainConfig, build_parser, parse_config
from fastnst.training.data import (
    PairParams,
    StreamSampler,
    TrainingPairs,
    find_photos,
    read_video_pairs,
    split_validation,
)

from .conftest import smooth_image

REPO = Path(__file__).resolve().parent.parent


def _checkout_env() -> dict[str, str]:
    """`python -m train` runs from a checkout (train/ is not installed): from another folder, point at it."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs single-threaded (see conftest.one_thread)."""


@pytest.fixture
def photos(tmp_path) -> Path:
    """A COCO-like folder (plus a sub-folder) of 10 small photos of different sizes, and a style image."""
    root = tmp_path / "photos"
    for i in range(10):
        write_image(root / ("nested" if i % 3 == 0 else "") / f"img{i:02d}.png", smooth_image(36 + i, 44 - i, i))
    (root / "notes.txt").write_text("not an image")
    style = np.zeros((48, 48, 3), np.uint8)
    style[::6] = (250, 200, 20)  # bold stripes: a style the net can pick up quickly
    style[:, ::8] = (20, 60, 220)
    write_image(tmp_path / "stripes.png", style)
    return root


def tiny_config(root: Path, tmp_path: Path, **overrides) -> TrainConfig:
    base = {
        "content": [str(root)], "style": [str(tmp_path / "stripes.png")], "arch": "8,16,16:1", "image_size": 32,
        "batch_size": 2, "steps": 30, "lr": 5e-3, "vgg_weights": "random", "device": "cpu", "workers": 0,
        "log_every": 1, "sample_every": 0, "checkpoint_every": 0, "style_size": 48, "val_images": 2,
        "progress": False, "out_dir": str(tmp_path / "run"), "output": str(tmp_path / "model.safetensors"),
        "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_1": 1.0},
    }
    base.update(overrides)
    return TrainConfig(**base)


# --- configuration ----------------------------------------------------------------------------------


def test_parser_is_built_from_the_dataclass():
    parser = build_parser()
    dests = {a.dest for a in parser._actions}
    assert {f.name for f in fields(TrainConfig)} <= dests
    cfg = parse_config(["--content", "a", "b", "--style", "s.png"])
    defaults = TrainConfig(content=["a", "b"], style=["s.png"])
    assert cfg == defaults
    assert cfg.style_layers == GATYS_STYLE_LAYERS and cfg.content_layers == {"relu2_2": 1.0}
    cfg = parse_config(["--content", "a", "--style", "s.png", "--style-layers", "relu1_1:2,relu2_1",
                        "--no-progress", "--temporal-weight", "0", "--image-size", "64", "--amp", "off"])
    assert cfg.style_layers == {"relu1_1": 2.0, "relu2_1": 1.0}
    assert cfg.progress is False and cfg.temporal_weight == 0.0 and cfg.image_size == 64 and cfg.amp == "off"
    assert TrainConfig.from_dict({**cfg.to_dict(), "unknown_later_field": 1}) == cfg
    with pytest.raises(SystemExit):
        parse_config(["--content", "a", "--style", "s.png", "--style-layers", "relu1_1:x"])


def test_help_from_python_m_train_and_fastnst_train(capsys):
    proc = subprocess.run([sys.executable, "-m", "train", "--help"], check=False, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "--temporal-weight" in proc.stdout and "--resume" in proc.stdout
    from fastnst import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastnst train") and "--content" in out


RECIPES = sorted((REPO / "train" / "recipes").glob("*.toml"))
REPRODUCED = ("preset", "image_size", "batch_size", "steps", "lr", "content_weight", "style_weight", "tv_weight",
              "temporal_weight", "content_layers", "style_layers", "style_size", "perceptual_both", "crop_min", "seed",
              "half", "flow_shift", "flow_zoom", "flow_rotate", "flow_local", "frame_noise", "frame_brightness")


def test_there_is_a_recipe_for_every_shipped_style():
    shipped = {p.stem for p in (REPO / "weights").glob("*.safetensors")}
    assert {f"{p.stem}_fast" for p in RECIPES} == shipped


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_parses_into_a_valid_config_reproducing_its_shipped_style(recipe):
    from fastnst.training.loop import parse_arch, run_paths

    cfg = parse_config(["--recipe", str(recipe)])
    assert isinstance(cfg, TrainConfig) and cfg.recipe == str(recipe)
    arch, preset = parse_arch(cfg)
    _, out_dir, output = run_paths(cfg, preset)
    assert output.stem == f"{recipe.stem}_fast" and output.parent == out_dir  # never into weights/
    shipped = load_style(REPO / "weights" / f"{output.stem}.safetensors")
    assert shipped.net.arch == arch
    assert {k: cfg.to_dict()[k] for k in REPRODUCED} == {k: shipped.train_config[k] for k in REPRODUCED}
    assert [Path(p).name for p in cfg.style] == shipped.metadata["style_image"].split(",")
    data = Path(cfg.data_root)
    assert Path(cfg.style[0]).parent.parent == data and Path(cfg.content[0]) == data / "photos"
    assert data == REPO.parent / "shared" / "data"  # the example data beside the checkout, found from the file
    assert "/work" not in recipe.read_text() and str(REPO) not in recipe.read_text()  # no machine paths
    if data.is_dir():  # the example data beside the checkout, when present
        assert all(Path(p).is_file() for p in cfg.style) and Path(cfg.content[0]).is_dir()


def test_recipe_values_are_overridden_by_explicit_options_and_paths_follow_the_data_root(tmp_path, monkeypatch):
    recipe = tmp_path / "r" / "mine.toml"
    recipe.parent.mkdir()
    recipe.write_text('content = "photos"\nstyle = ["styles/a.png", "/abs/b.png"]\nsteps = 7\nlr = 1\n'
                      'style_layers = "relu1_1:2,relu2_1"\ncontent_layers = { relu3_1 = 0.5 }\nhalf = true\n'
                      'init = "runs/x/checkpoint.pt"\n')
    monkeypatch.chdir(tmp_path)
    cfg = parse_config(["--recipe", str(recipe)])
    assert cfg.content == [str(recipe.parent / "photos")] and cfg.style == [str(recipe.parent / "styles/a.png"),
                                                                             "/abs/b.png"]
    assert cfg.steps == 7 and cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.half is True
    assert cfg.style_layers == {"relu1_1": 2.0, "relu2_1": 1.0} and cfg.content_layers == {"relu3_1": 0.5}
    assert cfg.init == "runs/x/checkpoint.pt"  # not data: relative to the current folder, as on the command line
    assert cfg.image_size == TrainConfig.image_size  # not in the recipe: the default
    cfg = parse_config(["--recipe", str(recipe), "--steps", "9", "--no-half", "--style", "s.png", "--data-root", "d"])
    assert cfg.steps == 9 and cfg.half is False and cfg.style == ["s.png"] and cfg.content == ["d/photos"]


def test_bad_recipes_are_refused_in_one_line(tmp_path, capsys):
    import fastnst.training as train

    cases = {
        'steps = 10\nstyle_wieght = 3\n': "unknown setting(s) style_wieght",
        'steps = "ten"\n': "steps must be an integer",
        'amp = "fp8"\n': "amp must be one of auto, bf16, fp16, off",
        'half = 1\n': "half must be true or false",
        'recipe = "other.toml"\n': "unknown setting(s) recipe",
        'steps = \n': "not valid TOML",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.toml"
        path.write_text(text)
        assert train.main(["--recipe", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert train.main(["--recipe", str(tmp_path / "none.toml")]) == 2
    assert "cannot be read" in capsys.readouterr().err


# --- data -------------------------------------------------------------------------------------------


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


# --- training runs ----------------------------------------------------------------------------------


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_short_training_lowers_the_loss_and_writes_a_model_that_stylizes(photos, tmp_path):
    from fastnst.training.loop import train

    cfg = tiny_config(photos, tmp_path, sample_every=15, checkpoint_every=10)
    result = train(cfg)
    run = tmp_path / "run"
    log = _log(run)
    assert [r["step"] for r in log] == list(range(1, 31))
    assert set(log[0]) == {"step", "content", "style", "tv", "temporal", "total", "images_per_s", "seconds"}
    first = np.mean([r["total"] for r in log[:3]])
    last = np.mean([r["total"] for r in log[-3:]])
    assert last < 0.3 * first, (first, last)
    assert log[-1]["temporal"] > 0 and log[-1]["images_per_s"] > 0
    assert (run / "samples" / "step_000015.png").is_file() and (run / "samples" / "step_000030.png").is_file()
    assert (run / "loss_curve.png").is_file() and json.loads((run / "config.json").read_text())["steps"] == 30

    state = torch.load(run / "checkpoint.pt", weights_only=True)  # plain dicts only
    assert state["step"] == 30 and state["config"]["arch"] == "8,16,16:1" and "optimizer" in state

    assert result.output == tmp_path / "model.safetensors"
    model = load_style(result.output)
    # the recorded name is the one it is listed and picked by: the file stem (the style image was stripes.png)
    assert model.name == "model" and model.preset == "custom" and model.train_config["steps"] == 30
    img = torch.from_numpy(smooth_image(28, 36, 3)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = model.net(img)
    assert out.shape == img.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert float((out - img).abs().mean()) > 0.02  # it does something to the photo


def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(photos, tmp_path):
    from fastnst.training.loop import train

    straight = train(tiny_config(photos, tmp_path, steps=6, out_dir=str(tmp_path / "a"),
                                 output=str(tmp_path / "a.safetensors")))
    assert straight.start_step == 0 and straight.steps == 6
    train(tiny_config(photos, tmp_path, steps=3, out_dir=str(tmp_path / "b"), output=str(tmp_path / "b3")))
    resumed = train(tiny_config(photos, tmp_path, steps=6, out_dir=str(tmp_path / "b"),
                                output=str(tmp_path / "b.safetensors"), resume="auto"))
    assert resumed.start_step == 3 and resumed.steps == 6
    assert [r["step"] for r in _log(tmp_path / "b")] == [1, 2, 3, 4, 5, 6]
    a = load_style(tmp_path / "a.safetensors").net.state_dict()
    b = load_style(tmp_path / "b.safetensors").net.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # same data, same RNG, same optimizer state
    again = train(tiny_config(photos, tmp_path, steps=6, out_dir=str(tmp_path / "b"),
                              output=str(tmp_path / "b.safetensors"), resume=str(tmp_path / "b" / "checkpoint.pt")))
    assert again.start_step == 6 and again.steps == 6  # already finished: nothing more to do


def test_temporal_weight_zero_and_cli_delegation(photos, tmp_path, capsys):
    from fastnst import cli

    out = tmp_path / "plain.safetensors"
    rc = cli.main(["train", "--content", str(photos), "--style", str(tmp_path / "stripes.png"), "--arch", "4,8,8:1",
                   "--image-size", "24", "--batch-size", "1", "--steps", "3", "--vgg-weights", "random",
                   "--device", "cpu", "--workers", "1", "--log-every", "1", "--temporal-weight", "0",
                   "--style-layers", "relu1_2", "--out-dir", str(tmp_path / "plain"), "--output", str(out),
                   "--no-progress", "--half"])
    assert rc == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    assert all(r["temporal"] == 0 for r in _log(tmp_path / "plain"))
    assert load_style(out).train_config["temporal_weight"] == 0


def test_loss_network_and_style_images(photos, tmp_path):
    from fastnst.training.loop import build_loss_network, read_style_images
    from fastnst.vgg import VGG19Features

    net = build_loss_network(tiny_config(photos, tmp_path), ["relu2_1", "relu1_1"], torch.device("cpu"))
    assert net.taps == ("relu2_1", "relu1_1")  # random VGG19 for tests: the seeded one
    assert torch.equal(net.layers[0].weight, VGG19Features(["relu1_1"], seed=0).layers[0].weight)
    style = str(tmp_path / "stripes.png")
    assert read_style_images([style, style], 20, torch.device("cpu"))[1].shape == (1, 3, 20, 20)
    assert read_style_images([style], 0, torch.device("cpu"))[0].shape == (1, 3, 48, 48)


def test_interrupt_writes_a_checkpoint_to_resume_from(photos, tmp_path):
    from fastnst.training.loop import train
    from fastnst.vgg import VGG19Features

    class InterruptAfter(VGG19Features):
        calls = 0

        def forward(self, x):
            InterruptAfter.calls += 1
            if InterruptAfter.calls > 10:  # style Grams, references, then ~4 steps of 2 calls each
                raise KeyboardInterrupt
            return super().forward(x)

    cfg = tiny_config(photos, tmp_path, steps=50, checkpoint_every=0)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, loss_net=InterruptAfter(["relu1_2", "relu2_2", "relu3_1"]))
    stopped = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"]
    assert 1 <= stopped < 50
    result = train(tiny_config(photos, tmp_path, steps=stopped + 1, resume="auto"))
    assert result.start_step == stopped and result.steps == stopped + 1


def test_a_stop_event_checkpoints_with_a_neutral_note(photos, tmp_path, capsys):
    """A stop (SIGTERM, quick mode's time budget) is not necessarily an interruption: the note says
    where the run stopped and how to continue, nothing more."""
    import threading

    from fastnst.training.loop import train

    stop = threading.Event()
    stop.set()
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(photos, tmp_path, steps=50), stop=stop)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=True)["step"] == 1
    err = capsys.readouterr().err
    assert f"stopped at step 1: checkpoint in {ckpt} (--resume auto continues from it)" in err
    assert "interrupted" not in err


def test_loss_curve_has_a_panel_per_term_and_without_matplotlib_a_single_note(photos, tmp_path, capsys,
                                                                              monkeypatch):
    from fastnst.images import read_image
    from fastnst.training.loop import train

    train(tiny_config(photos, tmp_path, steps=2, sample_every=1, temporal_weight=0.0))
    # total, content, style, tv, images/s (temporal is off: no panel) in 3 columns, and the run's title
    assert read_image(tmp_path / "run" / "loss_curve.png").shape == (640, 1260, 3)
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    train(tiny_config(photos, tmp_path, steps=3, sample_every=1, out_dir=str(tmp_path / "bare"),
                      output=str(tmp_path / "bare.safetensors")))
    err = capsys.readouterr().err
    assert err.count("matplotlib is not installed (pip install 'fastnst[plots]'): no loss curve") == 1
    assert not (tmp_path / "bare" / "loss_curve.png").exists() and (tmp_path / "bare.safetensors").is_file()


def test_bf16_training_on_cpu_runs_with_finite_falling_loss(photos, tmp_path, capsys):
    """--amp bf16 on any CPU (emulated where not native, with a warning): finite, falling loss."""
    from fastnst.devices import cpu_has_native_bf16
    from fastnst.training.loop import train

    # Emulated bf16 convolutions are ~10× slower than fp32 here: the smallest net and taps that still learn.
    result = train(tiny_config(photos, tmp_path, amp="bf16", steps=12, arch="4,8,8:1", image_size=24,
                               style_layers={"relu1_2": 1.0, "relu2_1": 1.0}))
    log = _log(tmp_path / "run")
    assert all(np.isfinite(r[k]) for r in log for k in ("content", "style", "tv", "temporal", "total"))
    first = np.mean([r["total"] for r in log[:3]])
    last = np.mean([r["total"] for r in log[-3:]])
    assert last < 0.5 * first, (first, last)
    assert log[-1]["temporal"] > 0
    assert load_style(result.output).train_config["amp"] == "bf16"
    err = capsys.readouterr().err
    assert ("emulated" in err) != cpu_has_native_bf16()


def test_amp_auto_picks_only_native_precisions(monkeypatch):
    from fastnst.training import loop

    cpu = torch.device("cpu")
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)
    assert loop.amp_dtype("auto", cpu) == (None, "")
    dtype, note = loop.amp_dtype("bf16", cpu)
    assert dtype == torch.bfloat16 and "emulated" in note and "\n" not in note
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: True)
    assert loop.amp_dtype("auto", cpu) == (torch.bfloat16, "")
    assert loop.amp_dtype("bf16", cpu) == (torch.bfloat16, "")
    assert loop.amp_dtype("off", cpu) == (None, "")
    with pytest.raises(FastNSTError, match="needs a CUDA device"):
        loop.amp_dtype("fp16", cpu)
    gpu = torch.device("cuda", 0)
    for major, auto in ((7, torch.float16), (8, torch.bfloat16), (9, torch.bfloat16)):
        monkeypatch.setattr(loop, "cuda_has_native_bf16", lambda d, m=major: m >= 8)
        assert loop.amp_dtype("auto", gpu) == (auto, "")
        assert loop.amp_dtype("fp16", gpu) == (torch.float16, "")
        assert (loop.amp_dtype("bf16", gpu)[1] != "") == (major < 8)


@pytest.mark.slow
def test_background_run_stops_on_sigterm_with_a_checkpoint_and_resumes(photos, tmp_path):
    import signal

    args = [sys.executable, "-m", "train", "--content", str(photos), "--style", str(tmp_path / "stripes.png"),
            "--arch", "4,8,8:1", "--image-size", "24", "--batch-size", "1", "--vgg-weights", "random",
            "--device", "cpu", "--workers", "0", "--threads", "1", "--log-every", "1", "--checkpoint-every", "0",
            "--style-layers", "relu1_2", "--out-dir", str(tmp_path / "bg"), "--output", str(tmp_path / "bg.st")]
    proc = subprocess.Popen(args + ["--steps", "100000"], cwd=tmp_path, env=_checkout_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = tmp_path / "bg" / "log.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    state = torch.load(tmp_path / "bg" / "checkpoint.pt", weights_only=True)
    stopped = state["step"]
    assert stopped >= 2 and f"stopped at step {stopped}: checkpoint in " in err and "--resume auto" in err
    rc = subprocess.run(args + ["--steps", str(stopped + 2), "--resume", "auto", "--no-progress"], cwd=tmp_path,
                        env=_checkout_env(),
                        check=False, capture_output=True, text=True, timeout=120)
    assert rc.returncode == 0, rc.stderr[-2000:]
    assert [r["step"] for r in _log(tmp_path / "bg")] == list(range(1, stopped + 3))
    assert load_style(tmp_path / "bg.st.safetensors").train_config["steps"] == stopped + 2


def test_sigterm_to_the_whole_process_group_still_checkpoints(photos, tmp_path):
    """`kill -- -PGID`, `pkill -f` or a batch scheduler signal the DataLoader workers too."""
    import signal

    args = [sys.executable, "-m", "train", "--content", str(photos), "--style", str(tmp_path / "stripes.png"),
            "--arch", "4,8,8:1", "--image-size", "24", "--batch-size", "1", "--vgg-weights", "random",
            "--device", "cpu", "--workers", "2", "--threads", "1", "--log-every", "1", "--checkpoint-every", "0",
            "--style-layers", "relu1_2", "--out-dir", str(tmp_path / "pg"), "--output", str(tmp_path / "pg.st"),
            "--steps", "100000", "--no-progress"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=_checkout_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log = tmp_path / "pg" / "log.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert torch.load(tmp_path / "pg" / "checkpoint.pt", weights_only=True)["step"] >= 3


def test_user_errors_are_one_line_and_exit_2(photos, tmp_path, capsys):
    import fastnst.training as train

    common = ["--style", str(tmp_path / "stripes.png"), "--vgg-weights", "random", "--device", "cpu",
              "--no-progress", "--out-dir", str(tmp_path / "e"), "--output", str(tmp_path / "e.safetensors")]
    cases = [
        (["--content", str(tmp_path / "missing")], "does not exist"),
        (["--content", str(photos), "--resume", str(tmp_path / "nope.pt")], "does not exist"),
        (["--content", str(photos), "--arch", "8,16"], "W1,W2,W3:RES"),
        (["--content", str(photos), "--style-layers", "relu9_9"], "Unknown VGG19 layer"),
        (["--content", str(photos), "--steps", "0"], "--steps"),
        (["--content", str(photos), "--style", str(tmp_path / "nope.png")], "nope.png does not exist"),
    ]
    for extra, message in cases:
        assert train.main(common + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "e.safetensors").exists()


def test_default_output_goes_to_the_run_folder_named_as_listed_with_no_machine_paths(photos, tmp_path, monkeypatch,
                                                                                       capsys):
    import fastnst.training as train

    monkeypatch.chdir(tmp_path)
    args = ["--content", str(photos), "--style", str(tmp_path / "stripes.png"), "--arch", "4,8,8:1", "--image-size",
            "24", "--batch-size", "1", "--steps", "1", "--vgg-weights", "random", "--device", "cpu", "--workers", "0",
            "--style-layers", "relu1_2", "--no-progress"]
    assert train.main(args) == 0
    expected = Path("runs") / "stripes_custom" / "stripes_custom.safetensors"
    assert expected.is_file() and not Path("weights").exists()
    out = capsys.readouterr().out
    assert f"'stripes_custom' to {expected}" in out
    model = load_style(expected)
    assert model.name == "stripes_custom"  # the name `fastnst styles` would list it by
    tc = model.train_config
    assert tc["content"] == ["photos"] and tc["style"] == ["stripes.png"] and tc["out_dir"] == ""
    paths = [v for v in tc.values() if isinstance(v, str)] + [p for k in ("content", "style") for p in tc[k]]
    assert not any(os.path.isabs(v) or os.sep in v for v in paths), tc


def test_an_existing_style_file_is_never_replaced_without_force(photos, tmp_path, capsys):
    import fastnst.training as train
    from fastnst.training.loop import train as run

    shipped = REPO / "weights" / "starry_night_fast.safetensors"
    target = tmp_path / "weights" / "starry_night_fast.safetensors"  # a copy of a shipped style
    target.parent.mkdir()
    target.write_bytes(shipped.read_bytes())
    before = target.read_bytes()
    args = ["--content", str(photos), "--style", str(tmp_path / "stripes.png"), "--arch", "4,8,8:1", "--image-size",
            "24", "--batch-size", "1", "--steps", "1", "--vgg-weights", "random", "--device", "cpu", "--workers", "0",
            "--style-layers", "relu1_2", "--no-progress", "--out-dir", str(tmp_path / "r"), "--output", str(target)]
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert target.read_bytes() == before and not (tmp_path / "r" / "log.jsonl").exists()  # refused before training
    assert train.main(args + ["--force"]) == 0
    assert target.read_bytes() != before and load_style(target).name == "starry_night_fast"
    # a new run (not a resumption) in the same run folder does not silently replace the model either
    with pytest.raises(FastNSTError, match="already exists"):
        run(tiny_config(photos, tmp_path, steps=1, out_dir=str(tmp_path / "r"), output=str(target)))
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"someone else's file")
    with pytest.raises(FastNSTError, match="already exists"):  # resuming a run whose model went elsewhere
        run(tiny_config(photos, tmp_path, steps=2, arch="4,8,8:1", style_layers={"relu1_2": 1.0}, image_size=24,
                        batch_size=1, out_dir=str(tmp_path / "r"), output=str(other), resume="auto"))
    assert other.read_bytes() == b"someone else's file"


def test_resume_refuses_a_checkpoint_of_another_network(photos, tmp_path):
    from fastnst.training.loop import train

    train(tiny_config(photos, tmp_path, steps=1))
    with pytest.raises(FastNSTError, match="not the requested"):
        train(tiny_config(photos, tmp_path, steps=2, arch="4,8,8:1", resume="auto"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(FastNSTError, match="not a readable training checkpoint"):
        train(tiny_config(photos, tmp_path, steps=2, resume=str(tmp_path / "junk.pt")))


def test_init_fine_tunes_from_a_style_model_or_checkpoint(photos, tmp_path):
    from fastnst.training.loop import train

    base = train(tiny_config(photos, tmp_path, steps=2, out_dir=str(tmp_path / "base"),
                             output=str(tmp_path / "base.safetensors")))
    base_sd = load_style(base.output).net.state_dict()
    for source in (base.output, tmp_path / "base" / "checkpoint.pt"):
        tuned = train(tiny_config(photos, tmp_path, steps=1, lr=1e-12, out_dir=str(tmp_path / "tuned"),
                                  output=str(tmp_path / "tuned.safetensors"), init=str(source), force=True))
        assert tuned.start_step == 0  # a new run: own step count and optimiser
        sd = load_style(tuned.output).net.state_dict()
        assert all(torch.allclose(base_sd[k], sd[k]) for k in sd)  # lr ~0: the initial weights
    fresh = load_style(train(tiny_config(photos, tmp_path, steps=1, lr=1e-12, out_dir=str(tmp_path / "fresh"),
                                         output=str(tmp_path / "fresh.safetensors"))).output).net.state_dict()
    assert not all(torch.allclose(base_sd[k], fresh[k]) for k in fresh)  # the check above can fail
    with pytest.raises(FastNSTError, match="not the requested"):
        train(tiny_config(photos, tmp_path, steps=1, arch="4,8,8:1", out_dir=str(tmp_path / "other"),
                          init=str(base.output)))
    with pytest.raises(FastNSTError, match="does not exist"):
        train(tiny_config(photos, tmp_path, steps=1, init=str(tmp_path / "none.safetensors")))


def _ddp_worker(rank: int, world: int, port: int, cfg: TrainConfig) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from fastnst.training.loop import train

    train(cfg)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_gloo_one_writer_and_resume(photos, tmp_path):
    """Two forked processes with torchrun's environment: DDP over gloo equals one process with the
    combined batch (the sampler shards one stream); only rank 0 writes; a DDP run resumes."""
    import torch.multiprocessing as mp

    from fastnst.training.loop import train

    small = {"arch": "4,8,8:1", "image_size": 24, "steps": 3, "style_layers": {"relu1_2": 1.0, "relu2_1": 1.0}}
    cfg = tiny_config(photos, tmp_path, batch_size=1, temporal_weight=0.0, **small)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), cfg), nprocs=2, start_method="fork")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["world"] == 2
    ddp_net = load_style(tmp_path / "model.safetensors").net

    one = train(tiny_config(photos, tmp_path, batch_size=2, temporal_weight=0.0, out_dir=str(tmp_path / "one"),
                            output=str(tmp_path / "one.safetensors"), **small))
    one_net = load_style(one.output).net
    img = torch.from_numpy(smooth_image(24, 24, 7)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        assert torch.allclose(ddp_net(img), one_net(img), atol=2e-3)
        torch.manual_seed(0)
        init = TransformerNet(Arch((4, 8, 8), 1)).eval()  # the trainer's seeded initialisation
        moved = float((ddp_net(img) - init(img)).abs().max())
        assert moved > 0.02, moved  # so the equality above is not that of two untrained nets

    cfg = tiny_config(photos, tmp_path, batch_size=1, resume="auto", **{**small, "steps": 5})
    mp.start_processes(_ddp_worker, args=(2, _free_port(), cfg), nprocs=2, start_method="fork")
    log = _log(tmp_path / "run")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]  # one writer; continued where it stopped
    assert log[-1]["temporal"] > 0 and log[0]["temporal"] == 0
    assert load_style(tmp_path / "model.safetensors").train_config["steps"] == 5


class _StopOnRankOne:
    """A stop flag that only rank 1 sees (a SIGTERM that reached one process), from its first look."""

    def is_set(self) -> bool:
        return os.environ.get("RANK") == "1"


def _ddp_stop_worker(rank: int, world: int, port: int, cfg: TrainConfig, result_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from fastnst.training.loop import train

    try:
        train(cfg, stop=_StopOnRankOne())  # type: ignore[arg-type]
        outcome = "finished"
    except KeyboardInterrupt:
        outcome = "stopped"
    Path(result_dir, f"rank{rank}").write_text(outcome)


def test_ddp_a_stop_seen_by_one_process_stops_every_process(photos, tmp_path):
    """Without agreement rank 0 would go on into the next gradient all-reduce and wait forever."""
    import torch.multiprocessing as mp

    from fastnst.training.loop import STOP_AGREE_EVERY

    cfg = tiny_config(photos, tmp_path, batch_size=1, temporal_weight=0.0, arch="4,8,8:1", image_size=24, steps=40,
                      style_layers={"relu1_2": 1.0})
    ctx = mp.start_processes(_ddp_stop_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2,
                             start_method="fork", join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("a process is still blocked: the stop was not agreed")
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["stopped", "stopped"]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == STOP_AGREE_EVERY  # both stopped at the first agreement point
    assert not (tmp_path / "model.safetensors").exists()


def test_torchrun_device_is_cuda_local_rank_and_a_conflicting_index_is_refused(monkeypatch):
    from fastnst.training import dist

    monkeypatch.setattr(dist, "pick_device", lambda name: torch.device("cuda" if name in ("auto", None) else name))
    assert dist.rank_device("auto", 1) == torch.device("cuda", 1)
    assert dist.rank_device("cuda", 3) == torch.device("cuda", 3)
    assert dist.rank_device("cuda:0", 0) == torch.device("cuda", 0)  # one process per node
    assert dist.rank_device("cpu", 1) == torch.device("cpu")
    with pytest.raises(FastNSTError, match="CUDA_VISIBLE_DEVICES"):
        dist.rank_device("cuda:0", 1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_cuda_training_with_amp_has_finite_falling_loss(photos, tmp_path, amp):
    from fastnst.training.loop import train

    result = train(tiny_config(photos, tmp_path, device="cuda", amp=amp, steps=20, image_size=64,
                               arch="16,32,64:2", checkpoint_every=10))
    log = _log(tmp_path / "run")
    assert len(log) == 20 and all(np.isfinite(r[k]) for r in log for k in ("content", "style", "temporal", "total"))
    first = np.mean([r["total"] for r in log[:3]])
    last = np.mean([r["total"] for r in log[-3:]])
    assert last < 0.5 * first, (first, last)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert bool(state["scaler"]) == (amp == "fp16")  # fp16 trains with a loss scaler, bf16 needs none
    model = load_style(result.output, device="cuda")
    x = torch.rand(1, 3, 64, 64, device="cuda")
    with torch.no_grad():
        assert torch.isfinite(model.net(x)).all()


@pytest.mark.slow
def test_torchrun_two_processes_gloo(photos, tmp_path):
    """``torchrun --nproc_per_node 2 -m train``: DDP on CPU (gloo), one writer, then resume under torchrun."""
    args = ["--content", str(photos), "--style", str(tmp_path / "stripes.png"), "--arch", "4,8,8:1",
            "--image-size", "24", "--batch-size", "1", "--vgg-weights", "random", "--device", "cpu",
            "--workers", "0", "--log-every", "1", "--style-layers", "relu1_2,relu2_1", "--no-progress",
            "--out-dir", str(tmp_path / "ddp"), "--output", str(tmp_path / "ddp.safetensors")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "train"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + args + ["--steps", "3"], check=False, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote ") == 1  # rank 0 reports, rank 1 stays quiet
    state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["world"] == 2
    proc = subprocess.run(cmd + args + ["--steps", "5", "--resume", "auto"], check=False, capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = _log(tmp_path / "ddp")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]  # written once, continued
    assert log[-1]["images_per_s"] > 0
    assert load_style(tmp_path / "ddp.safetensors").train_config["steps"] == 5
    print(f"torchrun test: {time.perf_counter() - t0:.1f} s")


def test_warmup_ramps_the_learning_rate_linearly_then_holds():
    from fastnst.training.loop import lr_at, train

    cfg = TrainConfig(content=["x"], style=["y"], lr=1e-3, warmup_steps=4)
    assert [lr_at(cfg, s) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert lr_at(TrainConfig(content=["x"], style=["y"], lr=1e-3), 0) == 1e-3
    with pytest.raises(FastNSTError, match="warmup"):
        train(parse_config(["--content", "x", "--style", "y", "--warmup-steps", "-1"]))

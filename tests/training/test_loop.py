"""The training loop (fastnst/training/loop.py): short CPU runs with a random VGG, resume, stops, amp, errors."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fastnst.errors import FastNSTError
from fastnst.styles import load_style
from fastnst.training.config import TrainConfig, parse_config

from ..conftest import smooth_image
from .conftest import REPO, _log, tiny_config


def _checkout_env() -> dict[str, str]:
    """`python -m train` runs from a checkout (train/ is not installed): from another folder, point at it."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


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


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_cuda_training_with_amp_has_finite_falling_loss(photos, tmp_path, amp):
    from fastnst.training.loop import train

    # 40 steps: fp16's loss scaler starts at 2**16 and skips the steps whose gradients overflow while it
    # halves; this tiny net's peak activation gradient is ~74 (fp32, measured), so about 7 steps go (20
    # steps failed on an H200); real runs (lite at 256 px, VGG19) peak at ~0.2 and lose none.
    result = train(tiny_config(photos, tmp_path, device="cuda", amp=amp, steps=40, image_size=64,
                               arch="16,32,64:2", checkpoint_every=10))
    log = _log(tmp_path / "run")
    assert len(log) == 40 and all(np.isfinite(r[k]) for r in log for k in ("content", "style", "temporal", "total"))
    first = np.mean([r["total"] for r in log[:3]])
    last = np.mean([r["total"] for r in log[-5:]])
    assert last < 0.5 * first, (first, last)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert bool(state["scaler"]) == (amp == "fp16")  # fp16 trains with a loss scaler, bf16 needs none
    model = load_style(result.output, device="cuda")
    x = torch.rand(1, 3, 64, 64, device="cuda")
    with torch.no_grad():
        assert torch.isfinite(model.net(x)).all()


def test_warmup_ramps_the_learning_rate_linearly_then_holds():
    from fastnst.training.loop import lr_at, train

    cfg = TrainConfig(content=["x"], style=["y"], lr=1e-3, warmup_steps=4)
    assert [lr_at(cfg, s) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert lr_at(TrainConfig(content=["x"], style=["y"], lr=1e-3), 0) == 1e-3
    with pytest.raises(FastNSTError, match="warmup"):
        train(parse_config(["--content", "x", "--style", "y", "--warmup-steps", "-1"]))


@pytest.mark.parametrize("prior_motion", ["known", "estimated"])
def test_a_video_network_trains_from_a_per_frame_one_and_starts_as_it(photos, tmp_path, prior_motion):
    """--preset video --init LITE: step 0 computes exactly the lite net (zero prior weights); training
    with priors, an unrolled chain and empty priors runs, lowers the loss and moves the prior weights."""
    from fastnst.models import video_input
    from fastnst.training.loop import train

    common = {"image_size": 32, "batch_size": 2, "arch": ""}
    lite = train(tiny_config(photos, tmp_path, steps=2, preset="lite", out_dir=str(tmp_path / "lite"),
                             output=str(tmp_path / "lite.safetensors"), **common))
    start = train(tiny_config(photos, tmp_path, steps=1, lr=1e-12, preset="video", init=str(lite.output),
                              out_dir=str(tmp_path / "v0"), output=str(tmp_path / "v0.safetensors"), **common))
    base, video = load_style(lite.output).net.eval(), load_style(start.output).net.eval()
    assert video.arch.video and not base.arch.video
    x, prior, mask = torch.rand(1, 3, 24, 40), torch.rand(1, 3, 24, 40), torch.ones(1, 1, 24, 40)
    with torch.no_grad():
        assert torch.allclose(video(video_input(x, prior, mask)), base(x), atol=2e-3)  # fp16 file, same net
    plain = train(tiny_config(photos, tmp_path, steps=1, lr=1e-12, preset="video_plain", init=str(lite.output),
                              out_dir=str(tmp_path / "p0"), output=str(tmp_path / "p0.safetensors"), **common))
    plain_net = load_style(plain.output).net.eval()
    assert plain_net.arch.video and not plain_net.arch.gate
    with torch.no_grad():
        assert torch.allclose(plain_net(video_input(x, prior, mask)), base(x), atol=2e-3)

    # DIS trusts little of a 32-px crop of these smooth photos: the estimated motion trains at 64 px
    run = train(tiny_config(photos, tmp_path, steps=12, preset="video", init=str(lite.output), lr=3e-3,
                            unroll=3, unroll_after=0.5, prior_motion=prior_motion, out_dir=str(tmp_path / "v"),
                            output=str(tmp_path / "v.safetensors"),
                            **{**common, "image_size": 32 if prior_motion == "known" else 64}))
    log = _log(tmp_path / "v")
    assert all(np.isfinite(r["total"]) for r in log)
    if prior_motion == "known":
        assert np.mean([r["total"] for r in log[-3:]]) < np.mean([r["total"] for r in log[:3]])
    else:  # the total swings with each batch's draw of kept and empty priors (0 to 53 here); priors were made
        assert sum(r["temporal"] > 0 for r in log) >= len(log) // 2
    trained = load_style(run.output).net
    assert trained.first_conv.weight[:, 12:].abs().sum() > 0  # the prior is used


def test_each_frame_of_a_video_chain_has_its_own_noise(photos, tmp_path, monkeypatch):
    """A camera's frames each have their own noise: with no motion at all, the frames of an unrolled
    chain (all the network is given) still differ by fresh noise of ``frame_noise``, frame after frame."""
    from fastnst.models import TransformerNet
    from fastnst.training.loop import train

    seen: list[torch.Tensor] = []
    forward = TransformerNet.forward

    def spy(self, x, **kw):
        seen.append(x[:, :3].detach().float().clone())
        return forward(self, x, **kw)

    monkeypatch.setattr(TransformerNet, "forward", spy)
    still = {"flow_shift": 0.0, "flow_zoom": 0.0, "flow_rotate": 0.0, "flow_local": 0.0, "frame_brightness": 0.0}
    train(tiny_config(photos, tmp_path, steps=1, preset="video", arch="", unroll=4, unroll_after=0.0, occluders=0.0,
                      frame_noise=0.05, val_images=0, **still))
    frames = seen[:4]  # frame 1 (no prior), 2 and 3 (under no_grad), 4 (the loss's)
    assert len(frames) == 4
    for a, b in itertools.pairwise(frames):
        inner = (a - b)[..., 4:-4, 4:-4]
        assert 0.05 < float(inner.std()) < 0.09  # two independent draws of std 0.05: 0.07 (less the clamp)


@pytest.mark.parametrize("target", ["known", "prior"])
def test_a_video_frame_is_held_to_the_prior_it_was_handed_or_to_the_true_motion(photos, tmp_path, monkeypatch,
                                                                               target):
    """temporal_target = prior: the temporal term's target and mask are exactly the prior and mask the
    network was handed (so copying them costs nothing); known: the previous output carried by the true
    flow, which a jittered prior misses."""
    from fastnst import losses
    from fastnst.models import TransformerNet
    from fastnst.training.loop import train

    handed: list[torch.Tensor] = []
    held: list[tuple[torch.Tensor, torch.Tensor]] = []
    forward, temporal = TransformerNet.forward, losses.temporal_loss

    def spy_forward(self, x, **kw):
        if kw.get("painted"):  # the frame the loss is taken on
            handed.append(x.detach().float().clone())
        return forward(self, x, **kw)

    def spy_temporal(current, target_, mask):
        held.append((target_.detach().float().clone(), mask.detach().float().clone()))
        return temporal(current, target_, mask)

    monkeypatch.setattr(TransformerNet, "forward", spy_forward)
    monkeypatch.setattr(losses, "temporal_loss", spy_temporal)
    train(tiny_config(photos, tmp_path, steps=1, preset="video_plain", arch="", empty_prior=0.0, unroll=2,
                      prior_jitter=2.0, temporal_target=target, val_images=0))
    (x,), (prior_target, prior_mask) = handed, held[0]
    assert prior_mask.sum() > 0
    same = torch.allclose(prior_mask, x[:, 6:7]) and torch.allclose(prior_target * prior_mask, x[:, 3:6], atol=1e-6)
    assert same == (target == "prior")


def test_estimated_priors_are_the_inference_motion_stage():
    """prior_motion = estimated: a textured frame moved by 3 px comes back carried onto the next
    frame where trusted, the mask is the inference one (binary, edges eroded), and a cut trusts nothing."""
    from fastnst.training.loop import _EstimatedMotion

    g = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.interpolate(torch.rand(2, 3, 24, 24, generator=g), size=96, mode="bicubic",
                                              align_corners=False).clamp(0, 1)
    first, second = texture[..., :, :80], texture[..., :, 3:83]  # the scene moves 3 px to the left
    motion = _EstimatedMotion(erode=3)
    motion.start(first)
    carried, mask = motion.carry(second, first)  # carrying the input itself: must land on the second frame
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.shape == (2, 1, 96, 80)
    assert mask[..., 8:-8, 8:-8].mean() > 0.9 and mask[..., -2:].mean() < 0.5  # the entering strip is not
    inner = mask.bool().expand_as(carried)
    assert (carried - second).abs()[inner].mean() < 0.02 < (first - second).abs()[inner].mean()
    motion.start(first)
    carried, mask = motion.carry(torch.rand(2, 3, 96, 80, generator=g), first)  # a cut
    assert mask.sum() == 0 and carried.abs().sum() == 0


def test_video_training_options_are_checked(photos, tmp_path):
    from fastnst.training.loop import train

    for bad in ({"empty_prior": 1.5}, {"unroll": 1}, {"prior_erode": 4}, {"unroll_after": -0.1}, {"carry": 4},
                {"carry": -3}, {"carry": 9, "preset": "lite"}, {"carry": 9, "arch": "8,16,16:1"}):
        with pytest.raises(FastNSTError):
            train(tiny_config(photos, tmp_path, steps=1, **{"preset": "video", "arch": "", **bad}))


def test_carry_sets_the_video_networks_tent():
    from fastnst.models import PRESETS
    from fastnst.training.loop import parse_arch

    assert parse_arch(TrainConfig(content=["x"], preset="video"))[0] == PRESETS["video"]
    arch, preset = parse_arch(TrainConfig(content=["x"], preset="video", carry=9))
    assert preset == "video" and arch.carry == 9 and arch.video and arch.widths == PRESETS["video"].widths


def test_distillation_learns_the_teacher_averaged_over_its_grid_phases(photos, tmp_path, monkeypatch):
    """--teacher-phases K: the student's target is :func:`fastnst.models.phase_mean` of the teacher (with
    K = 1 the teacher itself: tests/test_models.py), K is recorded with the model and checked against
    the teacher's grid."""
    from fastnst.models import phase_mean
    from fastnst.training import loop

    teacher = loop.train(tiny_config(photos, tmp_path, steps=1, out_dir=str(tmp_path / "t"),
                                     output=str(tmp_path / "teacher.safetensors"))).output
    seen: list[int] = []

    def recording(net, x, phases):
        seen.append(phases)
        return phase_mean(net, x, phases)

    monkeypatch.setattr(loop, "phase_mean", recording)
    student = {"style": [], "teacher": str(teacher), "steps": 2, "out_dir": str(tmp_path / "s"),
               "output": str(tmp_path / "student.safetensors")}
    out = loop.train(tiny_config(photos, tmp_path, teacher_phases=2, **student))
    assert seen == [2, 2] and load_style(out.output).train_config["teacher_phases"] == 2
    assert all(np.isfinite(r["total"]) for r in _log(tmp_path / "s"))
    for bad, message in (({"teacher_phases": 5}, "more than the teacher's grid has"),
                         ({"teacher_phases": 0}, "from 1 to 8")):
        with pytest.raises(FastNSTError, match=message):
            loop.train(tiny_config(photos, tmp_path, force=True, **{**student, **bad}))
    with pytest.raises(FastNSTError, match="only with a --teacher"):
        loop.train(tiny_config(photos, tmp_path, steps=1, teacher_phases=2))

"""Quick mode (``python -m train --style PAINTING --quick``, fastnst/training/quick.py): the nearest shipped
style, the name rule, the time budget, a stop that still leaves a model, bad input."""

from __future__ import annotations

import errno
import fnmatch
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fastnst.errors import FastNSTError
from fastnst.images import read_image, write_image
from fastnst.styles import list_styles, load_style, read_metadata, user_styles_dir
from fastnst.training import main as train_main
from fastnst.training import quick

from ..conftest import smooth_image
from .conftest import REPO

# Tiny sizes and a seeded random VGG19 (no weights on test machines): the mechanics, not the look.
TINY = ["--vgg-weights", "random", "--image-size", "32", "--batch-size", "2", "--style-size", "32",
        "--match-size", "48", "--sample-size", "48", "--val-images", "2", "--threads", "1", "--no-progress"]


@pytest.fixture
def scene(tmp_path) -> dict[str, Path]:
    """A folder of 8 small photos and a 96 px painting file named like a user's."""
    photos = tmp_path / "photos"
    for i in range(8):
        write_image(photos / f"p{i}.png", smooth_image(40 + i, 48 - i, i))
    painting = np.zeros((96, 80, 3), np.uint8)
    painting[::6] = (240, 190, 30)
    painting[:, ::7] = (30, 60, 210)
    write_image(tmp_path / "My Painting (1).png", painting)
    return {"photos": photos, "painting": tmp_path / "My Painting (1).png", "run": tmp_path / "run"}


def _args(scene, *extra: str) -> list[str]:
    return ["--style", str(scene["painting"]), "--quick", "--content", str(scene["photos"]),
            "--out-dir", str(scene["run"]), *TINY, *extra]


def test_packaged_data_is_listed_in_pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["fastnst"]
    files = [p.relative_to(REPO / "fastnst").as_posix() for p in (REPO / "fastnst" / "data").rglob("*") if p.is_file()]
    assert 16 <= len(list((REPO / "fastnst/data/quick_photos").glob("*.jpg"))) <= 24
    assert not [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert sum((REPO / "fastnst" / f).stat().st_size for f in files) < 3_000_000
    for p in (REPO / "fastnst/data/quick_photos").glob("*.jpg"):
        assert max(read_image(p).shape[:2]) <= 320, p
        assert p.name in (REPO / "fastnst/data/quick_photos/LICENSES.md").read_text(), f"{p.name}: no licence note"
    # every shipped perceptually trained net is a candidate; the distilled twins (lite) are not fine-tuned
    fast = {n for n, e in list_styles().items() if e.origin == "shipped" and read_metadata(e.path)["preset"] == "fast"}
    assert set(quick.shipped_candidates()) == fast and len(fast) >= 4


@pytest.mark.parametrize(("painting", "name"), [
    ("my_painting.jpg", "my_painting_quick"),
    ("Café Terrace (1888).webp", "cafe_terrace_1888_quick"),
    ("/some/dir/Starry-Night.PNG", "starry-night_quick"),
    ("(((.jpg", "painting_quick"),
    ("x" * 100 + ".png", "x" * 58 + "_quick"),
])
def test_name_rule(painting, name):
    assert quick.quick_name(painting) == name


def test_nearest_style_is_the_shipped_style_of_the_same_painting():
    from fastnst.vgg import VGG19Features

    vgg = VGG19Features(["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], seed=0).eval()
    candidates = quick.shipped_candidates()
    for name in ("night_cafe_fast", "starry_night_fast"):
        painting = read_image(candidates[name][0])
        picked, dists = quick.nearest_style(painting, candidates, vgg, size=48)
        assert picked == name and dists[name] < 1e-5
        assert list(dists) == sorted(dists, key=dists.get) and min(v for k, v in dists.items() if k != name) > 0.05


def test_budget_clock_stops_when_one_more_step_and_the_finish_would_not_fit():
    t = [100.0]  # a fake clock: the decision is tested, not the machine's timing
    clock = quick.BudgetClock(112.0, finish_seconds=3.0, finish_steps=1.0, now=lambda: t[0])
    assert clock.reserve() == 3.0 and clock.step_time() is None
    stopped_at = None
    for _ in range(50):  # a fake training loop: 1 s steps, the trainer polls after each
        t[0] += 1.0
        if clock.is_set():
            break
        clock.check()  # what the watcher thread does every 0.25 s
        if stopped_at is None and threading.Event.is_set(clock):  # a look that records no step
            stopped_at = t[0]
    assert clock.budget_hit and stopped_at is not None
    assert clock.step_time() == 1.0 and clock.reserve() == 4.0
    # it stops once the time left (deadline 112) is one more step (1 s) plus the reserve (3 s + 1 step)
    assert stopped_at == 107.0 and 112.0 - stopped_at <= clock.reserve() + clock.step_time()
    assert 112.0 - (stopped_at - 1.0) > clock.reserve() + clock.step_time()  # not a step earlier


def test_budget_clock_thread_sets_the_event_and_ends():
    clock = quick.BudgetClock(time.monotonic() - 1.0, finish_seconds=0.0, finish_steps=0.0)  # already late
    watcher = clock.start(None)
    assert clock.wait(5.0) and clock.budget_hit
    clock.finish()
    watcher.join(5.0)
    assert not watcher.is_alive()


@pytest.mark.slow  # ~30 s: the budget has to be long enough for the fixed start-up costs on a loaded CPU
def test_quick_run_installs_a_usable_style_within_the_budget(scene, capsys):
    start = time.monotonic()
    assert train_main(_args(scene, "--seconds", "30")) == 0
    wall = time.monotonic() - start
    out = capsys.readouterr().out
    # the budget covers everything after the command line is parsed; the finishing work is estimated
    # from the step time, so allow a few seconds of error on a CPU shared with other jobs
    assert wall <= 30 + 8, out
    name = "my_painting_1_quick"
    entry = list_styles()[name]
    assert entry.origin == "user" and entry.path.parent == user_styles_dir()
    assert "nearest shipped style: " in out and "stopped by the time budget" in out
    assert f"--style {name}" in out and "style distance" in out
    model = load_style(name)
    assert model.preset == "fast" and model.train_config["init"] in {f"{n}.safetensors" for n in quick.shipped_candidates()}
    assert model.train_config["steps"] >= 2
    sheet = read_image(scene["run"] / "sample_sheet.png")
    assert sheet.shape[0] >= 2 * 40  # inputs (40-47 px high) above, stylized below
    assert (scene["run"] / "checkpoint.pt").is_file()
    # the name is taken now: a second run refuses it before writing anything, --force replaces it
    (scene["run"]).rename(scene["run"].with_name("run_first"))
    assert train_main(_args(scene, "--seconds", "30")) == 2
    assert "already exists" in capsys.readouterr().err and not scene["run"].exists()


def test_sigterm_during_training_still_leaves_an_installed_model(scene, capsys):
    fired = threading.Event()

    def interrupt_after_first_steps():
        log = scene["run"] / "log.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.is_file() and log.read_text().strip()):
            time.sleep(0.2)
        fired.set()
        os.kill(os.getpid(), signal.SIGTERM)  # what Ctrl-C does too: the trainer checkpoints, quick finishes

    t = threading.Thread(target=interrupt_after_first_steps, daemon=True)
    t.start()
    assert train_main(_args(scene, "--seconds", "120", "--name", "stopped")) == 130
    t.join()
    assert fired.is_set()
    out = capsys.readouterr().out
    assert "interrupted after" in out
    assert list_styles()["stopped"].origin == "user"
    assert load_style("stopped").train_config["steps"] >= 10
    assert not (scene["run"] / "sample_sheet.png").exists()  # an interrupt skips the pictures


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("case", ["unreadable", "tiny", "short_budget", "shipped_name", "missing"])
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(scene, capsys, case):
    args = _args(scene)
    if case == "unreadable":
        scene["painting"].write_bytes(b"not an image at all")
    elif case == "tiny":
        write_image(scene["painting"], smooth_image(63, 200))
    elif case == "short_budget":
        args = [a for a in args] + ["--minutes", "0.5"]
    elif case == "shipped_name":
        args += ["--name", "starry_night_fast"]
    elif case == "missing":
        args[1] = str(scene["painting"].with_name("nope.jpg"))
    assert train_main(args) == 2
    err = _one_error_line(capsys)
    assert err.startswith("python -m train: error: ") and err.endswith(".")
    assert not scene["run"].exists() and not user_styles_dir().exists()


def test_an_unwritable_styles_folder_or_a_full_disk_is_refused_before_training(scene, capsys, monkeypatch):
    # root ignores permission bits, so "not writable" is a styles folder below a regular file
    blocker = scene["photos"].parent / "file"
    blocker.write_text("x")
    monkeypatch.setenv("FASTNST_HOME", str(blocker))
    assert train_main(_args(scene)) == 2
    assert "Cannot write to the styles folder" in _one_error_line(capsys)
    assert not scene["run"].exists()
    monkeypatch.delenv("FASTNST_HOME")
    monkeypatch.setenv("FASTNST_HOME", str(scene["photos"].parent / "home"))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(quick.os, "fsync", full)
    assert train_main(_args(scene)) == 2
    assert "No space left on device" in _one_error_line(capsys)
    assert not scene["run"].exists() and not list(user_styles_dir().glob("*.safetensors"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_is_refused(scene, capsys):
    parent = scene["run"].parent / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert train_main(_args(scene, "--out-dir", str(parent / "run"))) == 2
        assert "Cannot write to the run folder" in _one_error_line(capsys)
    finally:
        parent.chmod(0o755)


def test_run_quick_checks_before_spending_the_budget(scene):
    opts = quick.build_parser().parse_args(_args(scene, "--minutes", "0.2"))
    opts.seconds = None
    with pytest.raises(FastNSTError, match="at least 1"):
        quick.run_quick(opts)
    assert not scene["run"].exists()


def test_temporal_weight_reaches_the_trainer_and_is_checked_first(scene, monkeypatch):
    seen = {}

    def fake_train(cfg, **kwargs):  # record the config, then stop as the budget would
        seen["temporal_weight"] = cfg.temporal_weight
        raise FastNSTError("stop here")

    monkeypatch.setattr("fastnst.training.loop.train", fake_train)
    opts = quick.build_parser().parse_args(_args(scene))
    assert opts.temporal_weight == quick.QUICK_SETTINGS["temporal_weight"]
    opts = quick.build_parser().parse_args(_args(scene, "--temporal-weight", "250"))
    with pytest.raises(FastNSTError, match="stop here"):
        quick.run_quick(opts)
    assert seen == {"temporal_weight": 250.0}
    opts = quick.build_parser().parse_args(_args(scene, "--temporal-weight", "-1"))
    with pytest.raises(FastNSTError, match="temporal-weight"):
        quick.run_quick(opts)

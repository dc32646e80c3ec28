"""The frame stages (fastnst.stylizer): working resolution, precision, thread choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastnst.cli import main
from fastnst.devices import cpu_has_native_bf16
from fastnst.errors import FastNSTError
from fastnst.models import Arch, TransformerNet
from fastnst.styles import list_styles, save_style
from fastnst.stylizer import Stylizer, ThreadTuner, check_work_size, style_work_size, work_shape

TINY = Arch((8, 16, 16), 1)


@pytest.fixture
def trained_at_128(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_style(tmp_path / "t.safetensors", TransformerNet(TINY), style_name="t",
                      train_config={"image_size": 128, "crop_min": 0.6})


def test_work_size_from_metadata_then_training_crop_then_default() -> None:
    assert style_work_size({"work_size": "300"}, {"image_size": 128}) == 300
    assert style_work_size({}, {"image_size": 128, "crop_min": 0.6}) == 213  # 128 / smallest crop 0.6
    assert style_work_size({}, {"image_size": 128}) == 213
    assert style_work_size({}, {"image_size": 256, "crop_min": 1.0}) == 256
    assert style_work_size({}, {}) == 256


def test_work_shape_scales_the_short_side_down_never_up() -> None:
    assert work_shape(272, 640, work_size=160, scale=None) == (160, 376)
    assert work_shape(100, 200, work_size=160, scale=None) == (100, 200)
    assert work_shape(272, 640, work_size=0, scale=None) == (272, 640)
    assert work_shape(272, 640, work_size=160, scale=0.5) == (136, 320)  # scale wins


def test_stylizer_runs_the_network_at_working_size_and_returns_full_size(trained_at_128: Path) -> None:
    st = Stylizer(trained_at_128, device="cpu", engine="torch")  # the hook sees torch's calls
    assert st.work_size == 213
    seen = []
    st.net.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    img = (np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8)
    out = st(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert seen == [(213, 284)]
    full = Stylizer(trained_at_128, device="cpu", work_size=0, engine="torch")
    seen.clear()
    full.net.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    full(img)
    assert seen == [(240, 320)]


@pytest.mark.parametrize("bad", ["-3", "abc", "5", "1.5"])
def test_bad_work_size_is_one_sentence_exit_2(bad: str, tmp_path: Path, trained_at_128: Path, capsys) -> None:
    img = tmp_path / "in.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(SystemExit) as exc:
        main(["stylize", str(img), "-o", str(tmp_path / "o.png"), "--style", str(trained_at_128), "--work-size", bad])
    assert exc.value.code == 2
    assert "work-size" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_check_work_size_in_the_library() -> None:
    assert check_work_size(None) is None and check_work_size(0) == 0 and check_work_size("64") == 64
    for bad in (-1, 8, "x"):
        with pytest.raises(FastNSTError):
            check_work_size(bad)


def test_auto_precision_follows_the_cpu(trained_at_128: Path) -> None:
    st = Stylizer(trained_at_128, device="cpu")
    assert st.dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16 (emulated bf16 is only slow)")
def test_bf16_matches_fp32_on_a_shipped_style() -> None:
    name = min(list_styles())
    img = (np.random.default_rng(0).random((136, 320, 3)) * 255).astype(np.uint8)
    a = Stylizer(name, device="cpu", dtype="fp32")(img).astype(np.float64)
    b = Stylizer(name, device="cpu", dtype="bf16")(img).astype(np.float64)
    psnr = 10 * np.log10(255.0 ** 2 / max(np.mean((a - b) ** 2), 1e-12))
    assert psnr >= 40


def test_bf16_path_runs_everywhere(trained_at_128: Path) -> None:
    """Explicit bf16 works on any CPU (emulated where not native): no op on the path lacks a kernel."""
    img = (np.random.default_rng(0).random((100, 150, 3)) * 255).astype(np.uint8)
    a = Stylizer(trained_at_128, device="cpu", dtype="fp32", scale=0.5)(img).astype(np.float64)
    b = Stylizer(trained_at_128, device="cpu", dtype="bf16", scale=0.5)(img).astype(np.float64)
    assert np.abs(a - b).mean() < 4


def test_thread_tuner_tries_each_count_then_keeps_the_fastest(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    old = torch.get_num_threads()
    tuner = ThreadTuner(torch.device("cpu"), trial=2, warmup=1)
    assert tuner.candidates == [1, 2]
    clock = iter(np.cumsum([0, 5, 5, 1, 1] + [1] * 5).tolist())  # 1 thread: 5 s a frame, 2: 1 s
    monkeypatch.setattr("fastnst.stylizer.time.perf_counter", lambda: next(clock))
    for _ in range(5):
        tuner.tick()
    assert tuner.chosen == 2 and torch.get_num_threads() == 2
    tuner.restore()
    assert torch.get_num_threads() == old
    fixed = ThreadTuner(torch.device("cpu"), 1)
    assert fixed.chosen == 1
    fixed.restore()
    with pytest.raises(FastNSTError):
        ThreadTuner(torch.device("cpu"), 0)


def test_metadata_work_size_is_used(tmp_path: Path) -> None:
    p = save_style(tmp_path / "w.safetensors", TransformerNet(TINY), style_name="w", work_size=96,
                   train_config={"image_size": 128})
    assert Stylizer(p, device="cpu").work_size == 96

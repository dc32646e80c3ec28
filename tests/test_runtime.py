"""Inference engines (fastnst.runtime): OpenVINO parity with torch, its cache (key, corrupt and stale
entries, concurrent writers) and the fallback to torch. Skipped with the reason where OpenVINO is
not installed; torch then runs everything (checked at the end)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from fastnst.errors import FastNSTError
from fastnst.models import PRESETS, Arch, TransformerNet
from fastnst.runtime import (
    MIN_PSNR,
    FallbackEngine,
    OpenVINOEngine,
    TorchEngine,
    make_engine,
    openvino_available,
    ov_precision,
    parity_frame,
    psnr,
    weights_key,
)
from fastnst.styles import load_style
from fastnst.stylizer import Stylizer

needs_openvino = pytest.mark.skipif(bool(openvino_available()), reason=openvino_available() or "openvino present")
SHAPE = (1, 3, 40, 56)
TINY = Arch((8, 16, 16), 1)


def _net(seed: int = 0, arch: Arch = TINY) -> TransformerNet:
    torch.manual_seed(seed)
    return TransformerNet(arch).eval()


def _torch_out(net: TransformerNet, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x)


@needs_openvino
@pytest.mark.parametrize("style", ["starry_night_fast", "cafe_terrace_fast"])
def test_openvino_matches_torch_on_shipped_styles(style: str, tmp_path: Path) -> None:
    net = load_style(style).net
    x = parity_frame((1, 3, 120, 160))
    for precision in ("f32", None):  # fp32, and this CPU's own default (bf16 where it is native)
        engine = OpenVINOEngine(net, precision=precision, cache=tmp_path)
        assert psnr(engine(x), _torch_out(net, x)) >= MIN_PSNR
        assert engine.parity[(1, 3, 120, 160)] >= MIN_PSNR


@needs_openvino
def test_openvino_runs_the_lite_preset_at_odd_sizes(tmp_path: Path) -> None:
    net = _net(1, PRESETS["lite"])
    engine = OpenVINOEngine(net, precision="f32", cache=tmp_path)
    for shape in [(1, 3, 37, 45), (2, 3, 8, 8), (1, 3, 2, 2)]:
        x = torch.rand(shape)
        y = engine(x)
        assert y.shape == x.shape and psnr(y, _torch_out(net, x)) >= 60


@needs_openvino
@pytest.mark.parametrize("preset", ["video", "video_plain"])
def test_openvino_runs_a_video_network_on_its_seven_channels(tmp_path: Path, preset: str) -> None:
    """A video network's input is the frame, the prior and the mask: the converted model takes all
    seven, so its prior weights act there as in torch (random ones here, so that they matter)."""
    net = _net(2, PRESETS[preset])
    with torch.no_grad():
        net.first_conv.weight[:, 12:].normal_(0, 0.1)
    engine = OpenVINOEngine(net, precision="f32", cache=tmp_path)
    x = parity_frame((1, 7, 48, 64))
    assert psnr(engine(x), _torch_out(net, x)) >= 60 and engine.parity[(1, 7, 48, 64)] >= 60
    with torch.no_grad():
        without = net(x[:, :3])
    assert psnr(_torch_out(net, x), without) < 40  # the prior changes the output: the check above can fail


@needs_openvino
def test_the_cache_key_follows_the_weights_shape_and_version(tmp_path: Path) -> None:
    a, b = OpenVINOEngine(_net(0), cache=tmp_path), OpenVINOEngine(_net(0), cache=tmp_path)
    assert a.entry(SHAPE) == b.entry(SHAPE)  # same weights, same entry
    changed = _net(0)
    with torch.no_grad():
        changed.encoder[0].conv.weight[0, 0, 0, 0] += 1e-3
    assert OpenVINOEngine(changed, cache=tmp_path).entry(SHAPE) != a.entry(SHAPE)
    assert a.entry((1, 3, 40, 60)) != a.entry(SHAPE)
    assert weights_key(_net(0)) != weights_key(_net(1))
    a.ov = type("OV", (), {"__version__": "0.0.0-other"})  # a new OpenVINO
    assert a.entry(SHAPE) != b.entry(SHAPE)


@needs_openvino
def test_a_converted_model_is_reused_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    net = _net()
    OpenVINOEngine(net, precision="f32", cache=tmp_path)(parity_frame(SHAPE))
    entries = [p for p in tmp_path.iterdir()]
    assert len(entries) == 1 and (entries[0] / "model.xml").is_file() and (entries[0] / "model.bin").is_file()
    engine = OpenVINOEngine(net, precision="f32", cache=tmp_path)
    monkeypatch.setattr(engine, "_convert", lambda *a: pytest.fail("converted again"))
    engine(parity_frame(SHAPE))


def _damage_and_rebuild(cache: str, damage: str, queue) -> None:
    """Convert, damage the entry as ``damage`` says, and load it again with a new engine; puts the
    rebuilt engine's PSNR against torch and whether the entry is whole again."""
    torch.set_num_threads(1)
    net = _net()
    engine = OpenVINOEngine(net, precision="f32", cache=Path(cache))
    engine(parity_frame(SHAPE))
    entry = engine.entry(SHAPE)
    if damage == "garbage xml":
        (entry / "model.xml").write_text("<net> not a model")
    elif damage == "truncated bin":
        data = (entry / "model.bin").read_bytes()
        (entry / "model.bin").write_bytes(data[: len(data) // 3])
    elif damage == "empty folder":
        for p in entry.iterdir():
            p.unlink()
    elif damage == "no manifest":  # an entry of an older fastnst, or one cut short
        (entry / "manifest.json").unlink()
    else:  # a model of another network under this key: it loads, but parity catches it
        other = OpenVINOEngine(_net(7), precision="f32", cache=Path(cache) / "o")
        other(parity_frame(SHAPE))
        for p in other.entry(SHAPE).iterdir():
            (entry / p.name).write_bytes(p.read_bytes())
    x = parity_frame(SHAPE)
    fresh = OpenVINOEngine(net, precision="f32", cache=Path(cache))
    queue.put((psnr(fresh(x), _torch_out(net, x)), OpenVINOEngine.intact(entry)))


@needs_openvino
@pytest.mark.parametrize("damage", ["garbage xml", "truncated bin", "empty folder", "no manifest", "other weights"])
def test_a_broken_or_stale_cache_entry_is_rebuilt(damage: str, tmp_path: Path) -> None:
    # In a process of its own, as a fastnst command is: after an entry was rebuilt in the test process,
    # a later, unrelated bf16 training test died of SIGSEGV (OpenVINO 2026.4 with torch 2.14; not found).
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_damage_and_rebuild, args=(str(tmp_path), damage, queue))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0
    score, intact = queue.get(timeout=5)
    assert score >= 60 and intact


def _convert_in_process(cache: str, seed: int, queue) -> None:
    torch.set_num_threads(1)
    engine = OpenVINOEngine(_net(seed), precision="f32", cache=Path(cache))
    queue.put(float(engine(parity_frame(SHAPE)).sum()))


@needs_openvino
def test_two_processes_converting_the_same_style_both_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_convert_in_process, args=(str(tmp_path), 0, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    sums = [queue.get(timeout=5) for _ in procs]
    assert sums[0] == pytest.approx(sums[1], rel=1e-5)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [OpenVINOEngine(
        _net(0), cache=tmp_path).entry(SHAPE).name]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


@needs_openvino
def test_a_failing_conversion_falls_back_to_torch_with_a_note(tmp_path: Path, monkeypatch) -> None:
    net = _net()
    engine = make_engine(net, "auto", torch.device("cpu"), torch.float32)
    assert isinstance(engine, FallbackEngine) and engine.name == "openvino"

    def broken(*args, **kwargs):
        raise RuntimeError("Cannot convert: op aten::frobnicate is not supported\nlong details")

    monkeypatch.setattr(engine.primary, "_convert", broken)
    x = parity_frame(SHAPE)
    y = engine(x)
    assert engine.name == "torch" and "running it with PyTorch" in engine.note and "\n" not in engine.note
    assert torch.equal(y, _torch_out(net, x))


@needs_openvino
def test_the_stylizer_runs_openvino_by_default_on_a_cpu(tmp_path: Path) -> None:
    img = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    auto = Stylizer(_net(), device="cpu", dtype="fp32", work_size=0)
    ref = Stylizer(_net(), device="cpu", dtype="fp32", work_size=0, engine="torch")
    assert auto.engine.name == "openvino" and ref.engine.name == "torch"
    assert np.abs(auto(img).astype(int) - ref(img)).max() <= 1
    assert auto.engine_note == ""


def test_engine_choice_is_checked_and_torch_always_works() -> None:
    with pytest.raises(FastNSTError, match="Unknown engine"):
        make_engine(_net(), "tensorrt", torch.device("cpu"), torch.float32)
    engine = make_engine(_net(), "torch", torch.device("cpu"), torch.float32)
    assert isinstance(engine, TorchEngine)
    x = parity_frame(SHAPE)
    assert torch.equal(engine(x), _torch_out(_net(), x))


@needs_openvino
def test_openvino_is_imported_without_its_usage_telemetry() -> None:
    """OpenVINO's converter reports its import to Google Analytics from a forked child (which deadlocked
    a test run here): fastnst imports it with the telemetry package blocked, so OpenVINO's own no-op
    stub is used. A fresh interpreter, as a user's process is."""
    import subprocess
    import sys

    code = ("import sys; from fastnst.runtime import openvino_available; assert not openvino_available(); "
            "import openvino.tools.ovc as ovc; "
            "print(type(ovc.telemetry).__module__, sys.modules.get('openvino_telemetry') is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["openvino.tools.ovc.telemetry_stub", "True"]


def test_without_openvino_auto_is_torch_with_a_note_and_openvino_is_refused(monkeypatch) -> None:
    from fastnst import runtime

    monkeypatch.setattr(runtime, "openvino_available", lambda: "OpenVINO is not usable (ImportError: no module)")
    engine = make_engine(_net(), "auto", torch.device("cpu"), torch.float32)
    assert isinstance(engine, TorchEngine) and "running the network with PyTorch" in engine.note
    with pytest.raises(FastNSTError, match="pip install openvino"):
        make_engine(_net(), "openvino", torch.device("cpu"), torch.float32)


def test_psnr_and_the_test_frame() -> None:
    x = parity_frame((2, 3, 16, 24))
    assert x.shape == (2, 3, 16, 24) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(x, parity_frame((2, 3, 16, 24)))  # the same frame every time
    assert psnr(x, x) == float("inf") and 20 < psnr(x, (x + 0.1).clamp(0, 1)) < 23


@needs_openvino
def test_cli_with_a_corrupt_cache_still_writes_the_output(tmp_path: Path, capsys) -> None:
    """A user's damaged cache folder (every entry garbage) costs a conversion, never the run."""
    from fastnst import cli
    from fastnst.images import write_image
    from fastnst.runtime import cache_root
    from fastnst.styles import save_style

    style = save_style(tmp_path / "t.safetensors", _net(), style_name="t", preset="custom")
    src = write_image(tmp_path / "in.png", (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8))
    assert cli.main(["stylize", str(src), "-o", str(tmp_path / "a.png"), "--style", str(style), "-q",
                     "--engine", "openvino", "--dtype", "fp32", "--work-size", "full"]) == 0
    for entry in cache_root().iterdir():
        for f in entry.iterdir():
            f.write_bytes(b"\x00garbage")
    assert cli.main(["stylize", str(src), "-o", str(tmp_path / "b.png"), "--style", str(style), "-q",
                     "--engine", "openvino", "--dtype", "fp32", "--work-size", "full"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    from fastnst.images import read_image

    assert np.abs(read_image(tmp_path / "a.png").astype(int) - read_image(tmp_path / "b.png")).max() <= 1


def test_bad_engine_and_teacher_with_style_are_one_sentence_exit_2(tmp_path: Path, capsys) -> None:
    from fastnst import cli
    from fastnst.training import main as train_main

    with pytest.raises(SystemExit) as exc:
        cli.main(["stylize", "in.png", "-o", str(tmp_path / "o.png"), "--engine", "tensorrt"])
    assert exc.value.code == 2 and "--engine" in capsys.readouterr().err
    (tmp_path / "p").mkdir()
    code = train_main(["--content", str(tmp_path / "p"), "--teacher", "starry_night_fast", "--style", "x.jpg",
                       "--out-dir", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "without --style" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def _failing_compile(monkeypatch) -> None:
    """``torch.compile`` as a broken compiler install behaves: the compiled module raises when called."""

    def compile(model, **kwargs):
        def compiled(x):
            raise RuntimeError("backend='inductor' raised:\nAttributeError: no attribute 'python_mod'")
        return compiled

    monkeypatch.setattr(torch, "compile", compile)


def test_a_failing_compiler_falls_back_to_the_uncompiled_network_with_a_note(monkeypatch) -> None:
    _failing_compile(monkeypatch)
    net = _net()
    engine = make_engine(net, "torch", torch.device("cpu"), torch.float32, compile=True)
    x = parity_frame(SHAPE)
    assert engine.note == ""
    assert torch.equal(engine(x), _torch_out(net, x)) and torch.equal(engine(x), _torch_out(net, x))
    assert "torch.compile failed" in engine.note and "python_mod" in engine.note and "\n" not in engine.note
    with pytest.raises(RuntimeError):  # an error of the network itself is not hidden
        engine(torch.zeros(1, 5, 16, 16))


def test_a_video_result_says_which_engine_ran_and_why(tmp_path: Path, monkeypatch) -> None:
    from fastnst.pipeline import stylize_video
    from fastnst.styles import save_style

    from .conftest import make_video

    _failing_compile(monkeypatch)
    model = tmp_path / "tiny.safetensors"
    save_style(model, _net(), style_name="tiny")
    src = make_video(tmp_path / "in.mp4", n=4, audio=None)
    res = stylize_video(src, tmp_path / "out.mp4", model, device="cpu", compile=True, progress=False)
    assert res.frames == 4 and sum("torch.compile failed" in n for n in res.notes) == 1


def _unconvertible(tmp_path: Path, monkeypatch) -> Path:
    """A style file OpenVINO cannot convert (its converter patched to fail), with an empty engine cache."""
    from fastnst.styles import save_style

    def broken(*args, **kwargs):
        raise RuntimeError("Cannot convert: op aten::frobnicate is not supported")

    monkeypatch.setattr(OpenVINOEngine, "_convert", broken)
    monkeypatch.setenv("FASTNST_HOME", str(tmp_path))  # an empty engine cache: the conversion must run
    return save_style(tmp_path / "tiny.safetensors", _net(), style_name="tiny")


@needs_openvino
def test_an_image_says_which_engine_ran_and_why(tmp_path: Path, monkeypatch, capsys) -> None:
    from fastnst import cli
    from fastnst.images import write_image

    model = _unconvertible(tmp_path, monkeypatch)
    src = write_image(tmp_path / "in.png", (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8))
    assert cli.main(["stylize", str(src), "-o", str(tmp_path / "out.png"), "--style", str(model), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "out.png").is_file() and "note: OpenVINO could not run this network" in out


@needs_openvino
def test_the_webcam_says_which_engine_ran_and_why(tmp_path: Path, monkeypatch, capsys) -> None:
    """A live run whose OpenVINO conversion fails goes on with PyTorch and says so when it ends."""
    from fastnst import cli

    from .conftest import make_video

    model = _unconvertible(tmp_path, monkeypatch)
    src = make_video(tmp_path / "cam.mp4", w=40, h=32, n=3, audio=None)
    argv = ["webcam", "--camera", str(src), "--no-window", "--style", str(model), "--device", "cpu",
            "--engine", "openvino"]
    assert cli.main(argv) == 0
    assert "note: OpenVINO could not run this network" in capsys.readouterr().out


@needs_openvino
def test_a_video_network_with_a_wide_tent_is_compiled_in_f32_and_says_so(tmp_path: Path) -> None:
    """OpenVINO's bf16 compiler never finished a depthwise convolution 15 or more wide (a stream that
    hangs at its first frame); a tent that wide runs in f32, with a note, and agrees with PyTorch."""
    from dataclasses import replace

    from fastnst.models import video_input

    wide = TransformerNet(replace(PRESETS["video"], carry=9)).eval()  # a tent 17 wide
    engine = make_engine(wide, "openvino", torch.device("cpu"), torch.bfloat16)
    engine.primary.cache = tmp_path
    assert engine.primary.precision == "f32" and "17-px tent filter in bf16; running it in f32" in engine.note
    x = video_input(torch.rand(1, 3, 40, 56), torch.rand(1, 3, 40, 56), torch.ones(1, 1, 40, 56))
    with torch.inference_mode():
        assert psnr(engine(x), wide(x)) > 40 and engine.name == "openvino"
    narrow = make_engine(TransformerNet(PRESETS["video"]).eval(), "openvino", torch.device("cpu"), torch.bfloat16)
    assert narrow.note == "" and narrow.primary.precision == ov_precision(torch.bfloat16)

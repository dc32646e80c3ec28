"""Exported models (ONNX, torch.export) give the PyTorch output at any size; outputs are written safely."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastnst import cli
from fastnst.errors import FastNSTError
from fastnst.export import ExportNet, ExportResult, export_style, psnr
from fastnst.fileio import leftovers
from fastnst.models import Arch, TransformerNet
from fastnst.styles import save_style

TINY = Arch((8, 8, 8), 1)

# tiny networks on a shared 2-core CPU: one thread is several times faster than two
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_style(tmp_path / "tiny.safetensors", TransformerNet(TINY), style_name="tiny", preset="custom")


@pytest.mark.parametrize("size", [(5, 9), (8, 8), (61, 97), (64, 96), (130, 51)])
def test_export_net_matches_the_network(size) -> None:
    """The export wrapper's branch-free padding is the network's eval forward, odd sizes included."""
    net = TransformerNet(TINY).eval()
    x = torch.rand(2, 3, *size)
    with torch.inference_mode():
        assert torch.equal(ExportNet(net)(x), net(x))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, ExportResult]:
    """``(style file, result)`` of one ONNX export checked at the default sizes (an export costs ~1 s)."""
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = save_style(folder / "tiny.safetensors", TransformerNet(TINY), style_name="tiny", preset="custom")
    return model, export_style(model, folder / "m.onnx")


def test_onnx_parity_with_onnxruntime(exported) -> None:
    ort = pytest.importorskip("onnxruntime")
    tiny_model, res = exported
    out = res.path
    import onnx

    model = onnx.load(str(out))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))  # dynamic B, H, W
    assert {p.key: p.value for p in model.metadata_props}["style_name"] == "tiny" == res.style_name

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    from fastnst.styles import load_style

    net = load_style(tiny_model).net.eval()
    # Two sizes, neither the export example's; one not a multiple of 4 and one large enough for
    # the reflection padding to matter less than the instance norm statistics.
    for shape in [(1, 3, 90, 160), (2, 3, 67, 45)]:
        x = torch.rand(shape)
        with torch.inference_mode():
            ref = net(x)
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        assert got.shape == ref.shape
        assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0
        assert psnr(got, ref) >= 40


def test_export_style_checks_and_reports_parity(exported) -> None:
    _, res = exported
    assert res.path.is_file() and leftovers(res.path.parent) == []
    assert len(res.psnr) == 2 and min(res.psnr.values()) >= 40 and res.opset == 17


@pytest.mark.slow  # torch.export takes 6-18 s on two shared cores
def test_pt2_export_is_dynamic(tmp_path: Path, tiny_model: Path) -> None:
    """One torch.export program, checked by export_style itself at sizes other than its example's."""
    res = export_style(tiny_model, tmp_path / "m.pt2", check_sizes=((33, 70), (64, 48), (5, 9)))
    assert res.format == "pt2" and sorted(res.psnr) == [(5, 9), (33, 70), (64, 48)]
    assert min(res.psnr.values()) >= 40
    assert (tmp_path / "m.pt2").is_file()


def test_existing_output_refused_without_force_and_no_temp_left(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(FastNSTError, match="--force"):
        export_style(tiny_model, out)
    assert out.read_bytes() == b"keep me"
    export_style(tiny_model, out, force=True, check_sizes=())
    assert out.read_bytes() != b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "tiny.safetensors"]


def test_failed_check_leaves_nothing(tmp_path: Path, tiny_model: Path, monkeypatch) -> None:
    from fastnst import export

    monkeypatch.setattr(export, "_onnx_runner", lambda path: (lambda x: torch.zeros_like(x) + 0.5))
    with pytest.raises(FastNSTError, match="differs from PyTorch"):
        export_style(tiny_model, tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.safetensors"]


def test_cli_export_onnx(tmp_path: Path, tiny_model: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    assert cli.main(["export", str(tiny_model), "-o", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "ONNX opset 17" in out and "checked against PyTorch: 128x72" in out and "dB" in out
    assert cli.main(["export", str(tiny_model), "-o", str(tmp_path / "m.onnx")]) == 2  # exists: --force
    assert "--force" in capsys.readouterr().err


def test_cli_export_errors_are_one_line(tmp_path: Path, tiny_model: Path, capsys) -> None:
    assert cli.main(["export", str(tiny_model), "-o", str(tmp_path / "m.tflite")]) == 2
    assert cli.main(["export", "no_such_style", "-o", str(tmp_path / "m.onnx")]) == 2
    assert cli.main(["export", str(tiny_model), "-o", str(tmp_path / "m.onnx"), "--opset", "11"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "Traceback" not in err
    assert ".onnx or .pt2" in err and "no_such_style" in err and "17" in err
    assert not list(tmp_path.glob("m.*")) and not list(tmp_path.glob(".m*"))


def test_psnr() -> None:
    a = torch.zeros(1, 3, 4, 4)
    assert psnr(a, a) == 200.0
    assert abs(psnr(a, a + 0.1) - 20.0) < 1e-6
    assert np.isfinite(psnr(a, a + 1))


def test_a_video_network_exports_with_its_seven_input_channels(tmp_path: Path) -> None:
    """The exported graph takes the frame, the prior and the mask, and its prior weights act there."""
    ort = pytest.importorskip("onnxruntime")
    from fastnst.models import PRESETS, video_input

    torch.manual_seed(1)
    net = TransformerNet(PRESETS["video"]).eval()
    with torch.no_grad():
        net.first_conv.weight[:, 12:].normal_(0, 0.1)
    result = export_style(net, tmp_path / "v.onnx", check_sizes=((64, 96),))
    assert min(result.psnr.values()) >= 40
    x = video_input(torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96), torch.ones(1, 1, 64, 96))
    session = ort.InferenceSession(str(tmp_path / "v.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    with torch.inference_mode():
        assert psnr(got, net(x)) >= 40 and psnr(net(x), net(x[:, :3])) < 40

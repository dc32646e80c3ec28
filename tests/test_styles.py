"""Style-model files: round trip with metadata, fp16 storage, name registry, refusing other files."""

from __future__ import annotations

import json

import pytest
import torch

from fastnst import __version__
from fastnst.errors import FastNSTError
from fastnst.models import Arch, TransformerNet
from fastnst.styles import FORMAT, list_styles, load_style, read_metadata, resolve_style, save_style


def _net(seed: int = 0) -> TransformerNet:
    torch.manual_seed(seed)
    return TransformerNet(Arch((4, 8, 8), 1)).eval()


def test_round_trip_rebuilds_net_and_metadata(tmp_path):
    net = _net()
    cfg = {"steps": 7, "style_layers": {"relu1_2": 1.0}}
    path = save_style(tmp_path / "wave", net, style_name="wave", style_image="wave.jpg", preset="custom",
                      train_config=cfg, metrics={"e_warp": 0.01})
    assert path.name == "wave.safetensors" and path.is_file()
    assert not list(tmp_path.glob("*.part"))
    model = load_style(path)
    assert model.name == "wave" and model.preset == "custom"
    assert model.train_config == cfg and model.metrics == {"e_warp": 0.01}
    assert model.metadata["format"] == FORMAT and model.metadata["fastnst_version"] == __version__
    assert json.loads(model.metadata["arch"]) == {"widths": [4, 8, 8], "n_residual": 1}
    assert not model.net.training
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        assert torch.equal(model.net(x), net(x))


def test_half_storage_is_smaller_and_close(tmp_path):
    net = _net(1)
    full = save_style(tmp_path / "a.safetensors", net, style_name="a")
    half = save_style(tmp_path / "b.safetensors", net, style_name="b", half=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    model = load_style(half)
    assert all(p.dtype == torch.float32 for p in model.net.parameters())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (model.net(x) - net(x)).abs().max() < 2e-2


def test_unwraps_compiled_and_ddp_style_wrappers(tmp_path):
    net = _net(2)

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    path = save_style(tmp_path / "w.safetensors", Wrapper(net), style_name="w")
    assert set(load_style(path).net.state_dict()) == set(net.state_dict())


def test_registry_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNST_WEIGHTS", str(tmp_path))
    save_style(tmp_path / "mosaic_fast.safetensors", _net(), style_name="mosaic", preset="fast")
    entry = list_styles()["mosaic_fast"]
    assert entry.path == tmp_path / "mosaic_fast.safetensors" and entry.origin == "env"
    assert resolve_style("mosaic_fast") == tmp_path / "mosaic_fast.safetensors"
    assert load_style("mosaic_fast").name == "mosaic_fast"  # the name it is picked by, not the recorded one
    with pytest.raises(FastNSTError, match="Unknown style"):
        resolve_style("nope_fast")


def test_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(FastNSTError, match="not a fastnst style model"):
        load_style(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"definitely not safetensors")
    with pytest.raises(FastNSTError, match="not a fastnst style model"):
        read_metadata(junk)
    with pytest.raises(FastNSTError, match="does not exist"):
        load_style(tmp_path / "missing.safetensors")


def test_rejects_weights_that_do_not_fit_the_metadata(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_style(tmp_path / "s.safetensors", _net(), style_name="s")
    meta = read_metadata(path)
    tensors = load_file(str(path))
    meta["arch"] = json.dumps({"widths": [4, 8, 16], "n_residual": 1})
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(FastNSTError, match="do not match"):
        load_style(path)

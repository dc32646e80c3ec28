"""`fastnst info`: the facts a bug report needs, as text and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fastnst import __version__, cli, info


def test_collect_reports_versions_devices_cache_styles_and_encoders(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FASTNST_HOME", str(tmp_path / "home"))
    d = info.collect()
    v = d["versions"]
    assert v["fastnst"] == __version__ and v["torch"] == torch.__version__
    import av
    import cv2
    import numpy

    assert v["pyav"] == av.__version__ and v["opencv"] == cv2.__version__ and v["numpy"] == numpy.__version__
    assert "libavcodec" in v["ffmpeg"] and v["ffmpeg"]["libavcodec"].count(".") == 2

    dev = d["devices"]
    from fastnst.devices import cpu_has_native_bf16

    assert dev["cpu"]["native_bf16"] == cpu_has_native_bf16()
    assert dev["cpu"]["torch_threads"] == torch.get_num_threads() and dev["cpu"]["model"]
    assert dev["cuda_available"] == torch.cuda.is_available()
    assert len(dev["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert dev["auto_dtype"] in ("float32", "float16", "bfloat16")

    assert d["vgg"]["weights"] is None and d["vgg"]["cache_dir"] == str(tmp_path / "home")
    assert "fastnst vgg fetch" in d["vgg"]["hint"]

    from fastnst.styles import list_styles

    assert set(d["styles"]["found"]) == set(list_styles())
    assert d["encoders"]["libx264"] is True and d["encoders"]["aac"] is True
    json.dumps(d)  # plain data only


def test_vgg_cache_found(tmp_path: Path, monkeypatch) -> None:
    from fastnst import vgg

    monkeypatch.setenv("FASTNST_HOME", str(tmp_path))
    w = vgg.VGGWeights(vgg.VGG19Features(["relu1_1"]).layers.state_dict(), "torchvision", "test")
    vgg.save_weights(w, tmp_path / vgg.CACHE_FILE)
    d = info.vgg_cache()
    assert d["weights"] == str(tmp_path / vgg.CACHE_FILE) and d["hint"] is None and d["size_bytes"] > 1000


def test_encoders_unknown_name_is_false() -> None:
    assert info.encoders(("libx264", "no_such_encoder")) == {"libx264": True, "no_such_encoder": False}


def test_cli_info_text_and_json(capsys) -> None:
    assert cli.main(["info"]) == 0
    text = capsys.readouterr().out
    assert f"fastnst {__version__}" in text and "torch " in text and "libx264 yes" in text
    assert "native bf16" in text and "vgg19:" in text and "not cached" in text
    assert cli.main(["info", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["versions"]["fastnst"] == __version__ and "encoders" in d

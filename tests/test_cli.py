"""CLI behaviour a user sees: one-line errors, exit codes, no tracebacks, no half-written outputs."""

from __future__ import annotations

import pytest

from fastnst import cli
from fastnst.images import write_image

from .conftest import smooth_image


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert "fastnst" in capsys.readouterr().out


def test_missing_content_file(tmp_path, capsys):
    write_image(tmp_path / "s.png", smooth_image(16, 16))
    rc = cli.main(["gatys", str(tmp_path / "nope.png"), str(tmp_path / "s.png"), "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USER_ERROR
    assert err.startswith("fastnst: error:") and "nope.png" in err and "does not exist" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_unreadable_image(tmp_path, capsys):
    (tmp_path / "c.png").write_bytes(b"\x89PNG broken")
    write_image(tmp_path / "s.png", smooth_image(16, 16))
    rc = cli.main(["gatys", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USER_ERROR and "Cannot read" in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_gatys_without_weights_tells_how_to_get_them(tmp_path, capsys, monkeypatch):
    from fastnst import vgg
    from fastnst.errors import FastNSTError

    monkeypatch.setattr(vgg, "fetch_torchvision", lambda **k: (_ for _ in ()).throw(FastNSTError("offline")))
    write_image(tmp_path / "c.png", smooth_image(16, 16))
    rc = cli.main(["gatys", str(tmp_path / "c.png"), str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"), "-q"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USER_ERROR and "fastnst vgg fetch" in err


def test_gatys_with_explicit_weights_file_end_to_end(tmp_path, capsys):
    """--vgg-weights with a (random) fastnst weights file: the full CLI path, losses printed."""
    from fastnst import vgg

    w = vgg.VGGWeights(vgg.VGG19Features(["relu5_1"]).layers.state_dict(), "torchvision", "test")
    wfile = vgg.save_weights(w, tmp_path / "w.safetensors")
    write_image(tmp_path / "c.png", smooth_image(24, 24, 1))
    write_image(tmp_path / "s.png", smooth_image(24, 24, 2))
    rc = cli.main(["gatys", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(tmp_path / "o.png"),
                   "--size", "24", "--steps", "3", "--vgg-weights", str(wfile), "-q", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and (tmp_path / "o.png").is_file()
    assert "final losses: content" in out and "style" in out and "tv" in out


def test_bad_layer_name_is_a_user_error(tmp_path, capsys):
    write_image(tmp_path / "c.png", smooth_image(16, 16))
    rc = cli.main(["gatys", str(tmp_path / "c.png"), str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"),
                   "--style-layers", "relu9_1", "--vgg-weights", str(tmp_path / "none.pth")])
    assert rc == cli.EXIT_USER_ERROR


def test_vgg_info_without_cache(capsys):
    assert cli.main(["vgg", "info"]) == cli.EXIT_USER_ERROR
    assert "fastnst vgg fetch" in capsys.readouterr().err


def test_help_does_not_import_torch() -> None:
    """`fastnst --help` and every subcommand's parser stay quick: no torch import (seconds on a small CPU)."""
    import subprocess
    import sys

    code = "import sys, fastnst.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

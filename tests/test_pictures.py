"""Pictures: frame grids, temporal-error heat maps with their scale bar, loss curves (`fastnst curves`)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from fastnst import cli, pictures
from fastnst.errors import FastNSTError
from fastnst.fileio import leftovers, read_training_log
from fastnst.images import read_image, to_tensor

from .conftest import smooth_image

PAD = 4  # contact_sheet's default padding


def _tile(sheet: np.ndarray, row: int, col: int, h: int, w: int) -> np.ndarray:
    y, x = PAD + row * (h + PAD), PAD + col * (w + PAD)
    return sheet[y:y + h, x:x + w]


def _is_yellow(rgb) -> bool:
    r, g, b = (int(v) for v in rgb)
    return r > 230 and g > 230 and b < 200


# --- frames over time ---------------------------------------------------------------------------------


def test_spread_keeps_about_n_items_evenly_over_a_stream_of_unknown_length():
    s = pictures.Spread(4)
    for i in range(100):
        s.offer(i, f"frame {i}")
        assert len(s.items) <= 8  # never more than 2n held
    picked = s.pick()
    idx = [i for i, _ in picked]
    assert len(picked) == 4 and idx[0] == 0 and idx[-1] >= 90 and idx == sorted(idx)
    assert picked[1][1] == f"frame {idx[1]}"
    gaps = np.diff(idx)
    assert gaps.max() <= 2 * gaps.min()  # even, not bunched at the start
    few = pictures.Spread(4)
    for i in range(3):
        few.offer(i, i)
    assert [i for i, _ in few.pick()] == [0, 1, 2]


def test_side_by_side_grid_places_rows_and_draws_labels():
    h, w = 48, 64
    grey = np.full((h, w, 3), 128, np.uint8)
    inputs, outputs = [grey] * 3, [[grey] * 3]
    grid = pictures.side_by_side_grid(inputs, outputs, frame_labels=["#0", "#5", "#10"], row_labels=["starry"])
    assert grid.shape == (2 * (h + PAD) + PAD, 3 * (w + PAD) + PAD, 3) and grid.dtype == np.uint8
    for r in range(2):
        for c in range(3):
            tile = _tile(grid, r, c, h, w)
            # White text with a black outline in the top-left corner, the rest of the tile untouched.
            corner = tile[5:26, 3:60]
            assert (corner == 255).all(axis=-1).any() and (corner == 0).all(axis=-1).any()
            assert (tile[30:] == 128).all()
    # The label names the row and the frame: other words, other pixels.
    other = pictures.side_by_side_grid(inputs, outputs, frame_labels=["#0", "#5", "#99"], row_labels=["starry"])
    assert np.array_equal(grid[:, : 2 * (w + PAD)], other[:, : 2 * (w + PAD)])
    assert not np.array_equal(grid, other)
    with pytest.raises(ValueError, match="as many frames"):
        pictures.side_by_side_grid(inputs, [[grey] * 2])


# --- heat map ---------------------------------------------------------------------------------------


def _heat_case(h: int = 48, w: int = 64):
    """Error 0 on the left half, 0.04 on the right; the top 8 rows untrusted."""
    emap = np.zeros((h, w), np.float32)
    emap[:, w // 2:] = 0.04
    mask = torch.ones(1, 1, h, w)
    mask[..., :8, :] = 0
    frame = to_tensor(smooth_image(h, w, seed=1))
    return emap, mask, frame


def test_error_heatmap_colours_untrusted_grey_and_one_scale_for_all_rows():
    h, w = 48, 64
    emap, mask, frame = _heat_case(h, w)
    rows = [("out", frame, frame.flip(-1), emap), ("input", frame, frame, emap / 2)]
    heat = pictures.error_heatmap(rows, mask)
    sheet_h = 2 * (h + PAD) + PAD
    assert heat.shape == (sheet_h + pictures.SCALE_BAR_HEIGHT, 3 * (w + PAD) + PAD, 3)
    # frame t and frame t+1 warped are shown as they are (below the label)
    assert np.array_equal(_tile(heat, 0, 0, h, w)[30:], smooth_image(h, w, seed=1)[30:])
    assert np.array_equal(_tile(heat, 0, 1, h, w)[30:], smooth_image(h, w, seed=1)[30:, ::-1])
    out_heat, in_heat = _tile(heat, 0, 2, h, w), _tile(heat, 1, 2, h, w)
    assert (out_heat[:8, 40:] == pictures.UNTRUSTED_GREY).all()  # untrusted rows, right of the label
    assert (out_heat[30:, : w // 2].astype(int).sum(-1) < 40).all()  # no error: inferno's black end
    assert _is_yellow(out_heat[40, -1])  # the top of the scale (vmax defaults to the 99.5th percentile)
    # the second row's error is half as large on the same scale: a darker, redder colour
    half = in_heat[40, -1].astype(int)
    assert not _is_yellow(half) and half.sum() < out_heat[40, -1].astype(int).sum()
    assert not np.array_equal(pictures.error_heatmap(rows, mask, vmax=0.08), heat)


def test_scale_bar_runs_from_black_to_yellow_with_its_ends_and_a_fitting_legend_labelled():
    bar = pictures.scale_bar(700, 0.05)
    assert bar.shape == (pictures.SCALE_BAR_HEIGHT, 700, 3)
    assert bar[10, 4].astype(int).sum() < 40 and _is_yellow(bar[10, 695])
    ramp = bar[10, 4:696].astype(int).sum(-1)
    assert ramp[-1] > ramp[len(ramp) // 2] > ramp[0]

    def inked(b):  # columns holding black text under the ramp
        return np.flatnonzero((b[20:] < 100).all(-1).any(0))

    cols = inked(bar)
    assert cols.min() < 10 and cols.max() > 700 - 10  # "0" at the left end, "0.05" at the right end
    assert ((cols > 150) & (cols < 550)).any()  # the full legend fits in the middle
    narrow = pictures.scale_bar(100, 0.05)
    mid = inked(narrow)
    assert not ((mid > 20) & (mid < 60)).any()  # no room for a legend: only the two ends
    assert (pictures.scale_bar(700, 0.05)[20:] != pictures.scale_bar(700, 0.07)[20:]).any()


def test_heat_colours_clip_to_the_scale():
    c = pictures.heat_colours(np.array([[0.0, 0.5, 1.0, 7.0]]), 1.0)
    assert c.shape == (1, 4, 3) and c.dtype == np.uint8
    assert np.array_equal(c[0, 2], c[0, 3]) and c[0, 0].sum() < c[0, 1].sum() < c[0, 2].sum()


# --- loss curves ------------------------------------------------------------------------------------


def _rows(n: int = 5, **fixed) -> list[dict]:
    rows = [{"step": s, "content": 1 / (s + 1), "style": 2 / (s + 1), "tv": 0.1, "temporal": 0.01, "total": 3.0,
             "images_per_s": 10.0, "seconds": s} for s in range(0, 10 * n, 10)]
    return [{**r, **fixed} for r in rows]


def _log_run(folder, rows) -> None:
    folder.mkdir()
    (folder / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 99, \"cont")


def test_loss_curves_from_log_files_and_run_folders(tmp_path):
    run = tmp_path / "run"
    _log_run(run, _rows())
    assert len(read_training_log(run)) == 5  # the partial last line is skipped
    png = pictures.plot_loss_curves([run, run / "log.jsonl"], tmp_path / "curves.png", labels=["a", "b"])
    assert png == tmp_path / "curves.png"
    assert read_image(png).shape == (600, 1260, 3)  # six terms: 3 columns × 2 rows of 420×300 px
    assert not leftovers(tmp_path)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(FastNSTError, match="no training log rows"):
        pictures.plot_loss_curves(tmp_path / "empty.jsonl", tmp_path / "x.png")
    with pytest.raises(FastNSTError, match="one label per training log"):
        pictures.plot_loss_curves([run, run], tmp_path / "x.png", labels=["only one"])
    assert not (tmp_path / "x.png").exists()


def test_loss_curves_from_rows_in_memory_leave_out_switched_off_terms(tmp_path):
    history = [{k: v for k, v in r.items() if k != "images_per_s"} for r in _rows(temporal=0.0, tv=0.0)]
    png = pictures.plot_loss_curves({"mine": history}, tmp_path / "one.png")
    assert read_image(png).shape == (300, 1260, 3)  # total, content, style: one row
    titled = pictures.plot_loss_curves({"mine": history}, tmp_path / "titled.png", title="mine (fast)")
    assert read_image(titled).shape == (340, 1260, 3)
    with pytest.raises(FastNSTError, match="none of the fields"):
        pictures.plot_loss_curves({"x": [{"step": 1, "temporal": 0.0}]}, tmp_path / "none.png")


def test_loss_curve_is_written_atomically(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    out = tmp_path / "curves.png"
    out.write_bytes(b"the previous picture")

    def broken_save(self, fname, **kw):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_save)
    with pytest.raises(OSError, match="disk full"):
        pictures.plot_loss_curves({"run": _rows()}, out)
    assert out.read_bytes() == b"the previous picture" and not leftovers(tmp_path)


def test_without_matplotlib_loss_curves_say_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(pictures.MatplotlibMissing, match=r"pip install 'fastnst\[plots\]'"):
        pictures.plot_loss_curves({"run": _rows()}, tmp_path / "y.png")
    assert issubclass(pictures.MatplotlibMissing, FastNSTError) and not (tmp_path / "y.png").exists()


def test_curves_command(tmp_path, capsys, monkeypatch):
    _log_run(tmp_path / "a", _rows())
    _log_run(tmp_path / "b", _rows(style=0.5))
    out = tmp_path / "c.png"
    assert cli.main(["curves", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and read_image(out).shape == (600, 1260, 3)
    before = out.read_bytes()
    rc = cli.main(["curves", str(tmp_path / "a"), "-o", str(out)])  # one run now: a different picture
    assert rc == cli.EXIT_USER_ERROR and "--force" in capsys.readouterr().err and out.read_bytes() == before
    assert cli.main(["curves", str(tmp_path / "a"), "-o", str(out), "--force"]) == 0 and out.read_bytes() != before
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    rc = cli.main(["curves", str(tmp_path / "a"), "-o", str(tmp_path / "d.png")])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USER_ERROR and "matplotlib" in err and len(err.strip().splitlines()) == 1

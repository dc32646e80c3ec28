"""fastnst.fileio: atomic writes, training logs, labels."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from fastnst.errors import FastNSTError
from fastnst.fileio import (
    atomic_path,
    label_width,
    leftovers,
    put_label,
    read_log_rows,
    read_training_log,
    refuse_existing,
    temp_path,
    write_atomic,
    write_json,
    write_log_rows,
)


def test_temp_path_is_hidden_unique_and_keeps_the_suffix(tmp_path):
    a, b = temp_path(tmp_path / "out.mp4"), temp_path(tmp_path / "out.mp4")
    assert a != b and a.parent == tmp_path
    assert a.name.startswith(".out.") and a.suffix == ".mp4" and ".part" in a.name


def test_write_atomic_replaces_only_when_complete(tmp_path):
    dest = tmp_path / "sub" / "a.txt"
    write_atomic(dest, "old")

    def chunks():
        yield b"new"
        raise OSError("disk full")

    with pytest.raises(FastNSTError, match="disk full"):
        write_atomic(dest, chunks())
    assert dest.read_text() == "old" and leftovers(dest.parent) == []
    write_atomic(dest, [b"ne", b"w"])
    assert dest.read_text() == "new"


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        mode = stat.S_IMODE(write_atomic(tmp_path / "a.bin", b"x").stat().st_mode)
    finally:
        os.umask(old)
    assert mode == 0o644


def test_atomic_path_cleans_up_on_interrupt(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "m.onnx") as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_leftovers_finds_temporary_files_only(tmp_path):
    (tmp_path / "keep.mp4").write_bytes(b"")
    (tmp_path / ".keep.0a1b.part.mp4").write_bytes(b"")
    assert [p.name for p in leftovers(tmp_path)] == [".keep.0a1b.part.mp4"]


def test_log_rows_round_trip_skip_partial_lines_and_cut_at_a_step(tmp_path):
    log = tmp_path / "log.jsonl"
    write_log_rows(log, [{"step": 1, "total": 2.0}, {"step": 2, "total": 1.0}, {"step": 3, "total": 0.5}])
    with log.open("a") as f:
        f.write('{"step": 4, "tot')  # killed mid-write
    assert [r["step"] for r in read_log_rows(log)] == [1, 2, 3]
    assert [r["step"] for r in read_log_rows(log, upto_step=2)] == [1, 2]
    assert read_log_rows(tmp_path / "missing.jsonl") == []
    assert [r["step"] for r in read_training_log(tmp_path)] == [1, 2, 3]  # a run folder works too


def test_read_training_log_refuses_missing_or_empty_logs(tmp_path):
    with pytest.raises(FastNSTError, match="does not exist"):
        read_training_log(tmp_path / "nope.jsonl")
    (tmp_path / "log.jsonl").write_text("not json\n[1, 2]\n")
    with pytest.raises(FastNSTError, match="no training log rows"):
        read_training_log(tmp_path / "log.jsonl")


def test_write_json(tmp_path):
    assert json.loads(write_json(tmp_path / "r.json", {"a": [1, 2]}).read_text()) == {"a": [1, 2]}


def test_put_label_draws_white_text_with_a_dark_outline():
    img = np.full((40, 200, 3), 128, np.uint8)
    put_label(img, "starry", (6, 25))
    assert (img == 255).all(axis=2).any() and (img == 0).all(axis=2).any()
    assert (img[:, label_width("starry") + 12:] == 128).all()  # nothing drawn past the text


def _drawn_columns(text: str, outline) -> tuple[int, int]:
    img = np.full((40, 260, 3), 128, np.uint8)
    put_label(img, text, (6, 25), outline=outline)
    cols = np.flatnonzero((img != 128).any(axis=(0, 2)))
    return int(cols.min()), int(cols.max())


def test_label_outline_hugs_the_text_instead_of_smearing_right():
    # a thick stroke would widen every glyph's advance: 12 letters drift ~20 px past the text
    (o0, o1), (t0, t1) = _drawn_columns("starry_night", (0, 0, 0)), _drawn_columns("starry_night", None)
    assert t0 - 1 <= o0 <= t0 and t1 <= o1 <= t1 + 1
    assert t1 - t0 <= label_width("starry_night") + 2


def test_refuse_existing_unless_forced(tmp_path):
    refuse_existing(None, False)
    refuse_existing(tmp_path / "new.json", False)
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(FastNSTError, match="already exists; pass --force"):
        refuse_existing(tmp_path / "old.json", False)
    refuse_existing(tmp_path / "old.json", True)


def test_temp_path_fits_the_name_limit_for_the_longest_legal_name(tmp_path):
    for name in ("a" * 251 + ".png", "é" * 125 + ".mp4", "x.onnx"):
        tmp = temp_path(tmp_path / name)
        assert len(os.fsencode(tmp.name)) <= 255 and tmp.suffix == Path(name).suffix and tmp.name.startswith(".")
        assert leftovers(tmp_path) == []  # naming only
        tmp.write_bytes(b"")  # the file system takes it
        assert leftovers(tmp_path) == [tmp]
        tmp.unlink()
    assert temp_path(tmp_path / "short.mp4").name.startswith(".short.")  # short names are not cut


def test_atomic_write_of_a_255_byte_name(tmp_path):
    dest = write_atomic(tmp_path / ("a" * 251 + ".txt"), "x")
    assert dest.read_text() == "x" and leftovers(tmp_path) == []


def test_unwritable_destinations_are_one_sentence_and_leave_nothing(tmp_path):
    blocker = tmp_path / "clip.mp4"
    blocker.write_bytes(b"a file")
    with pytest.raises(FastNSTError, match="clip.mp4 is a file, not a folder"):
        write_atomic(blocker / "sub" / "x.png", b"x")
    (tmp_path / "taken").mkdir()
    with pytest.raises(FastNSTError, match="Cannot write"):
        write_atomic(tmp_path / "taken", b"x")  # a folder where the file should go
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "taken"]


def test_a_failed_write_removes_the_folders_it_made(tmp_path):
    def chunks():
        yield b"half"
        raise OSError(28, "No space left on device")

    with pytest.raises(FastNSTError, match="No space left on device"):
        write_atomic(tmp_path / "new" / "deeper" / "a.bin", chunks())
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(FastNSTError):
        write_atomic(tmp_path / "kept" / "new" / "a.bin", chunks())
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []


def test_check_name(tmp_path):
    from fastnst.fileio import check_name

    assert check_name(tmp_path / ("a" * 255)) == tmp_path / ("a" * 255)
    with pytest.raises(FastNSTError, match="256 bytes long"):
        check_name(tmp_path / ("a" * 252 + ".png"))
    with pytest.raises(FastNSTError, match="NUL"):
        check_name("a\0b.png")


def test_load_torch_weights_loads_tensors_and_words_every_refusal(tmp_path):
    import argparse

    import torch

    from fastnst.fileio import load_torch_weights

    good = tmp_path / "good.pth"
    torch.save({"w": torch.ones(2)}, good)
    assert torch.equal(load_torch_weights(good)["w"], torch.ones(2))
    torch.save({"args": argparse.Namespace(a=1)}, tmp_path / "ns.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    for name, why in (("ns.pth", "holds a pickled argparse.Namespace"), ("junk.pth", "damaged or not a torch file")):
        with pytest.raises(FastNSTError, match=why) as info:
            load_torch_weights(tmp_path / name, "a checkpoint")
        assert str(info.value).startswith(f"{tmp_path / name} is not a checkpoint (") and "weights_only" not in str(info.value)

"""Image edges: header sizes read without decoding, and the pixel cap that uses them."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fastnst.errors import FastNSTError
from fastnst.fileio import label_width, leftovers
from fastnst.images import (
    DEFAULT_MAX_PIXELS,
    check_pixels,
    contact_sheet,
    header_size,
    list_images,
    max_pixels_default,
    pixel_limit,
    read_image,
    resize_max,
    resize_to,
    to_tensor,
    to_uint8,
    write_image,
)

from .conftest import smooth_image


@pytest.mark.parametrize(("suffix", "params"), [
    (".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".webp", []),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".bmp", []), (".tif", []), (".tiff", []),
])
def test_header_size_matches_the_decoded_size(tmp_path: Path, suffix: str, params: list[int]) -> None:
    img = smooth_image(37, 53)
    path = tmp_path / f"a{suffix}"
    assert cv2.imwrite(str(path), img, params)
    assert header_size(path) == (53, 37)


def test_header_size_of_alpha_webp_and_unknown_files(tmp_path: Path) -> None:
    rgba = np.dstack([smooth_image(20, 30), np.full((20, 30), 128, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.webp"), rgba)
    assert header_size(tmp_path / "a.webp") == (30, 20)
    (tmp_path / "t.png").write_text("not an image")
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")  # ends inside the first segment
    assert header_size(tmp_path / "t.png") is None and header_size(tmp_path / "cut.jpg") is None


def test_header_size_of_an_os2_bitmap(tmp_path: Path) -> None:
    import struct

    # BITMAPCOREHEADER (12 bytes, 16-bit sizes): read as 32-bit it would claim a huge picture
    pixels = bytes(92 * 20)  # 30 px × 3 bytes, rows padded to 4 bytes
    head = b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + struct.pack("<IHHHH", 12, 30, 20, 1, 24)
    (tmp_path / "core.bmp").write_bytes(head + pixels)
    assert header_size(tmp_path / "core.bmp") == (30, 20)
    assert read_image(tmp_path / "core.bmp").shape == (20, 30, 3)


def test_check_pixels_and_the_limit_context() -> None:
    check_pixels(100, 100, 10_000, "x")
    with pytest.raises(FastNSTError, match="--max-pixels 10100"):
        check_pixels(101, 100, 10_000, "x")
    check_pixels(10**6, 10**6, 0, "x")  # 0: no limit
    assert max_pixels_default() == DEFAULT_MAX_PIXELS
    with pixel_limit(50):
        assert max_pixels_default() == 50
        with pytest.raises(FastNSTError):
            check_pixels(8, 8, None, "x")
    assert max_pixels_default() == DEFAULT_MAX_PIXELS
    with pytest.raises(FastNSTError, match="no limit"), pixel_limit(-1):
        pass


def test_read_image_cap_and_keyword(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", smooth_image(40, 50))
    assert read_image(path).shape == (40, 50, 3)
    with pytest.raises(FastNSTError, match="megapixel"):
        read_image(path, max_pixels=1999)
    assert read_image(path, max_pixels=2000).shape == (40, 50, 3)


def test_write_image_leaves_no_temporary_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    def fail(src, dst):  # interrupted at the rename, the encoded picture complete under its temporary name
        assert leftovers(tmp_path) == [Path(src)] and Path(src).stat().st_size > 0
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "a.png", smooth_image(8, 8))
    assert list(tmp_path.iterdir()) == []


def test_contact_sheet_tiles_resizes_and_labels_in_place() -> None:
    a, b, c = smooth_image(40, 60, 1), smooth_image(20, 20, 2), smooth_image(40, 160, 3)
    sheet = contact_sheet([a, b, c], columns=2, pad=4, labels=["a", "", "starry_night"])
    # two columns as wide as the widest tile, two rows, 4 px white gutters; b scaled to 40x40
    assert sheet.shape == (2 * 44 + 4, 2 * 164 + 4, 3)
    assert (sheet[:4] == 255).all() and (sheet[:, 164:168] == 255).all() and (sheet[4:44, 64:164] == 255).all()
    assert np.array_equal(sheet[4:44, 168:208], cv2.resize(b, (40, 40), interpolation=cv2.INTER_AREA))
    tile = sheet[48:88, 4:164]
    changed = np.flatnonzero((tile != c).any(axis=(0, 2)))
    # the label sits at x=6 with a one-pixel outline: nothing drawn past its own width (no smear)
    assert changed.min() >= 4 and changed.max() <= 6 + label_width("starry_night") + 1 < 160
    assert (tile == 255).all(axis=2).any() and (tile == 0).all(axis=2).any()
    assert np.array_equal(sheet[4:44, 4:64][25:], a[25:])  # below the label, the picture is untouched


def test_tensor_conversions_round_trip_round_and_clamp() -> None:
    img = smooth_image(5, 7)
    t = to_tensor(img)
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32 and 0 <= float(t.min()) <= float(t.max()) <= 1
    assert torch.equal(t[0, :, 2, 3], torch.from_numpy(img[2, 3]).float() / 255)  # RGB order kept
    assert np.array_equal(to_uint8(t), img) and np.array_equal(to_uint8(t[0]), img)
    odd = torch.tensor([-0.2, 1.3, 0.4 / 255, 1.6 / 255]).view(1, 4, 1).expand(3, 4, 1)
    assert to_uint8(odd)[:, 0, 0].tolist() == [0, 255, 0, 2]  # clamped, rounded (not truncated)
    with pytest.raises(ValueError, match="one image"):
        to_uint8(torch.zeros(2, 3, 4, 4))


def test_resizes_by_the_longer_side() -> None:
    x = torch.rand(1, 3, 60, 90)
    assert resize_max(x, None) is x and resize_max(x, 90) is x and resize_max(x, 200) is x  # never up
    assert resize_max(x, 45).shape[-2:] == (30, 45)
    assert resize_to(x, 180).shape[-2:] == (120, 180) and resize_to(x, (7, 5)).shape[-2:] == (7, 5)
    flat = torch.full((1, 3, 60, 90), 0.25)
    assert torch.allclose(resize_max(flat, 45), torch.tensor(0.25)) and torch.allclose(resize_to(flat, 31), flat[..., :1, :1])


def test_list_images_by_extension(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.PNG", "a.jpg", "sub/c.webp", "notes.txt", "sub/d.mp4"):
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "sub/c.webp"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg", "b.PNG"]
    with pytest.raises(FastNSTError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_write_image_refuses_unknown_extensions(tmp_path: Path) -> None:
    for name, message in (("a.gif", ".gif"), ("noext", "without an extension")):
        with pytest.raises(FastNSTError, match=message):
            write_image(tmp_path / name, smooth_image(4, 4))
    assert list(tmp_path.iterdir()) == []

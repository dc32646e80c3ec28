"""Image edges: file ↔ uint8 HWC RGB ↔ float ``[0,1]`` RGB NCHW tensors. Conversions happen only here."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import FastNSTError
from .fileio import put_label, write_atomic

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# Decoded frames cost 3 bytes a pixel, the network's activations about a kilobyte a pixel: 50
# megapixels (an 8K frame is 33) is the most a normal command should try. ``--max-pixels`` raises it.
DEFAULT_MAX_PIXELS = 50_000_000
_max_pixels = DEFAULT_MAX_PIXELS


def max_pixels_default() -> int:
    """The pixel cap used when a reader is given ``max_pixels=None`` (see :func:`pixel_limit`)."""
    return _max_pixels


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Within the block, readers called with ``max_pixels=None`` use ``max_pixels`` (None: unchanged).

    For callers that cannot thread a keyword through (the CLI around a pipeline call).
    """
    global _max_pixels
    if max_pixels is not None and max_pixels < 0:
        raise FastNSTError(f"--max-pixels must be 0 (no limit) or positive, got {max_pixels}.")
    old = _max_pixels
    if max_pixels is not None:
        _max_pixels = int(max_pixels)
    try:
        yield
    finally:
        _max_pixels = old


def check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    """Raise :class:`FastNSTError` when ``width × height`` exceeds the cap (``None``: the default)."""
    cap = _max_pixels if max_pixels is None else max_pixels
    if cap and width * height > cap:
        raise FastNSTError(f"{what} is {width}x{height} ({width * height / 1e6:.1f} megapixels), more than the "
                           f"{cap / 1e6:g}-megapixel limit; pass --max-pixels {width * height} to allow it.")


def _u16(b: bytes, i: int, order: str = "big") -> int:
    return int.from_bytes(b[i:i + 2], order)


def _u32(b: bytes, i: int, order: str = "big") -> int:
    return int.from_bytes(b[i:i + 4], order)


def _jpeg_size(f) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        marker = f.read(2)
        while len(marker) == 2 and marker[0] == 0xFF and marker[1] == 0xFF:  # fill bytes
            marker = marker[1:] + f.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        m = marker[1]
        if m in (0xD8, 0x01) or 0xD0 <= m <= 0xD7:  # markers without a length
            continue
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = _u16(seg, 0)
        # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            body = f.read(5)
            return (_u16(body, 3), _u16(body, 1)) if len(body) == 5 else None
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)


def _tiff_size(f, head: bytes) -> tuple[int, int] | None:
    order = "little" if head[:2] == b"II" else "big"
    f.seek(_u32(head, 4, order))
    count = f.read(2)
    if len(count) < 2:
        return None
    entries = f.read(12 * min(_u16(count, 0, order), 512))
    size: dict[int, int] = {}
    for i in range(0, len(entries) - 11, 12):
        tag, typ = _u16(entries, i, order), _u16(entries, i + 2, order)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            size[tag] = _u16(entries, i + 8, order) if typ == 3 else _u32(entries, i + 8, order)
    return (size[256], size[257]) if len(size) == 2 else None


def header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` from an image file's header without decoding it (PNG, JPEG, WebP, BMP,
    TIFF); ``None`` when the format is not recognised or the header is damaged."""
    with open(path, "rb") as f:
        head = f.read(32)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
            return _u32(head, 16), _u32(head, 20)
        if head[:3] == b"\xff\xd8\xff":
            return _jpeg_size(f)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            chunk = head[12:16]
            if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
                f.seek(26)
                b = f.read(4)
                return (_u16(b, 0, "little") & 0x3FFF, _u16(b, 2, "little") & 0x3FFF) if len(b) == 4 else None
            if chunk == b"VP8L" and len(head) >= 25:
                bits = int.from_bytes(head[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8X" and len(head) >= 30:
                return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
            return None
        if head[:2] == b"BM" and len(head) >= 26:
            if _u32(head, 14, "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
                return _u16(head, 18, "little"), _u16(head, 20, "little")
            # BITMAPINFOHEADER and later: 32-bit, height negative for top-down rows
            return abs(int.from_bytes(head[18:22], "little", signed=True)), \
                abs(int.from_bytes(head[22:26], "little", signed=True))
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(f, head)
    return None


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as ``(H,W,3)`` uint8 RGB (alpha dropped, grey expanded).

    Images over ``max_pixels`` (``None``: :data:`DEFAULT_MAX_PIXELS` or the :func:`pixel_limit`
    in force; 0: no limit) are refused from their header, before anything is decoded.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FastNSTError(f"Image {path} does not exist.")
    try:
        size = header_size(path)
    except OSError as exc:
        raise FastNSTError(f"Cannot read {path} ({exc.strerror or exc}).") from exc
    if size is not None:
        check_pixels(size[0], size[1], max_pixels, f"Image {path}")
    data = np.fromfile(str(path), dtype=np.uint8)  # imdecode copes with non-ASCII paths; imread does not
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise FastNSTError(f"Cannot read {path} as an image (unsupported or corrupt file).")
    # Formats without a parsed header were decoded under OpenCV's own (1-gigapixel) cap: check after.
    check_pixels(img.shape[1], img.shape[0], max_pixels, f"Image {path}")
    return np.ascontiguousarray(img[:, :, ::-1])


def write_image(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write ``(H,W,3)`` uint8 RGB atomically (temporary name, then rename)."""
    import cv2

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise FastNSTError(f"Cannot write images as {suffix or 'files without an extension'}; use .png or .jpg.")
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise FastNSTError(f"OpenCV could not encode {path.name}.")
    return write_atomic(path, buf.tobytes())


def to_tensor(rgb: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(H,W,3)`` uint8 RGB → ``(1,3,H,W)`` float32 in ``[0,1]``."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).to(device)
    return t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(3,H,W)`` or ``(1,3,H,W)`` float in ``[0,1]`` → ``(H,W,3)`` uint8 RGB (rounded, clamped)."""
    if images.dim() == 4:
        if images.shape[0] != 1:
            raise ValueError("to_uint8 takes one image; index the batch first")
        images = images[0]
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def resize_shape(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """``(height, width)`` downscaled so the longer side is at most ``max_side``; never upscaled."""
    s = max_side / max(height, width) if max_side else 1.0
    return (height, width) if s >= 1 else (max(1, round(height * s)), max(1, round(width * s)))


def resize_max(images: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """Downscale ``(B,C,H,W)`` so the longer side is at most ``max_side`` (area filter); never upscale."""
    h, w = images.shape[-2:]
    size = resize_shape(h, w, max_side)
    return images if size == (h, w) else F.interpolate(images, size=size, mode="area")


def longer_side_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(height, width)`` scaled, up or down, so the longer side is ``size``."""
    s = size / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def resize_to(images: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Resize ``(B,C,H,W)`` to ``size`` (an int sets the longer side) with antialiased bilinear."""
    h, w = images.shape[-2:]
    if isinstance(size, int):
        size = longer_side_shape(h, w, size)
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def list_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (sorted), by extension."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FastNSTError(f"Folder {folder} does not exist.")
    it = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def contact_sheet(images: Sequence[np.ndarray], *, columns: int = 5, pad: int = 4,
                  labels: Sequence[str] | None = None) -> np.ndarray:
    """Tile ``(H,W,3)`` uint8 images (resized to the first one's height) into one grid image."""
    import cv2

    if not images:
        raise ValueError("contact_sheet needs at least one image")
    h = images[0].shape[0]
    tiles = [img if img.shape[0] == h else cv2.resize(img, (round(img.shape[1] * h / img.shape[0]), h),
                                                      interpolation=cv2.INTER_AREA) for img in images]
    w = max(t.shape[1] for t in tiles)
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        t = np.ascontiguousarray(t)
        if labels is not None and i < len(labels) and labels[i]:
            t = t.copy()
            put_label(t, labels[i], (6, 22))
        sheet[y:y + h, x:x + t.shape[1]] = t
    return sheet

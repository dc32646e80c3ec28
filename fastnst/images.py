"""Image edges: file ↔ uint8 HWC RGB ↔ float ``[0,1]`` RGB NCHW tensors. Conversions happen only here."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import FastNSTError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``(H,W,3)`` uint8 RGB (alpha dropped, grey expanded)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FastNSTError(f"Image {path} does not exist.")
    data = np.fromfile(str(path), dtype=np.uint8)  # imdecode copes with non-ASCII paths; imread does not
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise FastNSTError(f"Cannot read {path} as an image (unsupported or corrupt file).")
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)
    return path


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


def resize_max(images: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """Downscale ``(B,C,H,W)`` so the longer side is at most ``max_side`` (area filter); never upscale."""
    if not max_side:
        return images
    h, w = images.shape[-2:]
    s = max_side / max(h, w)
    if s >= 1:
        return images
    size = (max(1, round(h * s)), max(1, round(w * s)))
    return F.interpolate(images, size=size, mode="area")


def resize_to(images: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Resize ``(B,C,H,W)`` to ``size`` (an int sets the longer side) with antialiased bilinear."""
    h, w = images.shape[-2:]
    if isinstance(size, int):
        s = size / max(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
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
            cv2.putText(t, labels[i], (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(t, labels[i], (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        sheet[y:y + h, x:x + t.shape[1]] = t
    return sheet

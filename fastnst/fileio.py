"""Files: atomic writes with one temporary-name convention, training logs, text labels on pictures.

Every output fastnst writes appears only when complete: it is written to a hidden temporary name in
the destination folder and renamed over the destination (``os.replace`` is atomic within a folder).
The temporary name is ``.STEM.TOKEN.partSUFFIX``:

- hidden, so the style registry and folder listings never pick it up;
- ``.part`` in the name, so a leftover is recognisable (tests look for it);
- a random token, so two processes writing the same destination never share a temporary file;
- the destination's suffix kept, because encoders choose the container by it (PyAV, torch.onnx).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import FastNSTError

PART = ".part"


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh hidden temporary name beside ``path`` (see the module docstring for its form)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}{PART}{path.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it over ``path``, on any error (an
    interrupt or a full disk included) delete it. Creates the destination folder.

    >>> with atomic_path("out.onnx") as tmp:   # doctest: +SKIP
    ...     torch.onnx.export(model, x, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str | Iterable[bytes]) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or an iterable of byte chunks) to ``path`` atomically.

    The file gets the usual permissions (0666 less the umask), not mkstemp's 0600.
    """
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, str):
                data = data.encode("utf-8")
            for chunk in (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data:
                f.write(chunk)
    return Path(path)


def write_json(path: str | os.PathLike, data: object) -> Path:
    """Write ``data`` as indented JSON (one trailing newline) atomically."""
    return write_atomic(path, json.dumps(data, indent=2) + "\n")


def refuse_existing(path: str | os.PathLike | None, force: bool) -> None:
    """Raise :class:`FastNSTError` if the output ``path`` exists and ``force`` is off: call it before
    any work, so a refusal costs nothing and an existing file is never replaced by surprise."""
    if path is not None and Path(path).exists() and not force:
        raise FastNSTError(f"Output {path} already exists; pass --force to replace it.")


def leftovers(folder: str | os.PathLike) -> list[Path]:
    """Temporary files of this convention left in ``folder`` (by a process that was killed)."""
    return sorted(p for p in Path(folder).iterdir() if p.name.startswith(".") and PART in p.name)


# --------------------------------------------------------------------------------------------------
# Training logs: one JSON object per line, each with a "step"
# --------------------------------------------------------------------------------------------------


def read_log_rows(path: str | os.PathLike, upto_step: float = math.inf) -> list[dict]:
    """Rows of a training ``log.jsonl`` with ``step ≤ upto_step``, in file order.

    Lines that are not JSON objects with a ``step`` are skipped: a run killed mid-write leaves a
    partial last line, and rows after the last checkpoint belong to steps a resumed run redoes.
    A missing file gives ``[]``.
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row and row["step"] <= upto_step:
            rows.append(row)
    return rows


def read_training_log(path: str | os.PathLike) -> list[dict]:
    """Rows of a training ``log.jsonl`` (a run folder is accepted too) for plotting or reports.

    Raises :class:`FastNSTError` when the file is missing or holds no rows.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.is_file():
        raise FastNSTError(f"Training log {path} does not exist.")
    rows = read_log_rows(path)
    if not rows:
        raise FastNSTError(f"{path} holds no training log rows (JSON lines with a 'step' field).")
    return rows


def write_log_rows(path: str | os.PathLike, rows: Sequence[dict]) -> Path:
    """Write ``rows`` as a ``log.jsonl`` atomically (the whole log: a resumed run rewrites it)."""
    return write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


# --------------------------------------------------------------------------------------------------
# Text on pictures
# --------------------------------------------------------------------------------------------------


def put_label(img: np.ndarray, text: str, org: tuple[int, int], *, scale: float = 0.6,
              color: tuple[int, int, int] = (255, 255, 255), outline: tuple[int, int, int] | None = (0, 0, 0)) -> None:
    """Draw ``text`` on ``img`` (``(H,W,3)`` uint8, modified in place) with its baseline's left end
    at ``org`` = ``(x, y)``; a one-pixel outline keeps it readable on any picture."""
    import cv2  # OpenCV is heavy to import and only pictures need it

    font, line = cv2.FONT_HERSHEY_SIMPLEX, cv2.LINE_AA
    if outline is not None:
        # The text shifted one pixel each way, not one thicker stroke: OpenCV widens each glyph's
        # advance with the thickness, so a thick outline drifts right of the text (a smear).
        x, y = org
        for dx, dy in ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)):
            cv2.putText(img, text, (x + dx, y + dy), font, scale, outline, 1, line)
    cv2.putText(img, text, org, font, scale, color, 1, line)


def label_width(text: str, scale: float = 0.6) -> int:
    """Width in pixels that :func:`put_label` takes for ``text``."""
    import cv2

    (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    return int(w)


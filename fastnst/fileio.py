"""Files: atomic writes with one temporary-name convention, training logs, text labels on pictures.

Every output fastnst writes appears only when complete: it is written to a hidden temporary name in
the destination folder and renamed over the destination (``os.replace`` is atomic within a folder).
The temporary name is ``.STEM.TOKEN.partSUFFIX``:

- hidden, so the style registry and folder listings never pick it up;
- ``.part`` in the name, so a leftover is recognisable (tests look for it);
- a random token, so two processes writing the same destination never share a temporary file;
- the destination's suffix kept, because encoders choose the container by it (PyAV, torch.onnx);
- the stem shortened when the whole would pass the file system's name limit (255 bytes on most), so
  any name the user may legally give can be written.

Folders an output needs are created, and removed again (when still empty) if the write fails, so a
failed run leaves nothing behind. OS errors while writing become one :class:`FastNSTError` sentence.
"""

from __future__ import annotations

import contextlib
import errno
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


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no such folder yet, or no pathconf (Windows)
        return 255


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh hidden temporary name beside ``path`` (see the module docstring for its form)."""
    path = Path(path)
    token = secrets.token_hex(4)
    room = _name_max(path.parent) - len(os.fsencode(f"..{token}{PART}{path.suffix}"))
    stem = path.stem
    while stem and len(os.fsencode(stem)) > room:  # by characters, so a multi-byte one is never split
        stem = stem[:-1]
    return path.with_name(f".{stem}.{token}{PART}{path.suffix}")


def _reason(path: Path, exc: OSError, *, folder: bool = False) -> str:
    """Why ``path`` (a ``folder`` to create, or a file) cannot be written, in words: a file standing
    where a folder must be is named."""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.ENOENT):
        for parent in [path, *path.parents] if folder else path.parents:
            if parent.exists():
                if not parent.is_dir():
                    return f"{parent} is a file, not a folder"
                break
    return exc.strerror or str(exc)


def cannot_write(path: str | os.PathLike, exc: OSError) -> FastNSTError:
    """The :class:`FastNSTError` for an OSError met while writing ``path`` (full disk, read-only or
    missing folder, permissions, a name too long)."""
    return FastNSTError(f"Cannot write {path} ({_reason(Path(path), exc)}).")


@contextmanager
def created_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Create ``folder`` and its missing parents; if the block fails, remove those this call created
    that are still empty (a failed run leaves no empty folder behind)."""
    folder = Path(folder)
    missing = []
    p = folder
    while not p.exists() and not p.is_symlink() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        raise FastNSTError(f"Cannot create the folder {folder} ({_reason(folder, exc, folder=True)}).") from exc
    try:
        yield folder
    except BaseException:
        _remove_empty(missing)
        raise


def _remove_empty(folders: list[Path]) -> None:
    for p in folders:  # deepest first
        try:
            p.rmdir()
        except OSError:
            return  # not empty (another writer's file) or already gone: leave it and its parents


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it over ``path``, on any error (an
    interrupt or a full disk included) delete it. Creates the destination folder (removed again on
    failure if this call created it). The temporary file exists (empty) when the block starts, so an
    unwritable destination fails here, as a :class:`FastNSTError`, before any work.

    >>> with atomic_path("out.onnx") as tmp:   # doctest: +SKIP
    ...     torch.onnx.export(model, x, tmp)
    """
    path = Path(path)
    with created_folder(path.parent):
        tmp = temp_path(path)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            raise cannot_write(path, exc) from exc
        try:
            yield tmp
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise cannot_write(path, exc) from exc
        except BaseException:
            with contextlib.suppress(OSError):  # the original error is the one to report
                tmp.unlink(missing_ok=True)
            raise


def write_atomic(path: str | os.PathLike, data: bytes | str | Iterable[bytes]) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or an iterable of byte chunks) to ``path`` atomically;
    an OS error (a full disk) is a :class:`FastNSTError` naming ``path``.

    The file gets the usual permissions (0666 less the umask), not mkstemp's 0600.
    """
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                if isinstance(data, str):
                    data = data.encode("utf-8")
                f.writelines((data,) if isinstance(data, (bytes, bytearray, memoryview)) else data)
        except OSError as exc:
            raise cannot_write(path, exc) from exc
    return Path(path)


def write_json(path: str | os.PathLike, data: object) -> Path:
    """Write ``data`` as indented JSON (one trailing newline) atomically."""
    return write_atomic(path, json.dumps(data, indent=2) + "\n")


def check_name(path: str | os.PathLike) -> Path:
    """Refuse a path no file system can hold (a NUL character, a name over the name limit) in one
    sentence, before anything asks the OS about it (``Path.exists`` raises for such names)."""
    path = Path(path)
    text = os.fspath(path)
    if "\0" in text:
        raise FastNSTError(f"The path {text!r} holds a NUL character, which no file name may.")
    for part in path.parts:
        n = len(os.fsencode(part))
        if n > 255:  # NAME_MAX of every common file system; pathconf needs a folder that exists
            raise FastNSTError(f"The name {part[:24]}…{path.suffix} is {n} bytes long; file and folder names may be "
                               "at most 255.")
    return path


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Refuse, before any work, an output ``path`` (a file, or with ``folder`` a folder to write
    into) that cannot be written: a file standing where a folder must be, a read-only file system, no
    permission. Nothing is created here (a refusal leaves nothing behind)."""
    path = check_name(path)
    folder = path if folder else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise FastNSTError(f"Cannot write {path} ({folder} is a file, not a folder).")
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): access() below still answers
        read_only = False
    if read_only or not os.access(folder, os.W_OK | os.X_OK):
        why = os.strerror(errno.EROFS if read_only else errno.EACCES)
        raise FastNSTError(f"Cannot write {path} ({folder}: {why}).")
    return path


def refuse_existing(path: str | os.PathLike | None, force: bool) -> None:
    """Raise :class:`FastNSTError` if the output ``path`` exists and ``force`` is off: call it before
    any work, so a refusal costs nothing and an existing file is never replaced by surprise."""
    if path is not None and Path(path).exists() and not force:
        raise FastNSTError(f"Output {path} already exists; pass --force to replace it.")


def load_torch_weights(path: str | os.PathLike, what: str = "a weights-only torch file"):
    """``torch.load(path, weights_only=True)`` (never anything else: a pickle can run code), with
    any failure as one :class:`FastNSTError` sentence: ``{path} is not {what} (why)``. PyTorch's own
    text is not passed on: it advises loading with ``weights_only=False``, which no user should do
    with a file they were given."""
    import re
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": stderr is for our one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors come in many types
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            why = f"it holds a pickled {found.group(1)}; fastnst loads tensors only, never pickled objects"
        elif "Weights only load failed" in str(exc):
            why = "it is damaged or holds pickled objects; fastnst loads tensors only"
        else:  # zip and pickle errors whose text means nothing to a user (a KeyError of a number)
            why = "it is damaged or not a torch file"
        raise FastNSTError(f"{path} is not {what} ({why}).") from exc


def load_safetensors(path: str | os.PathLike, *, metadata: bool = False):
    """The tensors of a ``.safetensors`` file (with ``metadata``: ``(tensors, metadata dict)``).
    safetensors takes a path only as UTF-8 text (a name holding other bytes fails as a "corrupt"
    file): such a file is read into memory instead."""
    from safetensors.torch import load

    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        data = Path(text).read_bytes()
        meta = json.loads(data[8:8 + int.from_bytes(data[:8], "little")]).get("__metadata__") or {}
        return (load(data), meta) if metadata else load(data)
    from safetensors import safe_open

    with safe_open(text, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        return (tensors, f.metadata() or {}) if metadata else tensors


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


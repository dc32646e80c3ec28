"""Style-model files (safetensors + string metadata) and the registry of style names.

A style file holds the TransformerNet weights and, in its metadata, everything needed to rebuild
the net without code from the file: ``format=fastnst-style``, ``format_version``, ``arch`` (JSON),
``preset``, ``style_name``, ``style_image``, ``train_config`` (JSON, paths as file names),
``fastnst_version`` and, optionally, ``metrics`` (JSON) and ``work_size`` (the longer side, px, the
network works at). Loading uses safetensors, which cannot execute code, and checks the file's header
(tensor names, shapes, sizes) against the declared architecture before anything is built.

Styles are found by name in three kinds of folder, first match wins: ``$FASTNST_WEIGHTS``
(os.pathsep-separated, origin ``"env"``), the per-user folder (:func:`user_styles_dir`, ``"user"``)
and the styles shipped inside the package (``"shipped"``). A style's name is its file stem.

Variants: one painting may come as several networks of one *family* (metadata ``family``, else the
stem without its ``_PRESET`` suffix): ``starry_night_fast`` (the perceptually trained net) and
``starry_night_lite`` (its distilled CPU twin). A file stem picks that exact file; a family name picks
a variant by preference (:func:`resolve_style`: ``"speed"`` → lite first, ``"quality"`` → the largest).
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import FastNSTError
from .fileio import atomic_path, write_atomic

if TYPE_CHECKING:  # torch is imported only where a network is built: listing styles stays fast
    import torch

    from .models import Arch, TransformerNet

FORMAT = "fastnst-style"
FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
DEFAULT_STYLE = "starry_night"  # a family: its fastest variant on a CPU, its best on a GPU
# Which variant of a family a preference picks, in order; presets not listed come last.
VARIANT_ORDER = {"speed": ("lite", "fast", "quality"), "quality": ("quality", "fast", "lite")}
ORIGINS = ("env", "user", "shipped")  # lookup order: an explicit folder beats the user's, then shipped

# Bounds on what a style file may declare, checked before anything is built. The presets are far
# inside them (quality: widths ≤ 128, 5 blocks, 1.68 M parameters).
MAX_WIDTH = 1024
MAX_RESIDUAL = 64
MAX_PARAMETERS = 50_000_000
MAX_WORK_SIZE = 16384
_MAX_HEADER_BYTES = 16 << 20
_DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


@dataclass
class StyleModel:
    """A loaded style: the network (eval mode), the name it is listed and picked by, its metadata."""

    net: TransformerNet
    name: str
    path: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def preset(self) -> str:
        return self.metadata.get("preset", "custom")

    @property
    def train_config(self) -> dict:
        return json.loads(self.metadata.get("train_config", "{}"))

    @property
    def metrics(self) -> dict:
        return json.loads(self.metadata.get("metrics", "{}"))

    @property
    def family(self) -> str:
        return family_in(self.metadata, self.name)

    @property
    def work_size(self) -> int | None:
        """The network's working resolution (longer side, px) recorded in the file, or None."""
        value = self.metadata.get("work_size")
        return int(value) if value else None


@dataclass(frozen=True)
class StyleEntry:
    """A registered style file: its ``name`` (file stem), ``path`` and ``origin`` (``"shipped"``,
    ``"user"`` or ``"env"``). Usable wherever a path is (``os.fspath(entry)``)."""

    name: str
    path: Path
    origin: str

    def __fspath__(self) -> str:
        return str(self.path)


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------


def _is_absolute_path(text: str) -> bool:
    return (text.startswith(("/", "\\", "~")) or bool(re.match(r"[A-Za-z]:[\\/]", text))) and len(text) > 1


def relative_paths(value):
    """``value`` (JSON-like) with every absolute path string replaced by its file name: a style file
    records what it was trained on, not the folders of the machine that trained it."""
    if isinstance(value, dict):
        return {k: relative_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative_paths(v) for v in value]
    if isinstance(value, str) and _is_absolute_path(value):
        return re.split(r"[\\/]", value.rstrip("\\/"))[-1] or value
    return value


def save_style(
    path: str | os.PathLike,
    net: TransformerNet,
    *,
    style_name: str,
    style_image: str = "",
    preset: str = "custom",
    train_config: dict | None = None,
    metrics: dict | None = None,
    half: bool = False,
    work_size: int | None = None,
    family: str | None = None,
) -> Path:
    """Write ``net`` to ``path`` (``.safetensors``) atomically; ``half`` stores fp16 weights.

    ``work_size``: the longer side (px) the network is meant to run at, recorded for inference.
    ``family``: the style family this network is a variant of (see the module docstring).
    Absolute paths in ``train_config`` are recorded as file names.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_name(path.name + SUFFIX)
    if work_size is not None and not (isinstance(work_size, int) and 0 < work_size <= MAX_WORK_SIZE):
        raise FastNSTError(f"work_size must be a whole number of pixels in 1..{MAX_WORK_SIZE}, not {work_size!r}.")
    net = getattr(net, "_orig_mod", net)  # torch.compile wrapper → the real module
    net = getattr(net, "module", net)  # DistributedDataParallel wrapper
    tensors = {}
    for k, v in net.state_dict().items():
        v = v.detach().to("cpu").contiguous()
        tensors[k] = v.half() if half and v.is_floating_point() else v
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": json.dumps(net.arch.to_dict()),
        "preset": preset,
        "style_name": style_name,
        "style_image": style_image,
        "train_config": json.dumps(relative_paths(json.loads(json.dumps(train_config or {}, default=str)))),
        "fastnst_version": __version__,
    }
    if metrics:
        meta["metrics"] = json.dumps(metrics)
    if work_size is not None:
        meta["work_size"] = str(work_size)
    if family:
        meta["family"] = check_style_name(family)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def rewrite_metadata(src: str | os.PathLike, dest: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Copy the style file ``src`` to ``dest`` (atomically) with new string ``metadata``; the tensor
    bytes are copied unchanged. ``src`` is checked as by :func:`check_style_file` first."""
    src, dest = Path(src), Path(dest)
    header, payload_start = _read_header(src)
    header = {k: v for k, v in header.items() if k != "__metadata__"}
    text = json.dumps({"__metadata__": {str(k): str(v) for k, v in metadata.items()}, **header},
                      separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the tensor data to 8 bytes
    with open(src, "rb") as f:
        f.seek(payload_start)
        payload = f.read()
    write_atomic(dest, [struct.pack("<Q", len(text)), text, payload])
    return dest


# --------------------------------------------------------------------------------------------------
# reading and checking, before anything is built
# --------------------------------------------------------------------------------------------------


def _read_header(path: Path) -> tuple[dict, int]:
    """The safetensors JSON header of ``path`` and the offset where tensor data starts, checked
    for consistency (offsets inside the file, sizes matching shapes and dtypes)."""
    if not path.is_file():
        raise FastNSTError(f"Style model {path} does not exist.")
    size = path.stat().st_size
    not_st = f"{path} is not a fastnst style model (not a safetensors file)."
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FastNSTError(f"{path} is not a fastnst style model (empty or truncated file).")
        n = struct.unpack("<Q", head)[0]
        if n == 0 or n > _MAX_HEADER_BYTES:  # a pickle, a zip, text: the first 8 bytes make no sense
            raise FastNSTError(not_st)
        text = f.read(n)
    if not text.startswith(b"{"):
        raise FastNSTError(not_st)
    if len(text) < n:
        raise FastNSTError(f"{path} is truncated (its header is cut off).")
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FastNSTError(not_st) from None
    if not isinstance(header, dict):
        raise FastNSTError(not_st)
    _check_tensor_entries(path, header, size - 8 - n)
    return header, 8 + n


def _check_tensor_entries(path: Path, header: dict, payload: int) -> None:
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = [int(d) for d in info["shape"]]
            start, stop = (int(o) for o in info["data_offsets"])
            dtype = info["dtype"]
        except (KeyError, TypeError, ValueError):
            raise FastNSTError(f"{path} is not a fastnst style model (malformed safetensors header).") from None
        if dtype not in _DTYPE_BYTES:
            raise FastNSTError(f"{path}: tensor {name!r} has type {dtype}; a style model holds floating-point weights.")
        numel = 1
        for d in shape:
            numel *= d
        if min(shape, default=1) < 0 or not 0 <= start <= stop or stop - start != numel * _DTYPE_BYTES[dtype]:
            raise FastNSTError(f"{path} is corrupt (tensor {name!r} does not match its stated size).")
        end = max(end, stop)
    if end > payload:
        raise FastNSTError(f"{path} is truncated ({payload} of {end} bytes of weights).")


def _check_metadata(path: Path, meta: object) -> dict[str, str]:
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FastNSTError(f"{path} is a safetensors file but not a fastnst style model (no style metadata).")
    if meta.get("format") != FORMAT:
        raise FastNSTError(f"{path} is a safetensors file but not a fastnst style model (format={meta.get('format')!r}).")
    if meta.get("format_version") != FORMAT_VERSION:
        raise FastNSTError(f"{path} has style-file version {meta.get('format_version')}; this fastnst reads {FORMAT_VERSION}.")
    ws = meta.get("work_size")
    if ws is not None and not (ws.isdigit() and 0 < int(ws) <= MAX_WORK_SIZE):
        raise FastNSTError(f"{path} declares an invalid work_size {ws!r} (expected pixels in 1..{MAX_WORK_SIZE}).")
    return meta


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a style file (its header only: no tensor is read); raises
    FastNSTError for anything that is not a well-formed fastnst style file."""
    path = Path(path)
    header, _ = _read_header(path)
    return _check_metadata(path, header.get("__metadata__"))


def _declared_arch(path: Path, meta: dict[str, str]) -> Arch:
    from .models import Arch

    try:
        arch = Arch.from_dict(json.loads(meta.get("arch", "")))
    except (json.JSONDecodeError, FastNSTError):
        raise FastNSTError(f"{path} has an unreadable network description {meta.get('arch', '')[:80]!r}.") from None
    if not all(1 <= w <= MAX_WIDTH for w in arch.widths) or not 0 <= arch.n_residual <= MAX_RESIDUAL:
        raise FastNSTError(f"{path} declares an implausible network {arch.to_dict()} "
                           f"(widths 1..{MAX_WIDTH}, at most {MAX_RESIDUAL} residual blocks).")
    return arch


def check_style_file(path: str | os.PathLike) -> tuple[dict[str, str], Arch]:
    """Check a style file without reading its weights: the header is well formed, the declared
    architecture is within bounds, and the tensors' names and shapes are exactly that network's.
    Returns ``(metadata, arch)``."""
    import torch

    from .models import TransformerNet

    path = Path(path)
    header, _ = _read_header(path)
    meta = _check_metadata(path, header.get("__metadata__"))
    arch = _declared_arch(path, meta)
    with torch.device("meta"):  # shapes only: nothing is allocated
        expected = {k: list(v.shape) for k, v in TransformerNet(arch).state_dict().items()}
    found = {k: [int(d) for d in v["shape"]] for k, v in header.items() if k != "__metadata__"}
    if found != expected:
        diff = sorted(set(found) ^ set(expected)) or [k for k in expected if found[k] != expected[k]]
        raise FastNSTError(f"{path}: weights do not match the architecture in its metadata "
                           f"({arch.to_dict()}; first difference at {diff[0]!r}).")
    n_params = sum(_numel(s) for s in found.values())
    if n_params > MAX_PARAMETERS:
        raise FastNSTError(f"{path} declares {n_params:,} parameters, more than a style network has "
                           f"(at most {MAX_PARAMETERS:,}).")
    return meta, arch


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def load_style_file(path: str | os.PathLike, *, device: torch.device | str = "cpu",
                    name: str | None = None) -> StyleModel:
    """Check the file (:func:`check_style_file`), rebuild the network from its metadata and load its
    weights (float32, eval mode). ``name``: the name the style was picked by (default: the
    ``style_name`` in the file, else the file stem)."""
    import torch

    from .fileio import load_safetensors
    from .models import TransformerNet

    path = Path(path)
    meta, arch = check_style_file(path)
    try:
        state = {k: v.float() for k, v in load_safetensors(path).items()}
    except Exception as exc:  # the header was checked; a failure here is a damaged file
        raise FastNSTError(f"{path} is corrupt ({type(exc).__name__}).") from exc
    # A diverged training saves NaN/Inf weights that load fine and paint every frame black.
    broken = [k for k, v in state.items() if not torch.isfinite(v).all()]
    if broken:
        raise FastNSTError(f"{path} holds NaN or infinite weights ({len(broken)} tensor(s), first {broken[0]!r}); "
                           "the style file is damaged or comes from a training that diverged.")
    net = TransformerNet(arch)
    net.load_state_dict(state, strict=True)  # names and shapes were checked above
    return StyleModel(net.to(device).eval(), name or meta.get("style_name") or path.stem, path, meta)


# --------------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------------


def user_styles_dir() -> Path:
    """The per-user styles folder: ``$FASTNST_HOME/styles`` when FASTNST_HOME is set, else the
    platform's data folder (``$XDG_DATA_HOME`` or ``~/.local/share`` on Linux, ``~/Library/Application
    Support`` on macOS, ``%APPDATA%`` on Windows) + ``fastnst/styles``. Not created here."""
    home = os.environ.get("FASTNST_HOME")
    if home:
        return Path(home).expanduser() / "styles"
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA")
        base = Path(appdata) if appdata else Path.home() / "AppData" / "Roaming"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"  # XDG: relative → ignored
    return base / "fastnst" / "styles"


def shipped_styles_dir() -> Path | None:
    """The folder of the styles shipped with fastnst: package data ``fastnst._weights`` (mapped from
    the repository's ``weights/`` at build time, in wheel and editable installs alike), else, in a
    checkout used without installing, the ``weights/`` folder beside the package."""
    from importlib import resources

    try:
        root = resources.files("fastnst._weights")
    except ModuleNotFoundError:  # not installed: a checkout on sys.path
        root = None
    if isinstance(root, Path):  # installed packages are plain folders (no zip imports)
        return root
    checkout = Path(__file__).resolve().parent.parent / "weights"
    return checkout if checkout.is_dir() else None


def style_dirs() -> list[tuple[str, Path]]:
    """``(origin, folder)`` in lookup order: ``$FASTNST_WEIGHTS`` folders, the user's, the shipped."""
    dirs = [("env", Path(p)) for p in os.environ.get("FASTNST_WEIGHTS", "").split(os.pathsep) if p]
    dirs.append(("user", user_styles_dir()))
    shipped = shipped_styles_dir()
    if shipped is not None:
        dirs.append(("shipped", shipped))
    return dirs


def list_styles() -> dict[str, StyleEntry]:
    """Registered styles by name (the file stem, e.g. ``starry_night_fast``), sorted by name; where
    two folders hold the same name, the first in :func:`style_dirs` order wins."""
    found: dict[str, StyleEntry] = {}
    for origin, d in style_dirs():
        if d.is_dir():
            for p in sorted(d.glob(f"*{SUFFIX}")):
                if not p.name.startswith("."):  # temporary files of an install in progress
                    found.setdefault(p.stem, StyleEntry(p.stem, p, origin))
    return dict(sorted(found.items()))


def strip_preset(stem: str, preset: str) -> str:
    """``starry_night_fast`` → ``starry_night`` for preset ``fast``; other stems unchanged."""
    suffix = f"_{preset}"
    return stem[: -len(suffix)] if stem.endswith(suffix) and len(stem) > len(suffix) else stem


def family_in(metadata: dict[str, str], stem: str) -> str:
    """A style file's family: its ``family`` metadata, else its stem without ``_PRESET``."""
    return metadata.get("family") or strip_preset(stem, metadata.get("preset", "custom"))


def families() -> dict[str, dict[str, StyleEntry]]:
    """Registered styles grouped by family: ``{family: {preset: entry}}`` (headers only are read;
    an unreadable file is left out here and reported when picked by its own name)."""
    found: dict[str, dict[str, StyleEntry]] = {}
    for entry in list_styles().values():
        try:
            meta = read_metadata(entry.path)
        except FastNSTError:
            continue
        found.setdefault(family_in(meta, entry.name), {}).setdefault(meta.get("preset", "custom"), entry)
    return found


def pick_variant(variants: dict[str, StyleEntry], prefer: str) -> StyleEntry:
    """The variant ``prefer`` (a key of :data:`VARIANT_ORDER`) takes from ``{preset: entry}``."""
    order = VARIANT_ORDER[prefer]
    return min(variants.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))[1]


def family_of(name_or_path: str | os.PathLike) -> str:
    """The family a style belongs to (its metadata's ``family``, else its stem without ``_PRESET``)."""
    path = resolve_style(name_or_path)
    return family_in(read_metadata(path), path.stem)


def _is_path(name_or_path: str | os.PathLike) -> bool:
    text = os.fspath(name_or_path)
    return (Path(text).suffix == SUFFIX or Path(text).is_file() or os.sep in text
            or bool(os.altsep and os.altsep in text))


def resolve_style(name_or_path: str | os.PathLike | None, *, prefer: str = "quality") -> Path:
    """A path as given, a registered style name, or a family name whose variant ``prefer`` picks
    (``"speed"`` or ``"quality"``, :data:`VARIANT_ORDER`); ``None`` → the default shipped style."""
    if name_or_path is None:
        name_or_path = DEFAULT_STYLE
    if isinstance(name_or_path, StyleEntry):
        return name_or_path.path
    if _is_path(name_or_path):
        p = Path(name_or_path)
        if not p.is_file():
            raise FastNSTError(f"Style model {p} does not exist.")
        return p
    styles = list_styles()
    if str(name_or_path) in styles:
        return styles[str(name_or_path)].path
    variants = families().get(str(name_or_path))
    if variants:
        return pick_variant(variants, prefer).path
    known = ", ".join(styles) or "none installed"
    raise FastNSTError(f"Unknown style {str(name_or_path)!r}; known styles: {known}. Pass a .safetensors path instead.")


def load_style(name_or_path: str | os.PathLike | None = None, *, device: torch.device | str = "cpu",
               prefer: str = "quality") -> StyleModel:
    """Load a style by registered name, family name (variant by ``prefer``) or file path; a registered
    style is named by its file stem."""
    path = resolve_style(name_or_path, prefer=prefer)
    by_name = name_or_path is None or isinstance(name_or_path, StyleEntry) or not _is_path(name_or_path)
    return load_style_file(path, device=device, name=path.stem if by_name else None)


def check_style_name(name: str) -> str:
    """``name`` if it is a safe file stem for a style (letters, digits, ``_``, ``-``; 64 at most)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name.lower() in _WINDOWS_RESERVED:
        raise FastNSTError(f"Style name {name!r} is not usable: use up to 64 letters, digits, '_' or '-', "
                           "starting with a letter or digit.")
    return name


def install_target(name: str, *, force: bool = False) -> Path:
    """Where :func:`install_style` would put a style called ``name``; refuses an unsafe name, a shipped
    style's name or an existing file unless ``force`` (callers check it before long work)."""
    check_style_name(name)
    shipped = shipped_styles_dir()
    shipped_family = any(e.origin == "shipped" for e in families().get(name, {}).values())
    if not force and shipped is not None and ((shipped / f"{name}{SUFFIX}").is_file() or shipped_family):
        raise FastNSTError(f"{name!r} is the name of a shipped style; choose another name or use --force to shadow it.")
    dest = user_styles_dir() / f"{name}{SUFFIX}"
    if not force and dest.exists():
        raise FastNSTError(f"A style named {name!r} already exists ({dest}); choose another name or use --force.")
    return dest


def install_style(src_path: str | os.PathLike, name: str, *, force: bool = False) -> Path:
    """Copy the style file ``src_path`` into :func:`user_styles_dir` as ``name.safetensors``
    (atomically; its recorded ``style_name`` becomes ``name``), so ``name`` picks it from then on.

    Refuses, unless ``force``, a name a shipped style has (the copy would shadow it) or one the user
    folder already holds. Returns the installed path.
    """
    dest = install_target(name, force=force)
    src = Path(src_path)
    meta, _ = check_style_file(src)
    try:
        return rewrite_metadata(src, dest, {**meta, "style_name": name})
    except OSError as exc:
        raise FastNSTError(f"Could not write {dest}: {exc.strerror or exc}.") from exc

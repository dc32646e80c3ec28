"""Style-model files (safetensors + string metadata) and the registry of shipped styles.

A style file holds the TransformerNet weights and, in its metadata, everything needed to rebuild
the net without code from the file: ``format=fastnst-style``, ``format_version``, ``arch`` (JSON),
``preset``, ``style_name``, ``style_image``, ``train_config`` (JSON), ``fastnst_version`` and,
optionally, ``metrics`` (JSON). Loading uses safetensors, which cannot execute code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .errors import FastNSTError
from .models import Arch, TransformerNet

FORMAT = "fastnst-style"
FORMAT_VERSION = "1"
SUFFIX = ".safetensors"


@dataclass
class StyleModel:
    """A loaded style: the network (eval mode) and its metadata."""

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
) -> Path:
    """Write ``net`` to ``path`` (``.safetensors``) atomically; ``half`` stores fp16 weights."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_name(path.name + SUFFIX)
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
        "train_config": json.dumps(train_config or {}, default=str),
        "fastnst_version": __version__,
    }
    if metrics:
        meta["metrics"] = json.dumps(metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a style file; raises FastNSTError for anything else."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FastNSTError(f"Style model {path} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a bad header
        raise FastNSTError(f"{path} is not a fastnst style model (not a safetensors file).") from exc
    if meta.get("format") != FORMAT:
        raise FastNSTError(f"{path} is a safetensors file but not a fastnst style model (format={meta.get('format')!r}).")
    if meta.get("format_version") != FORMAT_VERSION:
        raise FastNSTError(f"{path} has style-file version {meta.get('format_version')}; this fastnst reads {FORMAT_VERSION}.")
    return meta


def load_style_file(path: str | os.PathLike, *, device: torch.device | str = "cpu") -> StyleModel:
    """Rebuild the network from the file's metadata and load its weights (float32, eval mode)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    net = TransformerNet(Arch.from_dict(json.loads(meta["arch"])))
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FastNSTError(f"{path}: weights do not match the architecture in its metadata.") from exc
    name = meta.get("style_name") or path.stem
    return StyleModel(net.to(device).eval(), name, path, meta)


def weights_dirs() -> list[Path]:
    """Folders searched for style names: ``$FASTNST_WEIGHTS`` (os.pathsep-separated), then the
    repository's ``weights/`` next to the package."""
    dirs = [Path(p) for p in os.environ.get("FASTNST_WEIGHTS", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parent.parent / "weights")
    return dirs


def list_styles() -> dict[str, Path]:
    """Shipped/installed styles: ``{name: path}``; the file stem is the name (``starry_night_fast``)."""
    found: dict[str, Path] = {}
    for d in weights_dirs():
        if d.is_dir():
            for p in sorted(d.glob(f"*{SUFFIX}")):
                found.setdefault(p.stem, p)
    return found


DEFAULT_STYLE = "starry_night_fast"


def resolve_style(name_or_path: str | os.PathLike | None) -> Path:
    """A path as given, or a registered style name (``None`` → the default shipped style)."""
    if name_or_path is None:
        name_or_path = DEFAULT_STYLE
    p = Path(name_or_path)
    if p.suffix == SUFFIX or p.exists() or os.sep in str(name_or_path):
        if not p.is_file():
            raise FastNSTError(f"Style model {p} does not exist.")
        return p
    styles = list_styles()
    if str(name_or_path) in styles:
        return styles[str(name_or_path)]
    known = ", ".join(sorted(styles)) or "none installed"
    raise FastNSTError(f"Unknown style {str(name_or_path)!r}; known styles: {known}. Pass a .safetensors path instead.")


def load_style(name_or_path: str | os.PathLike | None = None, *, device: torch.device | str = "cpu") -> StyleModel:
    """Load a style by registered name or file path."""
    return load_style_file(resolve_style(name_or_path), device=device)

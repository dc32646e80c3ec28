"""What a bug report needs: versions, devices and precision, the VGG cache, styles, encoders.

:func:`collect` returns plain data (JSON-serialisable); :func:`format_report` turns it into the
text ``fastnst info`` prints. Nothing here fails: a probe that cannot answer reports ``None`` or
an ``"error: …"`` string instead, because this is what users run when something is already wrong.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

# Encoders worth knowing about: the default (libx264), the other CRF codecs, hardware and audio ones.
ENCODERS = ("libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1", "mpeg4", "h264_nvenc", "hevc_nvenc",
            "h264_vaapi", "h264_videotoolbox", "aac", "libopus", "libmp3lame")


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    """Versions of fastnst, Python and the libraries it runs on (None: not installed)."""
    from . import __version__

    out: dict = {"fastnst": __version__, "python": platform.python_version(), "platform": platform.platform()}
    import numpy
    import torch

    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda
    try:
        import torchvision

        out["torchvision"] = torchvision.__version__
    except Exception as exc:  # noqa: BLE001 - a broken install is exactly what a report should show
        out["torchvision"] = f"error: {exc}"
    out["numpy"] = numpy.__version__
    out.update(_av_versions())
    try:
        import cv2

        out["opencv"] = cv2.__version__
    except Exception as exc:  # noqa: BLE001
        out["opencv"] = f"error: {exc}"
    for dist in ("onnx", "onnxruntime", "safetensors"):
        out[dist] = _dist_version(dist)
    return out


def _av_versions() -> dict:
    try:
        import av
    except Exception as exc:  # noqa: BLE001
        return {"pyav": f"error: {exc}", "ffmpeg": {}}
    libs = {name: ".".join(str(p) for p in ver) for name, ver in getattr(av, "library_versions", {}).items()}
    return {"pyav": av.__version__, "ffmpeg": libs}


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("model name", "hardware", "processor") and value.strip() \
                    and not value.strip().isdigit():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def devices() -> dict:
    """CPU facts, the precision ``--dtype auto`` picks, and every CUDA GPU's name, memory and capability."""
    import torch

    from .devices import auto_dtype, cpu_has_native_bf16, pick_device

    cpu = {
        "model": cpu_model(),
        "cores": os.cpu_count(),
        "native_bf16": cpu_has_native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "capability": _safe(lambda: torch.backends.cpu.get_cpu_capability()),
    }
    default = pick_device("auto")
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 2),
                         "compute_capability": f"{p.major}.{p.minor}", "native_bf16": p.major >= 8})
    return {"cpu": cpu, "cuda_available": torch.cuda.is_available(), "gpus": gpus,
            "default_device": str(default), "auto_dtype": str(auto_dtype(default)).replace("torch.", "")}


def _safe(fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc}"


def vgg_cache() -> dict:
    """Where VGG19 weights are looked for and whether they are there (no file is loaded)."""
    from . import vgg

    found = vgg.cached_weights_path()
    return {"cache_dir": str(vgg.cache_dir()), "weights": str(found) if found else None,
            "size_bytes": found.stat().st_size if found else None,
            "hint": None if found else "run `fastnst vgg fetch` before training or evaluating"}


def styles() -> dict:
    """Styles found (name → file and where it came from) and the folders searched, in lookup order."""
    from . import styles as st

    if hasattr(st, "style_dirs"):
        searched = [f"{origin}: {d}" for origin, d in st.style_dirs()]
    else:
        searched = [str(d) for d in st.weights_dirs()]
    found = {}
    for name, entry in st.list_styles().items():
        found[name] = {"path": str(getattr(entry, "path", entry)), "origin": getattr(entry, "origin", None)}
    return {"searched": searched, "found": found}


def encoders(names: tuple[str, ...] = ENCODERS) -> dict[str, bool]:
    """Which of ``names`` this FFmpeg build can encode with."""
    try:
        import av
    except Exception:  # noqa: BLE001
        return {}
    out = {}
    for name in names:
        try:
            av.codec.Codec(name, "w")
            out[name] = True
        except Exception:  # noqa: BLE001 - UnknownCodecError and friends
            out[name] = False
    return out


def collect() -> dict:
    """Everything above in one JSON-serialisable dict (keys: versions, devices, vgg, styles, encoders)."""
    return {"versions": versions(), "devices": devices(), "vgg": vgg_cache(), "styles": styles(),
            "encoders": encoders(), "executable": sys.executable}


def format_report(info: dict) -> str:
    """The human-readable form of :func:`collect`'s dict."""
    v, d = info["versions"], info["devices"]
    lines = [f"fastnst {v['fastnst']}  (Python {v['python']}, {v['platform']})"]
    torch_version = v["torch"] + (f" (CUDA {v['torch_cuda']})" if v.get("torch_cuda") else "")
    lines.append(f"versions: torch {torch_version}, " + ", ".join(
        f"{k} {v[k]}" for k in ("torchvision", "numpy", "pyav", "opencv", "onnxruntime") if v.get(k)))
    if v.get("ffmpeg"):
        lines.append("ffmpeg:   " + ", ".join(f"{k} {x}" for k, x in v["ffmpeg"].items()))
    c = d["cpu"]
    lines.append(f"cpu:      {c['model']}, {c['cores']} cores, torch threads {c['torch_threads']}, "
                 f"capability {c['capability']}, native bf16 {'yes' if c['native_bf16'] else 'no'}")
    for g in d["gpus"]:
        lines.append(f"gpu {g['index']}:    {g['name']}, {g['memory_gib']} GiB, compute capability "
                     f"{g['compute_capability']}, native bf16 {'yes' if g['native_bf16'] else 'no'}")
    if not d["gpus"]:
        lines.append("gpu:      none (CUDA not available)")
    lines.append(f"auto:     device {d['default_device']}, inference dtype {d['auto_dtype']}")
    g = info["vgg"]
    lines.append(f"vgg19:    {g['weights'] or 'not cached'} (cache {g['cache_dir']})"
                 + (f" — {g['hint']}" if g["hint"] else ""))
    s = info["styles"]
    if s["found"]:
        lines.append(f"styles:   {len(s['found'])} found")
        lines += [f"  {name:28s} {e['origin'] or '':8s} {e['path']}" for name, e in s["found"].items()]
    else:
        lines.append("styles:   none found")
    lines.append("searched: " + "; ".join(s["searched"]))
    enc = info["encoders"]
    lines.append("encoders (built into FFmpeg): " + ", ".join(f"{k} {'yes' if ok else 'no'}" for k, ok in enc.items()))
    return "\n".join(lines)


__all__ = ["ENCODERS", "collect", "cpu_model", "devices", "encoders", "format_report", "styles", "versions",
           "vgg_cache"]

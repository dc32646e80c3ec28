"""fastnst: real-time neural style transfer for images, video files and webcams, without flicker."""

__version__ = "0.1.0"

from .errors import FastNSTError

__all__ = ["FastNSTError", "Schedule", "Stylizer", "__version__", "load_schedule", "load_style", "stylize_video"]

# Lazy exports: ``import fastnst`` stays light (no torch/PyAV) until one of these is touched.
_LAZY = {"Stylizer": "pipeline", "stylize_video": "pipeline", "load_style": "styles", "Schedule": "timeline",
         "load_schedule": "timeline"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastnst' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

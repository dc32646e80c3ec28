"""fastnst: real-time neural style transfer for images, video files and webcams, without flicker."""

__version__ = "0.1.0"

from .errors import FastNSTError  # noqa: E402

__all__ = ["FastNSTError", "__version__"]

"""Training fastnst style networks: ``python -m train …`` or ``fastnst train …``.

``main(argv)`` is the command line; :func:`fastnst.training.loop.train` runs a :class:`TrainConfig`. The
heavy modules (torch, the loop) are imported on first use so that building ``fastnst``'s parser
stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import TrainConfig, build_parser, parse_config

__all__ = ["TrainConfig", "build_parser", "main", "parse_config", "train"]


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m train") -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), train, return the exit code (2 on user errors)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in args:  # your own painting in minutes: its own options (fastnst.training.quick)
        from .quick import main as _quick

        return _quick(args, prog=prog)
    from .loop import main as _main

    return _main(args, prog=prog)


def train(cfg: TrainConfig, **kwargs):
    """Run a training described by ``cfg``; see :func:`fastnst.training.loop.train`."""
    from .loop import train as _train

    return _train(cfg, **kwargs)

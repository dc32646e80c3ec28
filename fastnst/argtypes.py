"""Argument types and the help formatter shared by every command-line parser.

They live below ``cli.py`` so that parsers built elsewhere (the trainer's, generated from its
config dataclass) need not import the command line itself: nothing below ``cli.py`` imports it.
Only the standard library is imported here, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, but not ``None``/``False`` ones nor where the help already states the default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def floats(text: str) -> list[float]:
    """``0.7,0.3`` → ``[0.7, 0.3]``."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def parse_layer_weights(text: str) -> dict[str, float]:
    """``relu1_1,relu2_1`` or ``relu1_1:0.5,relu2_1:1`` → {layer: weight}."""
    out: dict[str, float] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, _, w = item.partition(":")
        try:
            out[name.strip()] = float(w) if w else 1.0
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad layer weight {item!r}; use NAME or NAME:WEIGHT") from exc
    if not out:
        raise argparse.ArgumentTypeError("no layers given")
    return out

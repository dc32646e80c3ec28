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
        # nargs == 0: a switch (store_true/store_false), whose default says nothing a user needs
        if (action.default in (None, False, "") or action.nargs == 0 or action.required
                or "(default" in (action.help or "")):
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


def positive_float(text: str) -> float:
    """A number above 0."""
    try:
        v = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def unit_float(text: str) -> float:
    """A number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {text}")
    return value


def work_size(text: str) -> int:
    """``--work-size``: pixels (at least :data:`fastnst.options.MIN_WORK_SIZE`), or 0/``full``."""
    from .options import MIN_WORK_SIZE  # imported here: fastnst.options imports this module

    if text.strip().lower() in ("full", "0"):
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels or 'full', not {text!r}") from None
    if value < MIN_WORK_SIZE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_WORK_SIZE} px (or 0/'full'), not {value}")
    return value


def seconds(text: str) -> float:
    """``12.5``, ``1:05`` or ``0:01:05.5`` → seconds."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected seconds or [HH:]MM:SS, got {text!r}") from exc
    if len(parts) > 3 or any(p < 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected seconds or [HH:]MM:SS, got {text!r}")
    total = 0.0
    for p in parts:
        total = total * 60 + p
    return total


def camera(text: str) -> int | str:
    """A camera index (digits) or a file/URL."""
    return int(text) if text.isdigit() else text

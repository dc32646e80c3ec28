"""Styles over time: parse ``--style NAME[@TIME]`` / blends / schedule files, and give the per-frame
mixture of styles and strength.

A :class:`Schedule` is a list of entries (style mix, start time, transition length, strength). Each
change of style is a transition of ``T`` seconds centred on its start time; inside it the outgoing
and incoming mixes (and strengths) are interpolated, outside it one entry holds. The engine runs
the network of every style with a non-zero weight and combines the outputs with :func:`blend`
(output cross-fade), then :func:`fastnst.color.apply_strength`.

Method -- **output cross-fade** (run both networks inside a transition, mix their outputs): in
pixel space it is the straight path from style A's frame to style B's at constant speed, so it adds
the least possible per-frame change, ``mean|A−B| / (T·fps)``; any other path (interpolated network
parameters, conditional instance norm) covers at least that distance in the same frames. Measured on
bikes.mp4 (320 px, ``benchmarks/transitions.py``): interpolating the shipped nets' parameters travels
1.6× the direct distance, with a jump in the middle, and its midpoint shows colour fringes that
neither style has (the shipped nets share only their seed-0 random initialisation, not a trained
parent). A mid-transition cross-fade frame has one geometry (both nets see the same frame, so no
doubled edges) with both textures at partial contrast and averaged colours.

Curve -- **linear**, chosen by measurement. Linear's steepest slope is 1, smoothstep's (``3x²−2x³``)
1.5. On bikes.mp4 (4 changes between the shipped styles, 0.5/1/1.5 s) the largest frame-to-frame
change inside a window over the steady mean beside it was lower with linear in 9 of 12 cases and
within 0.01 in the other 3 (e.g.
1.5 s: 1.84/2.35/1.29/1.91 against 1.83/2.44/1.36/2.04; the input's own motion gives 1.3-3.2 on the
same windows). Smoothstep only wins where a window ends on near-still frames, whose small steady
change makes any fade stand out. What matters far more is the length: two shipped styles differ
by 56-76 levels per pixel, so a 1 s fade adds ~2.5 levels per frame -- lost in a moving shot
(steady 8-12 levels: ≤1.05× the pure styles' own change on the same frames) but ~2× a still
shot's 1-3 levels (1.8-2.7× there); 2-3 s bring still shots to 1.2-2.1×. ``Schedule(curve="smoothstep")`` remains.

Times are seconds on the video's own clock (``DecodedFrame.time``).
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import FastNSTError

#: ``((style name, weight), ...)``: weights > 0, summing to 1, names distinct, in the order given.
StyleMix = tuple[tuple[str, float], ...]

# seconds: enough for moving shots at any style pair; still shots between far-apart styles want 2-3 s
DEFAULT_TRANSITION = 1.5


def linear(x: float) -> float:
    """Identity on [0,1]: constant speed, the smallest largest step."""
    return x


def smoothstep(x: float) -> float:
    """``3x² − 2x³``: zero slope at both ends, slope 1.5 in the middle."""
    return x * x * (3.0 - 2.0 * x)


CURVES: dict[str, Callable[[float], float]] = {"linear": linear, "smoothstep": smoothstep}

# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+(\.\d*)?|\.\d+")


def parse_time(value: str | float) -> float:
    """``"4"``, ``"8.5"``, ``"1:30"`` (MM:SS), ``"01:02:03.5"`` (HH:MM:SS) or a number → seconds ≥ 0.

    Minutes and seconds after a colon must be below 60. Raises :class:`FastNSTError` for negative,
    non-finite or malformed times.
    """
    if isinstance(value, bool):
        raise FastNSTError(f"Invalid time {value!r}: use seconds (8.5) or [HH:]MM:SS (1:30).")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise FastNSTError(f"Invalid time {value!r}: times must be finite seconds.")
        if value < 0:
            raise FastNSTError(f"Time {value:g} s is negative; times count from the start of the video.")
        return float(value)
    text = str(value).strip()
    if text.startswith("-"):
        raise FastNSTError(f"Time {text!r} is negative; times count from the start of the video.")
    parts = text.split(":")
    if not text or len(parts) > 3 or not all(_NUMBER.fullmatch(p) for p in parts):
        raise FastNSTError(f"Invalid time {text!r}: use seconds (8.5) or [HH:]MM:SS (1:30, 01:02:03.5).")
    if any("." in p for p in parts[:-1]):
        raise FastNSTError(f"Invalid time {text!r}: in [HH:]MM:SS only the seconds may have a fraction.")
    if any(float(p) >= 60 for p in parts[1:]):
        raise FastNSTError(f"Invalid time {text!r}: minutes and seconds after a colon must be below 60.")
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + float(p)
    return seconds


def make_mix(pairs: Iterable[tuple[str, float]]) -> StyleMix:
    """Normalise ``(name, weight)`` pairs to a :data:`StyleMix`: weights finite and ≥ 0 with a positive
    sum, names not repeated; zero weights are dropped."""
    pairs = list(pairs)
    names = [n for n, _ in pairs]
    for n in names:
        if not n:
            raise FastNSTError("A style name in a blend is empty.")
        if names.count(n) > 1:
            raise FastNSTError(f"Style {n!r} appears twice in one blend; give it one weight.")
    for n, w in pairs:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise FastNSTError(f"Blend weight {w!r} of style {n!r} must be a number zero or above.")
    total = sum(w for _, w in pairs)
    if not pairs or total <= 0:
        raise FastNSTError("A style blend needs at least one style with a weight above zero.")
    return tuple((n, w / total) for n, w in pairs if w > 0)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith(".safetensors")


def parse_mix(text: str) -> StyleMix:
    """``"name"`` or ``"a:0.6,b:0.4"`` (every part weighted, or none: equal weights) → :data:`StyleMix`.

    A name may be a style file path (``C:\\styles\\x.safetensors`` keeps its drive colon).
    """
    text = text.strip()
    parts = [p.strip() for p in text.split(",")]
    pairs: list[tuple[str, float | None]] = []
    for p in parts:
        name, sep, weight = p.rpartition(":")
        if sep and _NUMBER.fullmatch(weight.strip()) and name.strip():
            pairs.append((name.strip(), float(weight)))
        elif sep and len(parts) > 1 and not _looks_like_path(p):
            raise FastNSTError(f"Invalid blend weight in {p!r}: write name:weight, e.g. starry_night_fast:0.6.")
        else:
            pairs.append((p, None))
    given = [w is not None for _, w in pairs]
    if any(given) and not all(given):
        raise FastNSTError(f"Blend {text!r}: give every style a weight (a:0.6,b:0.4) or none (equal weights).")
    return make_mix((n, 1.0 if w is None else w) for n, w in pairs)


def parse_style_spec(spec: str) -> tuple[StyleMix, float | None]:
    """``"name"``, ``"name@4"``, ``"name@1:30"``, ``"a:0.6,b:0.4"``, ``"a:0.6,b:0.4@4"`` → (mix, start).

    ``start`` is None when no ``@TIME`` is given. The time follows the last ``@``, unless what
    follows it looks like a path (then the whole spec is a file name).
    """
    text = spec.strip()
    if not text:
        raise FastNSTError("Empty --style value; give a style name, a blend a:0.6,b:0.4, or NAME@TIME.")
    head, sep, tail = text.rpartition("@")
    if sep and not _looks_like_path(tail):
        if not head.strip():
            raise FastNSTError(f"--style {spec!r} has a time but no style before the @.")
        return parse_mix(head), parse_time(tail)
    return parse_mix(text), None


def format_mix(mix: StyleMix | Mapping[str, float]) -> str:
    """``"a:0.6,b:0.4"`` (or ``"a"`` for a single style): the inverse of :func:`parse_mix`."""
    items = list(mix.items()) if isinstance(mix, Mapping) else list(mix)
    if len(items) == 1:
        return items[0][0]
    return ",".join(f"{n}:{w:.3g}" for n, w in items)


# --------------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One style segment: ``mix`` from ``start`` seconds, reached by a ``transition`` of that many
    seconds centred on ``start`` (ignored for the first entry); ``strength`` in [0,1]."""

    mix: StyleMix
    start: float
    transition: float = DEFAULT_TRANSITION
    strength: float = 1.0


@dataclass(frozen=True)
class Mix:
    """What to render at one instant: ``weights`` ``{style name: weight}`` (all > 0, sum 1) and the
    ``strength`` in [0,1] to apply to the blended output."""

    weights: dict[str, float]
    strength: float = 1.0

    @property
    def styles(self) -> list[str]:
        return list(self.weights)


def lerp_mix(a: Mix, b: Mix, alpha: float) -> Mix:
    """``(1 − alpha)·a + alpha·b`` for weights and strength; weights renormalised, zeros dropped."""
    weights: dict[str, float] = {}
    for mix, f in ((a, 1.0 - alpha), (b, alpha)):
        for n, w in mix.weights.items():
            weights[n] = weights.get(n, 0.0) + f * w
    total = sum(weights.values())
    return Mix({n: w / total for n, w in weights.items() if w > 1e-12},
               (1.0 - alpha) * a.strength + alpha * b.strength)


def _fmt_t(t: float) -> str:
    return f"{t:g} s"


@dataclass(frozen=True)
class Schedule:
    """Validated entries in time order; :meth:`at` gives the mixture at a time.

    Rules (each broken one is a :class:`FastNSTError` naming the culprit): at least one entry; the
    first starts at 0; starts strictly increase; transitions ≥ 0 and strengths in [0,1]; two
    transitions' windows ``[start − T/2, start + T/2]`` may touch but not overlap.
    """

    entries: tuple[Entry, ...]
    curve: str = "linear"
    _windows: tuple[tuple[float, float], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        if self.curve not in CURVES:
            raise FastNSTError(f"Unknown transition curve {self.curve!r}; choose {' or '.join(CURVES)}.")
        self._validate()
        # (window start, window end) of the change into entry i, for i >= 1
        object.__setattr__(self, "_windows", tuple((e.start - e.transition / 2, e.start + e.transition / 2)
                                                   for e in self.entries[1:]))

    def _validate(self) -> None:
        es = self.entries
        if not es:
            raise FastNSTError("A style schedule needs at least one style.")
        for e in es:
            name = format_mix(e.mix)
            if not (math.isfinite(e.start) and e.start >= 0):
                raise FastNSTError(f"Style {name!r} starts at {e.start:g} s; times must be finite numbers, zero or "
                                   "positive.")
            if not (math.isfinite(e.transition) and e.transition >= 0):
                raise FastNSTError(f"The transition into {name!r} is {e.transition:g} s; it must be a finite number of "
                                   "seconds, zero or positive.")
            if not 0.0 <= e.strength <= 1.0:
                raise FastNSTError(f"The strength of {name!r} is {e.strength:g}; it must be between 0 and 1.")
        if es[0].start != 0:
            raise FastNSTError(f"The first style ({format_mix(es[0].mix)!r}) must start at 0 s (or have no time), "
                               f"not at {_fmt_t(es[0].start)}.")
        for a, b in itertools.pairwise(es):
            if b.start <= a.start:
                raise FastNSTError(f"Style changes must be in increasing time order: {format_mix(b.mix)!r} at "
                                   f"{_fmt_t(b.start)} follows {format_mix(a.mix)!r} at {_fmt_t(a.start)}.")
        for a, b in itertools.pairwise(es[1:]):
            if a.start + a.transition / 2 > b.start - b.transition / 2 + 1e-9:
                raise FastNSTError(
                    f"The transitions at {_fmt_t(a.start)} ({a.transition:g} s) and {_fmt_t(b.start)} "
                    f"({b.transition:g} s) overlap; each is centred on its time, so shorten them or move "
                    "the changes apart.")

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_cli(cls, style_args: Sequence[str] | None, transition: float = DEFAULT_TRANSITION,
                 strength: float = 1.0, *, curve: str = "linear") -> Schedule:
        """From repeated ``--style`` values (``NAME``, ``NAME@TIME``, blends); every style after the
        first needs ``@TIME``. No values → the default shipped style alone."""
        if not style_args:
            from .styles import DEFAULT_STYLE

            style_args = [DEFAULT_STYLE]
        entries = []
        for i, spec in enumerate(style_args):
            mix, start = parse_style_spec(spec)
            if start is None and i > 0:
                raise FastNSTError(f"--style {spec!r} needs a start time (e.g. {spec}@4) because it is not the "
                                   "first style.")
            entries.append(Entry(mix, 0.0 if start is None else start, float(transition), float(strength)))
        return cls(tuple(entries), curve=curve)

    @classmethod
    def single(cls, mix: StyleMix | str, strength: float = 1.0) -> Schedule:
        """One style (or blend) for the whole video."""
        return cls((Entry(parse_mix(mix) if isinstance(mix, str) else make_mix(mix), 0.0, 0.0, float(strength)),))

    # -- queries -----------------------------------------------------------------------------------

    def styles(self) -> list[str]:
        """The distinct style names (or paths) in order of first appearance."""
        seen: dict[str, None] = {}
        for e in self.entries:
            for n, _ in e.mix:
                seen.setdefault(n)
        return list(seen)

    def check_duration(self, seconds: float | None) -> None:
        """Raise if a style starts at or after the end of a video ``seconds`` long (None: unknown, no check)."""
        if seconds is None:
            return
        for e in self.entries[1:]:
            if e.start >= seconds:
                raise FastNSTError(f"Style {format_mix(e.mix)!r} starts at {_fmt_t(e.start)}, past the end of the "
                                   f"{seconds:g} s video.")

    def at(self, t: float) -> Mix:
        """The mixture at ``t`` seconds (any real ``t``; before 0 is the first entry)."""
        es = self.entries
        # index of the last change whose window has begun (window starts increase: windows don't overlap)
        i = bisect.bisect_right(self._windows, (t, math.inf))
        if i == 0:
            return Mix(dict(es[0].mix), es[0].strength)
        lo, hi = self._windows[i - 1]
        new = es[i]
        if t >= hi or hi <= lo:
            return Mix(dict(new.mix), new.strength)
        old = es[i - 1]
        a = CURVES[self.curve]((t - lo) / (hi - lo))
        return lerp_mix(Mix(dict(old.mix), old.strength), Mix(dict(new.mix), new.strength), a)

    def transitions(self) -> list[tuple[float, float]]:
        """``(start, end)`` seconds of every transition window (zero-length for hard cuts)."""
        return list(self._windows)


# --------------------------------------------------------------------------------------------------
# Schedule files
# --------------------------------------------------------------------------------------------------

_TOP_KEYS = ("styles", "transition", "strength", "curve")
_ENTRY_KEYS = ("style", "start", "transition", "strength")


def _read_table(path: Path) -> object:
    if not path.is_file():
        raise FastNSTError(f"Schedule file {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FastNSTError(f"Cannot read schedule file {path} as UTF-8 text ({exc}).") from exc
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise FastNSTError(f"Schedule file {path} is not valid JSON ({exc.msg} at line {exc.lineno}, "
                               f"column {exc.colno}).") from exc
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FastNSTError(f"Schedule file {path} is not valid TOML ({exc}).") from exc
    raise FastNSTError(f"Schedule file {path} must end in .json or .toml.")


def _number(value: object, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FastNSTError(f"{where}: {what} must be a number, not {value!r}.")
    return float(value)


def _entry_mix(style: object, where: str) -> tuple[StyleMix, float | None]:
    if isinstance(style, str):
        return parse_style_spec(style)
    if isinstance(style, Mapping) and style:
        return make_mix((str(k), _number(v, f"the weight of {k!r}", where)) for k, v in style.items()), None
    raise FastNSTError(f"{where}: 'style' must be a name, a blend string or a table of name = weight, not {style!r}.")


def _entry(raw: object, index: int, path: Path, transition: float, strength: float) -> Entry:
    where = f"{path.name}, entry {index + 1}"
    if not isinstance(raw, Mapping):
        raise FastNSTError(f"{where} must be a table with a 'style' key, not {raw!r}.")
    unknown = [k for k in raw if k not in _ENTRY_KEYS]
    if unknown:
        raise FastNSTError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {', '.join(_ENTRY_KEYS)}.")
    if "style" not in raw:
        raise FastNSTError(f"{where} has no 'style'.")
    mix, spec_start = _entry_mix(raw["style"], where)
    if spec_start is not None and "start" in raw:
        raise FastNSTError(f"{where} gives its start twice (in 'style' after @ and in 'start'); keep one.")
    start = spec_start if "start" not in raw else parse_time(raw["start"])
    if start is None:
        if index > 0:
            raise FastNSTError(f"{where} needs a 'start' time because it is not the first entry.")
        start = 0.0
    t = _number(raw.get("transition", transition), "'transition'", where)
    s = _number(raw.get("strength", strength), "'strength'", where)
    return Entry(mix, start, t, s)


def load_schedule(path: str | os.PathLike, *, transition: float = DEFAULT_TRANSITION,
                  strength: float = 1.0) -> Schedule:
    """Read a schedule from a ``.json`` or ``.toml`` file.

    Layout (TOML; JSON the same as an object, or a bare list of entries)::

        transition = 1.5            # optional default for entries, else the ``transition`` argument
        strength = 1.0              # optional default for entries, else the ``strength`` argument
        curve = "linear"            # optional: linear | smoothstep
        [[styles]]
        style = "starry_night_fast"                          # name, path, blend "a:0.6,b:0.4", ...
        [[styles]]
        style = { cafe_terrace_fast = 0.7, night_cafe_fast = 0.3 }   # ... or a table name = weight
        start = "0:04"                                       # seconds or [HH:]MM:SS
        transition = 2
        strength = 0.8

    Precedence: an entry's own value, then the file's top level, then the arguments.
    """
    path = Path(path)
    data = _read_table(path)
    if isinstance(data, list):
        data = {"styles": data}
    if not isinstance(data, Mapping):
        raise FastNSTError(f"Schedule file {path} must hold a table with a 'styles' list.")
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise FastNSTError(f"Schedule file {path}: unknown key {unknown[0]!r}; allowed keys are "
                           f"{', '.join(_TOP_KEYS)}.")
    entries = data.get("styles")
    if not isinstance(entries, list) or not entries:
        raise FastNSTError(f"Schedule file {path} needs a non-empty 'styles' list.")
    where = f"Schedule file {path}"
    transition = _number(data.get("transition", transition), "'transition'", where)
    strength = _number(data.get("strength", strength), "'strength'", where)
    curve = data.get("curve", "linear")
    if not isinstance(curve, str):
        raise FastNSTError(f"{where}: 'curve' must be linear or smoothstep, not {curve!r}.")
    return Schedule(tuple(_entry(raw, i, path, transition, strength) for i, raw in enumerate(entries)), curve=curve)


# --------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------


def stack_mixes(mixes: Sequence[Mix]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-frame mixes of one batch → ``({name: (B,) weights}, (B,) strengths)``, fp32 on the CPU.

    Every style any frame uses gets a row (zeros where a frame does not use it), so one forward per
    style covers the batch; pass the result to :func:`blend` and ``apply_strength``.
    """
    names: dict[str, None] = {}
    for m in mixes:
        for n in m.weights:
            names.setdefault(n)
    weights = {n: torch.tensor([m.weights.get(n, 0.0) for m in mixes], dtype=torch.float32) for n in names}
    return weights, torch.tensor([m.strength for m in mixes], dtype=torch.float32)


def blend(outputs: Mapping[str, torch.Tensor], weights: Mapping[str, float | torch.Tensor]) -> torch.Tensor:
    """Weighted sum of the stylized outputs of the same frames (output cross-fade).

    ``outputs``: ``{style: (B,3,H,W)}`` in ``[0,1]``, all the same shape; ``weights``: ``{style: w}``
    with ``w`` a float or a ``(B,)`` tensor (one weight per frame), summing to 1 per frame; styles in
    ``outputs`` without a weight are ignored. Computed in fp32, returned in the first output's dtype
    on its device, in ``[0,1]``. A single style at weight 1 is returned as is (no copy).
    """
    used = [(n, w) for n, w in weights.items() if not (isinstance(w, (int, float)) and w == 0)]
    if not used:
        raise ValueError("blend needs at least one non-zero weight")
    missing = [n for n, _ in used if n not in outputs]
    if missing:
        raise KeyError(f"no stylized output for {missing}")
    first = outputs[used[0][0]]
    if len(used) == 1 and isinstance(used[0][1], (int, float)) and used[0][1] == 1:
        return first
    acc = torch.zeros(first.shape, dtype=torch.float32, device=first.device)
    for n, w in used:
        out = outputs[n]
        if out.shape != first.shape:
            raise ValueError(f"output of {n!r} has shape {tuple(out.shape)}, expected {tuple(first.shape)}")
        if isinstance(w, torch.Tensor):
            w = w.to(first.device, torch.float32).reshape(-1, 1, 1, 1)
        acc.add_(out.to(first.device, torch.float32) * w)
    return acc.clamp_(0, 1).to(first.dtype)


class Fader:
    """Live cross-fades for the webcam: :meth:`set` a new target mix, :meth:`at` gives the mixture at
    a clock time, moving linearly from wherever it was to the target over ``duration`` seconds (a
    key pressed mid-fade starts from the current blend, so nothing jumps)."""

    def __init__(self, mix: StyleMix | Mapping[str, float], strength: float = 1.0, *, duration: float = 0.5) -> None:
        if not (math.isfinite(duration) and duration >= 0):
            raise FastNSTError(f"The cross-fade duration must be zero or positive, got {duration}.")
        self.duration = duration
        self._from = self._to = Mix(dict(mix), strength)
        self._t0 = -math.inf

    def set(self, now: float, mix: StyleMix | Mapping[str, float] | None = None,
            strength: float | None = None) -> None:
        """Start fading at clock time ``now`` to ``mix`` and/or ``strength`` (None keeps the target's)."""
        if strength is not None and not 0.0 <= strength <= 1.0:
            raise FastNSTError(f"Strength must be between 0 and 1, got {strength}.")
        current = self.at(now)
        target = self._to
        self._from = current
        self._to = Mix(dict(mix) if mix is not None else dict(target.weights),
                       target.strength if strength is None else float(strength))
        self._t0 = now

    def at(self, now: float) -> Mix:
        """The mixture at clock time ``now`` (seconds, same clock as :meth:`set`)."""
        if self.duration == 0 or now >= self._t0 + self.duration:
            return self._to
        return lerp_mix(self._from, self._to, max(0.0, (now - self._t0) / self.duration))

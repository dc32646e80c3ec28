"""Style timeline: time and spec parsing, schedule validation and files, per-frame mixes, blending;
the errors a schedule raises on the command line."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from fastnst import cli
from fastnst.errors import FastNSTError
from fastnst.styles import DEFAULT_STYLE
from fastnst.timeline import (
    Entry,
    Fader,
    Mix,
    Schedule,
    blend,
    load_schedule,
    make_mix,
    parse_style_spec,
    parse_time,
    stack_mixes,
)

from .conftest import make_video


@pytest.mark.parametrize("text, seconds", [("4", 4.0), ("8.5", 8.5), (".5", 0.5), ("1:30", 90.0),
                                           ("01:02:03.5", 3723.5), ("0:00", 0.0), (" 2 ", 2.0), (7, 7.0)])
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text, message", [("-4", "negative"), (-1.0, "negative"), ("abc", "Invalid time"),
                                           ("", "Invalid time"), ("1::2", "Invalid time"), ("1:2:3:4", "Invalid time"),
                                           ("1:75", "below 60"), ("1.5:30", "fraction"), ("nan", "Invalid time"),
                                           (float("inf"), "finite"), (True, "Invalid time")])
def test_parse_time_rejects(text, message):
    with pytest.raises(FastNSTError, match=message):
        parse_time(text)


@pytest.mark.parametrize("spec, mix, start", [
    ("starry", (("starry", 1.0),), None),
    ("starry@4", (("starry", 1.0),), 4.0),
    ("starry@1:30", (("starry", 1.0),), 90.0),
    ("a:0.6,b:0.4", (("a", 0.6), ("b", 0.4)), None),
    ("a:3,b:1@4", (("a", 0.75), ("b", 0.25)), 4.0),
    ("a,b", (("a", 0.5), ("b", 0.5)), None),
    ("a:1,b:0", (("a", 1.0),), None),
    ("/styles/x@2/m.safetensors", (("/styles/x@2/m.safetensors", 1.0),), None),
    ("/styles/m.safetensors@5", (("/styles/m.safetensors", 1.0),), 5.0),
])
def test_parse_style_spec(spec, mix, start):
    got_mix, got_start = parse_style_spec(spec)
    assert got_start == start
    assert [n for n, _ in got_mix] == [n for n, _ in mix]
    assert [w for _, w in got_mix] == pytest.approx([w for _, w in mix])


@pytest.mark.parametrize("spec, message", [("", "Empty"), ("@4", "no style"), ("a@x", "Invalid time"),
                                           ("a@-3", "negative"), ("a:0.6,b", "every style a weight"),
                                           ("a:x,b:1", "name:weight"), ("a:0,b:0", "above zero"),
                                           ("a:1,a:2", "twice")])
def test_parse_style_spec_rejects(spec, message):
    with pytest.raises(FastNSTError, match=message):
        parse_style_spec(spec)


def _cli(*styles, transition=1.0, strength=1.0):
    return Schedule.from_cli(list(styles), transition, strength)


def test_from_cli_and_styles():
    s = _cli("a", "b@4", "c:0.5,a:0.5@8.5", transition=1.5)
    assert [e.start for e in s.entries] == [0.0, 4.0, 8.5]
    assert s.styles() == ["a", "b", "c"]
    assert s.transitions() == [(3.25, 4.75), (7.75, 9.25)]
    assert Schedule.from_cli([]).styles() == [DEFAULT_STYLE]


@pytest.mark.parametrize("styles, kwargs, message", [
    (["a@2"], {}, "must start at 0"),
    (["a", "b"], {}, "needs a start time"),
    (["a", "b@4", "c@3"], {}, "increasing time order"),
    (["a", "b@4", "c@4"], {}, "increasing time order"),
    (["a", "b@4", "c@5"], {"transition": 1.5}, "4 s .* and 5 s .* overlap"),
    (["a", "b@4"], {"transition": -1}, "zero or positive"),
    (["a", "b@4"], {"strength": 1.2}, "between 0 and 1"),
])
def test_schedule_validation(styles, kwargs, message):
    with pytest.raises(FastNSTError, match=message):
        _cli(*styles, **kwargs)


def test_touching_transitions_are_allowed():
    s = _cli("a", "b@4", "c@5", transition=1.0)  # windows [3.5,4.5] and [4.5,5.5] touch
    assert s.at(4.5).weights == {"b": 1.0}


def test_check_duration():
    s = _cli("a", "b@4", "c@8.5")
    s.check_duration(10)
    s.check_duration(None)
    with pytest.raises(FastNSTError, match="8.5 s, past the end of the 8 s video"):
        s.check_duration(8)


def test_at_steady_and_across_a_linear_transition():
    s = _cli("a", "b@4", transition=2.0, strength=1.0)
    assert s.at(0).weights == {"a": 1.0}
    assert s.at(2.99).weights == {"a": 1.0}
    assert s.at(3.5).weights == pytest.approx({"a": 0.75, "b": 0.25})
    assert s.at(4.0).weights == pytest.approx({"a": 0.5, "b": 0.5})
    assert s.at(5.0).weights == {"b": 1.0}
    assert s.at(100).weights == {"b": 1.0}
    # the step between frames at 25 fps is constant inside the window: 1/(T*fps)
    ws = [s.at(3 + i / 25).weights.get("b", 0.0) for i in range(51)]
    steps = [b - a for a, b in itertools.pairwise(ws)]
    assert max(steps) == pytest.approx(1 / 50) and min(steps) == pytest.approx(1 / 50)


def test_smoothstep_eases_ends_and_is_steeper_in_the_middle():
    s = Schedule(_cli("a", "b@4", transition=2.0).entries, curve="smoothstep")
    w = [s.at(3 + i / 25).weights.get("b", 0.0) for i in range(51)]
    steps = [b - a for a, b in itertools.pairwise(w)]
    assert steps[0] < 0.002 and max(steps) == pytest.approx(1.5 / 50, rel=0.01)
    assert s.at(4.0).weights == pytest.approx({"a": 0.5, "b": 0.5})


def test_hard_cut_and_strength_and_blend_interpolation():
    entries = (Entry(make_mix([("a", 1)]), 0.0, 0.0, 1.0),
               Entry(make_mix([("a", 0.5), ("c", 0.5)]), 2.0, 2.0, 0.5),
               Entry(make_mix([("d", 1)]), 6.0, 0.0, 0.2))
    s = Schedule(entries)
    mid = s.at(2.0)  # half way from a to a:0.5,c:0.5
    assert mid.weights == pytest.approx({"a": 0.75, "c": 0.25})
    assert mid.strength == pytest.approx(0.75)
    assert sum(mid.weights.values()) == pytest.approx(1.0)
    assert s.at(5.999).weights == pytest.approx({"a": 0.5, "c": 0.5})
    assert s.at(6.0) == Mix({"d": 1.0}, 0.2)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_schedule_toml_and_json(tmp_path):
    toml = _write(tmp_path, "s.toml", """
transition = 2
[[styles]]
style = "a"
[[styles]]
style = { b = 3, c = 1 }
start = "0:04"
strength = 0.5
[[styles]]
style = "d@9"
transition = 0
""")
    s = load_schedule(toml)
    assert [e.start for e in s.entries] == [0, 4, 9]
    assert [e.transition for e in s.entries] == [2, 2, 0]
    assert s.entries[1].mix == (("b", 0.75), ("c", 0.25))
    assert s.entries[1].strength == 0.5 and s.entries[2].strength == 1.0
    js = _write(tmp_path, "s.json", json.dumps([{"style": "a"}, {"style": "b:0.6,c:0.4", "start": 4.5}]))
    s = load_schedule(js, transition=0.5, strength=0.8)
    assert s.styles() == ["a", "b", "c"] and s.entries[1].transition == 0.5 and s.entries[1].strength == 0.8


@pytest.mark.parametrize("name, text, message", [
    ("s.json", '{"styles": [{"style": "a"},', "not valid JSON"),
    ("s.toml", "styles = [", "not valid TOML"),
    ("s.yaml", "styles: []", "must end in .json or .toml"),
    ("s.json", '{"styles": []}', "non-empty 'styles'"),
    ("s.json", '{"styles": [{"style": "a"}], "fps": 3}', "unknown key 'fps'"),
    ("s.json", '{"styles": [{"style": "a", "speed": 2}]}', "entry 1: unknown key 'speed'"),
    ("s.json", '{"styles": [{"start": 0}]}', "no 'style'"),
    ("s.json", '{"styles": [{"style": "a"}, {"style": "b"}]}', "needs a 'start'"),
    ("s.json", '{"styles": [{"style": "a"}, {"style": "b", "start": -2}]}', "negative"),
    ("s.json", '{"styles": [{"style": "a"}, {"style": "b@3", "start": 3}]}', "start twice"),
    ("s.json", '{"styles": [{"style": "a"}, {"style": "b", "start": 3, "transition": "x"}]}', "must be a number"),
    ("s.json", '{"styles": [{"style": "a"}, {"style": "b", "start": 3}, {"style": "c", "start": 3.5}]}', "overlap"),
    ("s.json", '{"styles": [{"style": 5}]}', "'style' must be"),
    ("s.json", '"a"', "must hold a table"),
])
def test_load_schedule_errors(tmp_path, name, text, message):
    with pytest.raises(FastNSTError, match=message):
        load_schedule(_write(tmp_path, name, text))


def test_load_schedule_missing_file(tmp_path):
    with pytest.raises(FastNSTError, match="does not exist"):
        load_schedule(tmp_path / "none.toml")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_blend(dtype):
    a, b = torch.rand(2, 3, 4, 5).to(dtype), torch.rand(2, 3, 4, 5).to(dtype)
    out = blend({"a": a, "b": b, "unused": torch.zeros(1)}, {"a": 0.25, "b": 0.75})
    assert out.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 4e-3
    assert (out.float() - (0.25 * a.float() + 0.75 * b.float())).abs().max() <= tol
    assert blend({"a": a}, {"a": 1.0}) is a
    per_frame = blend({"a": a, "b": b}, {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0, 1.0])})
    assert torch.equal(per_frame[0], a[0]) and torch.equal(per_frame[1], b[1])
    with pytest.raises(KeyError):
        blend({"a": a}, {"a": 0.5, "b": 0.5})


def test_stack_mixes_feeds_blend():
    s = _cli("a", "b@1", transition=1.0)
    mixes = [s.at(t) for t in (0.0, 1.0, 2.0)]
    weights, strength = stack_mixes(mixes)
    assert list(weights) == ["a", "b"]
    assert weights["a"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert strength.tolist() == [1.0, 1.0, 1.0]
    a, b = torch.zeros(3, 3, 2, 2), torch.ones(3, 3, 2, 2)
    assert blend({"a": a, "b": b}, weights)[:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_fader_crossfades_and_restarts_from_current_mix():
    f = Fader({"a": 1.0}, duration=0.5)
    assert f.at(0.0) == Mix({"a": 1.0}, 1.0)
    f.set(10.0, {"b": 1.0})
    assert f.at(10.25).weights == pytest.approx({"a": 0.5, "b": 0.5})
    f.set(10.25, {"c": 1.0}, strength=0.0)  # a key mid-fade: continue from a:0.5,b:0.5
    assert f.at(10.25).weights == pytest.approx({"a": 0.5, "b": 0.5})
    half = f.at(10.5)
    assert half.weights == pytest.approx({"a": 0.25, "b": 0.25, "c": 0.5}) and half.strength == pytest.approx(0.5)
    assert f.at(11.0) == Mix({"c": 1.0}, 0.0)
    with pytest.raises(FastNSTError, match="between 0 and 1"):
        f.set(12.0, strength=2.0)


# --------------------------------------------------------------------------------------------------
# On the command line: one sentence, exit 2, nothing written
# --------------------------------------------------------------------------------------------------


def test_cli_default_transition_matches_the_library() -> None:
    from fastnst.timeline import DEFAULT_TRANSITION

    assert cli.DEFAULT_TRANSITION == DEFAULT_TRANSITION


@pytest.fixture(scope="module")
def two_seconds(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "in.mp4", w=32, h=24, n=20, fps=10)  # 2 s


@pytest.mark.parametrize("case, message", [
    ("overlap", "overlap"),
    ("unknown", "Unknown style"),
    ("past_end", "past the end"),
    ("negative", "negative"),
    ("malformed_json", "not valid JSON"),
    ("malformed_toml", "not valid TOML"),
    ("bad_entry", "needs a 'start'"),
    ("schedule_and_style", "not both"),
    ("first_not_at_zero", "must start at 0"),
])
def test_cli_schedule_errors(tmp_path: Path, flats, two_seconds: Path, capsys, case: str, message: str) -> None:
    a, b = str(flats[0]), str(flats[1])
    args = {
        "overlap": ["--style", a, "--style", f"{b}@0.8", "--style", f"{a}@1.4", "--transition", "1"],
        "unknown": ["--style", a, "--style", "no_such_style@1"],
        "past_end": ["--style", a, "--style", f"{b}@0:05"],
        "negative": ["--style", a, "--style", f"{b}@-1"],
        "malformed_json": ["--schedule", str(_write(tmp_path, "broken.json", '{"styles": ['))],
        "malformed_toml": ["--schedule", str(_write(tmp_path, "bad.toml", "styles = [["))],
        "bad_entry": ["--schedule", str(_write(tmp_path, "no_start.json", json.dumps([{"style": a}, {"style": b}])))],
        "schedule_and_style": ["--style", a, "--schedule", str(_write(tmp_path, "good.json", json.dumps([{"style": a}])))],
        "first_not_at_zero": ["--style", f"{a}@1"],
    }[case]
    out = tmp_path / "out" / "result.mp4"
    rc = cli.main(["stylize", str(two_seconds), "-o", str(out), "-q", "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("fastnst: error: ") and err.count("\n") == 1 and message in err
    assert not out.exists() and not out.parent.exists()

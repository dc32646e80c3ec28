"""Command-line argument types and the help formatter (fastnst.argtypes): what each accepts and refuses."""

from __future__ import annotations

import argparse

import pytest

from fastnst.argtypes import (
    HelpFormatter,
    camera,
    floats,
    parse_layer_weights,
    positive_float,
    seconds,
    unit_float,
    work_size,
)
from fastnst.options import MIN_WORK_SIZE


@pytest.mark.parametrize("parse, text, value", [
    (floats, "0.7,0.3", [0.7, 0.3]),
    (floats, "1,, 2,", [1.0, 2.0]),
    (parse_layer_weights, "relu1_1,relu2_1", {"relu1_1": 1.0, "relu2_1": 1.0}),
    (parse_layer_weights, " relu1_1:0.5 , relu4_2:2e-1", {"relu1_1": 0.5, "relu4_2": 0.2}),
    (positive_float, "0.5", 0.5),
    (positive_float, "1e3", 1000.0),
    (unit_float, "0", 0.0),
    (unit_float, "1", 1.0),
    (unit_float, "0.25", 0.25),
    (work_size, "full", 0),
    (work_size, " FULL ", 0),
    (work_size, "0", 0),
    (work_size, str(MIN_WORK_SIZE), MIN_WORK_SIZE),
    (work_size, "512", 512),
    (seconds, "12.5", 12.5),
    (seconds, "1:05", 65.0),
    (seconds, "0:01:05.5", 65.5),
    (camera, "0", 0),
    (camera, "12", 12),
    (camera, "clip.mp4", "clip.mp4"),
    (camera, "rtsp://host/stream", "rtsp://host/stream"),
    (camera, "-1", "-1"),  # not digits: a file name, as OpenCV would take it
])
def test_accepted(parse, text: str, value) -> None:
    assert parse(text) == value


@pytest.mark.parametrize("parse, text, message", [
    (floats, "0.7,x", "comma-separated numbers"),
    (parse_layer_weights, "relu1_1:heavy", "bad layer weight 'relu1_1:heavy'"),
    (parse_layer_weights, " , ", "no layers given"),
    (positive_float, "0", "positive"),
    (positive_float, "-2", "positive"),
    (positive_float, "fast", "expected a number"),
    (unit_float, "1.5", "from 0 to 1"),
    (unit_float, "-0.1", "from 0 to 1"),
    (unit_float, "nan", "from 0 to 1"),
    (unit_float, "half", "number from 0 to 1"),
    (work_size, str(MIN_WORK_SIZE - 1), f"at least {MIN_WORK_SIZE} px"),
    (work_size, "12.5", "whole number"),
    (work_size, "-64", f"at least {MIN_WORK_SIZE} px"),
    (seconds, "1:2:3:4", "[HH:]MM:SS"),
    (seconds, "-5", "[HH:]MM:SS"),
    (seconds, "1:-5", "[HH:]MM:SS"),
    (seconds, "soon", "[HH:]MM:SS"),
])
def test_refused(parse, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert message in str(info.value)


def test_a_refusal_reaches_the_user_as_the_parsers_error(capsys) -> None:
    parser = argparse.ArgumentParser(prog="fastnst")
    parser.add_argument("--strength", type=unit_float)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--strength", "2"])
    assert exit_.value.code == 2
    assert "argument --strength: must be from 0 to 1, not 2" in capsys.readouterr().err


def test_help_formatter_shows_only_defaults_worth_reading() -> None:
    parser = argparse.ArgumentParser(prog="p", formatter_class=HelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="working size")
    parser.add_argument("--style", default=None, help="style name")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--fast", action="store_false", dest="slow", help="skip checks")
    parser.add_argument("--fade", type=float, default=0.5, help="cross-fade (default: half a second)")
    text = " ".join(parser.format_help().split())
    assert "working size (default: 256)" in text
    assert "style name (default" not in text and "no progress bar (default" not in text
    assert "skip checks (default" not in text
    assert text.count("(default") == 2 and "(default: half a second)" in text


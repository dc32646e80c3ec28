"""The option dataclasses and the command line generated from them (fastnst.options)."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from fastnst import cli
from fastnst.argtypes import HelpFormatter
from fastnst.options import (
    DEFAULT_STABILIZE,
    DEFAULT_UPSAMPLER,
    EngineOptions,
    EvalOptions,
    GatysConfig,
    GatysOptions,
    ModelOptions,
    StylizeOptions,
    VideoOptions,
    WebcamOptions,
    _h,
    add_options,
    apply_settings,
    field_names,
    from_args,
    with_settings,
)

# The least each command needs on its command line (required arguments), and what they set.
MINIMAL = {
    "stylize": (StylizeOptions, ["in.mp4", "-o", "out.mp4"], {"input": "in.mp4", "output": "out.mp4"}),
    "webcam": (WebcamOptions, [], {}),
    "eval": (EvalOptions, ["in.mp4", "--style", "s.png"], {"input": "in.mp4", "style": "s.png"}),
    "gatys": (GatysOptions, ["c.png", "s.png", "-o", "o.png"], {"content": "c.png", "styles": ["s.png"],
                                                                 "output": "o.png"}),
}


def _subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest != "help"}


@pytest.mark.parametrize("command", sorted(MINIMAL))
def test_the_cli_defaults_are_the_dataclass_defaults(command: str) -> None:
    cls, argv, given = MINIMAL[command]
    args = cli.build_parser().parse_args([command, *argv])
    assert from_args(cls, args) == with_settings(cls(), given, "test")
    # every field is an option of the command, and nothing else is (func aside)
    assert set(field_names(cls)) == set(vars(args)) - {"command", "func"}


@pytest.mark.parametrize("command", sorted(MINIMAL))
def test_every_option_has_help_and_a_unique_name(command: str) -> None:
    cls = MINIMAL[command][0]
    names = field_names(cls)
    assert len(names) == len(set(names))  # flat destinations: a nested field may not shadow another
    for action in _actions(_subparser(command)).values():
        assert action.help and len(action.help) > 5, action.dest


def test_a_default_changed_in_the_dataclass_changes_the_cli() -> None:
    codec_meta = VideoOptions.__dataclass_fields__["codec"].metadata

    @dataclasses.dataclass
    class Tweaked(VideoOptions):
        codec: str = dataclasses.field(default="libx265", metadata=codec_meta)

    parser = add_options(argparse.ArgumentParser(formatter_class=HelpFormatter), Tweaked)
    assert parser.parse_args([]).codec == "libx265" and parser.parse_args(["--codec", "mpeg4"]).codec == "mpeg4"
    assert re.search(r"--codec CODEC\s+video encoder: .* \(default: libx265\)", " ".join(parser.format_help().split()))
    # an instance's values are defaults too: the webcam's engine is the shared one with max_size 640
    assert _actions(_subparser("webcam"))["max_size"].default == WebcamOptions().engine.max_size == 640
    assert _actions(_subparser("stylize"))["max_size"].default is None


def test_shared_options_are_declared_once() -> None:
    engine = {f.name: f for f in dataclasses.fields(EngineOptions)}
    top = {cls: {f.name: f for f in dataclasses.fields(cls)} for cls in (StylizeOptions, WebcamOptions, EvalOptions)}
    assert not set(field_names(EngineOptions)) & (set(top[StylizeOptions]) | set(top[WebcamOptions]))
    assert set(field_names(EngineOptions)) & set(top[EvalOptions]) == {"device", "max_size"}
    for name in ("device", "max_size"):  # eval uses the same declarations (_DEVICE, _MAX_SIZE)
        assert top[EvalOptions][name].metadata == engine[name].metadata
        assert top[EvalOptions][name].default == engine[name].default
    stylize, webcam, evaluate = (_actions(_subparser(c)) for c in ("stylize", "webcam", "eval"))
    for name in field_names(EngineOptions):
        a, b = stylize[name], webcam[name]
        assert (a.option_strings, a.help, a.type, a.choices) == (b.option_strings, b.help, b.type, b.choices)
    for name in field_names(ModelOptions):  # eval --model shares them, its help says so
        assert evaluate[name].help == "with --model: " + stylize[name].help
        assert evaluate[name].type is stylize[name].type
    assert not {"dtype", "upsampler", "threads"} & set(evaluate)  # evaluate_video has no such settings
    for command in ("stylize", "webcam", "eval", "gatys"):
        assert _actions(_subparser(command))["device"].help == stylize["device"].help


def test_flags_and_messages_a_user_knows() -> None:
    p = cli.build_parser()
    a = p.parse_args(["stylize", "x.png", "-o", "y.png", "--upsample", "joint", "--work-size", "full",
                      "--stabilize", "0", "--start", "1:05", "--style", "a", "--style", "b@4"])
    o = from_args(StylizeOptions, a)
    assert o.engine.upsampler == "joint" and o.engine.work_size == 0 and o.engine.stabilize == 0.0
    assert o.video.start == 65.0 and o.style == ["a", "b@4"]
    w = from_args(WebcamOptions, p.parse_args(["webcam", "--no-window", "--camera", "2", "--max-frames", "3"]))
    assert w.show is False and w.camera == 2 and w.max_frames == 3
    g = from_args(GatysOptions, p.parse_args(["gatys", "c", "s1", "s2", "-o", "o", "--style-weights", "0.7,0.3",
                                              "--content-layers", "relu4_2", "--pool", "avg", "-q"]))
    assert g.config == dataclasses.replace(GatysConfig(), style_blend=[0.7, 0.3], content_layers={"relu4_2": 1.0},
                                           pool="avg")
    assert g.styles == ["s1", "s2"] and g.quiet
    webcam_help = _subparser("webcam").format_help()
    assert "--no-window" in webcam_help and "(default: True)" not in webcam_help
    assert f"(default {DEFAULT_STABILIZE:g}: nearly whole where trusted; 0: off)" in " ".join(
        _subparser("stylize").format_help().split())


@pytest.mark.parametrize("argv, message", [
    (["stylize", "x", "-o", "y", "--work-size", "5"], "must be at least 32 px"),
    (["stylize", "x", "-o", "y", "--stabilize", "2"], "must be from 0 to 1"),
    (["stylize", "x", "-o", "y", "--scale", "0"], "expected a positive number"),
    (["stylize", "x", "-o", "y", "--start", "a:b"], "expected seconds or [HH:]MM:SS"),
    (["eval", "x"], "the following arguments are required: --style"),
    (["gatys", "c", "s", "-o", "o", "--style-layers", "relu1_1:x"], "bad layer weight"),
])
def test_bad_values_are_refused_by_the_parser(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@dataclasses.dataclass
class _TrainerStyle:
    paths: list[str] = dataclasses.field(default_factory=list, metadata=_h("inputs", required=True, metavar="P"))
    layers: dict[str, float] = dataclasses.field(default_factory=lambda: {"relu1_1": 1.0, "relu2_1": 0.5},
                                                 metadata=_h("taps"))
    half: bool = dataclasses.field(default=False, metadata=_h("store fp16 weights"))
    steps: int = dataclasses.field(default=0, metadata=_h("optimizer steps"))
    threads: int = dataclasses.field(default=2, metadata=_h("CPU threads (0 = torch's default)"))
    name: str = dataclasses.field(default="", metadata=_h("run name"))


def test_negatable_switches_lists_layer_weights_and_defaults_in_the_help(capsys) -> None:
    # the trainer's command line (fastnst.training.config): --x/--no-x, defaults stated, a recipe's defaults
    parser = add_options(argparse.ArgumentParser(), _TrainerStyle, negatable=True, show_defaults=True)
    args = parser.parse_args(["--paths", "a", "b", "--layers", "relu3_1:2,relu4_1", "--half", "--steps", "5"])
    assert from_args(_TrainerStyle, args) == _TrainerStyle(["a", "b"], {"relu3_1": 2.0, "relu4_1": 1.0}, True, 5)
    assert parser.parse_args(["--paths", "a", "--no-half"]).half is False
    text = " ".join(parser.format_help().split())
    assert "--half, --no-half store fp16 weights -" in text and "taps (default: relu1_1:1,relu2_1:0.5)" in text
    assert "optimizer steps (default: 0)" in text and text.endswith("run name")
    assert "(0 = torch's default) -" in text  # a help text that states its default keeps it
    with pytest.raises(SystemExit):
        parser.parse_args([])
    assert "the following arguments are required: --paths" in capsys.readouterr().err
    given = add_options(argparse.ArgumentParser(), _TrainerStyle, {"paths": ["x"], "steps": 7},
                        show_defaults=True)
    assert from_args(_TrainerStyle, given.parse_args([])) == _TrainerStyle(["x"], steps=7)
    assert "optimizer steps (default: 7)" in " ".join(given.format_help().split())
    with pytest.raises(SystemExit):  # not negatable: a --half switch only
        given.parse_args(["--no-half"])
    with pytest.raises(TypeError, match="bogus"):
        add_options(argparse.ArgumentParser(), _TrainerStyle, {"bogus": 1})
    force = _actions(_subparser("stylize"))["force"]  # the fastnst commands keep their switches
    assert force.option_strings == ["--force"] and force.nargs == 0


def test_library_settings_by_field_name() -> None:
    engine, left = apply_settings(EngineOptions(), {"work_size": 64, "dtype": "fp32", "crf": 20})
    assert engine.model == ModelOptions(work_size=64) and engine.work_size == 64 and engine.dtype == "fp32"
    assert left == {"crf": 20} and EngineOptions().upsampler == DEFAULT_UPSAMPLER
    with pytest.raises(TypeError, match="'bogus'"):
        with_settings(VideoOptions(), {"bogus": 1}, "stylize_video")
    assert EngineOptions().model is not EngineOptions().model  # no instance shares another's parts

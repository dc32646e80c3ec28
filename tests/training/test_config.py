"""The trainer's configuration (fastnst/training/config.py): the parser built from TrainConfig, recipes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from fastnst.styles import load_style
from fastnst.stylizer import style_work_size
from fastnst.training.config import GATYS_STYLE_LAYERS, TrainConfig, build_parser, parse_config, read_recipe

from .conftest import REPO


def test_parser_is_built_from_the_dataclass():
    parser = build_parser()
    dests = {a.dest for a in parser._actions}
    assert {f.name for f in fields(TrainConfig)} <= dests
    cfg = parse_config(["--content", "a", "b", "--style", "s.png"])
    defaults = TrainConfig(content=["a", "b"], style=["s.png"])
    assert cfg == defaults
    assert cfg.style_layers == GATYS_STYLE_LAYERS and cfg.content_layers == {"relu2_2": 1.0}
    cfg = parse_config(["--content", "a", "--style", "s.png", "--style-layers", "relu1_1:2,relu2_1",
                        "--no-progress", "--temporal-weight", "0", "--image-size", "64", "--amp", "off"])
    assert cfg.style_layers == {"relu1_1": 2.0, "relu2_1": 1.0}
    assert cfg.progress is False and cfg.temporal_weight == 0.0 and cfg.image_size == 64 and cfg.amp == "off"
    assert TrainConfig.from_dict({**cfg.to_dict(), "unknown_later_field": 1}) == cfg
    with pytest.raises(SystemExit):
        parse_config(["--content", "a", "--style", "s.png", "--style-layers", "relu1_1:x"])


def test_the_trainers_command_line_states_defaults_and_takes_a_recipes(capsys):
    text = " ".join(build_parser().format_help().split())
    assert "--half, --no-half store the final model's weights as fp16 (half the file size) --" in text
    assert "(default: relu2_2:1)" in text and "training crop size, px (square) (default: 256)" in text
    assert "initialisation (default: 0)" in text  # --seed's 0 is stated...
    assert "shared with other jobs --workers" in text  # ...but not --threads', whose help states it
    with pytest.raises(SystemExit):
        parse_config([])
    # --style is checked by the trainer instead: a --teacher run (distillation) has none
    assert "error: the following arguments are required: --content\n" in capsys.readouterr().err
    recipe = read_recipe(REPO / "train" / "recipes" / "starry_night.toml")
    text = " ".join(build_parser(defaults=recipe).format_help().split())
    assert "[--content DIR [DIR ...]] [--style IMAGE [IMAGE ...]]" in text  # the recipe gives them
    assert f"training crop size, px (square) (default: {recipe['image_size']})" in text
    with pytest.raises(SystemExit):
        parse_config(["--recipe", str(REPO / "train" / "recipes" / "starry_night.toml"), "--half=1"])
    assert "argument --half/--no-half: ignored explicit argument '1'" in capsys.readouterr().err


def test_help_from_python_m_train_and_fastnst_train(capsys):
    proc = subprocess.run([sys.executable, "-m", "train", "--help"], check=False, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "--temporal-weight" in proc.stdout and "--resume" in proc.stdout
    from fastnst import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastnst train") and "--content" in out


RECIPES = sorted((REPO / "train" / "recipes").glob("*.toml"))
REPRODUCED = ("preset", "image_size", "batch_size", "steps", "lr", "content_weight", "style_weight", "tv_weight",
              "temporal_weight", "content_layers", "style_layers", "style_size", "perceptual_both", "crop_min", "seed",
              "half", "flow_shift", "flow_zoom", "flow_rotate", "flow_local", "frame_noise", "frame_brightness")


def _shipped_stem(recipe: Path) -> str:
    """A perceptual recipe ``NAME.toml`` makes ``NAME_fast``; a distillation recipe ``NAME_lite.toml`` makes
    ``NAME_lite`` (the CPU twin of ``NAME_fast``); ``NAME_video.toml`` makes ``NAME_video`` (the video
    network fine-tuned from ``NAME_lite``)."""
    return recipe.stem if recipe.stem.endswith(("_lite", "_video")) else f"{recipe.stem}_fast"


def test_there_is_a_recipe_for_every_shipped_style():
    shipped = {p.stem for p in (REPO / "weights").glob("*.safetensors")}
    assert {_shipped_stem(p) for p in RECIPES} == shipped


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_parses_into_a_valid_config_reproducing_its_shipped_style(recipe):
    from fastnst.training.loop import parse_arch, run_paths

    cfg = parse_config(["--recipe", str(recipe)])
    assert isinstance(cfg, TrainConfig) and cfg.recipe == str(recipe)
    arch, preset = parse_arch(cfg)
    _, out_dir, output = run_paths(cfg, preset)
    assert output.stem == _shipped_stem(recipe) and output.parent == out_dir  # never into weights/
    shipped = load_style(REPO / "weights" / f"{output.stem}.safetensors")
    assert shipped.net.arch == arch
    reproduced = [*REPRODUCED, "teacher", "texture_weight", "steadiness_weight", "empty_prior", "unroll",
                  "unroll_after", "occluders", "prior_jitter", "prior_erode", "prior_motion", "temporal_target"]
    recorded = {k: shipped.train_config.get(k, TrainConfig().to_dict()[k]) for k in reproduced}
    # the teacher as the run named it: a style name, or the file (recorded by its name only) of that style
    recorded["teacher"] = recorded["teacher"].removesuffix(".safetensors")
    assert {k: cfg.to_dict()[k] for k in reproduced} == recorded
    if cfg.teacher:  # a twin paints its teacher's painting at its teacher's working size
        teacher = load_style(cfg.teacher)
        assert shipped.metadata["style_image"] == teacher.metadata["style_image"]
        assert shipped.work_size == style_work_size(teacher.metadata, teacher.train_config)
        assert shipped.family == teacher.family == recipe.stem.removesuffix("_lite")
    else:
        assert [Path(p).name for p in cfg.style] == shipped.metadata["style_image"].split(",")
        assert Path(cfg.style[0]).parent.parent == Path(cfg.data_root)
    data = Path(cfg.data_root)
    assert Path(cfg.content[0]) == data / "photos"
    assert data == REPO.parent / "shared" / "data"  # the example data beside the checkout, found from the file
    assert "/work" not in recipe.read_text() and str(REPO) not in recipe.read_text()  # no machine paths
    if data.is_dir():  # the example data beside the checkout, when present
        assert all(Path(p).is_file() for p in cfg.style) and Path(cfg.content[0]).is_dir()


STAGES = sorted((REPO / "train" / "recipes" / "stages").glob("*.toml"))


def _lands_at(recipe: Path) -> Path:
    """Where a recipe's model lands (relative to the folder the command runs in)."""
    from fastnst.training.loop import parse_arch, run_paths

    cfg = parse_config(["--recipe", str(recipe)])
    return run_paths(cfg, parse_arch(cfg)[1])[2]


def test_the_stages_before_a_shipped_style_are_recipes_that_hand_on_to_each_other():
    """A shipped style fine-tuned from an earlier stage names that stage's model as its ``init``; each
    such model is what a recipe in stages/ makes, and a distillation there is taught by another stage."""
    made_by = {_lands_at(stage): stage for stage in STAGES}
    assert len(made_by) == len(STAGES)  # no two stages write one file
    used = set()
    for recipe in RECIPES:
        init = parse_config(["--recipe", str(recipe)]).init
        if not init:
            continue
        init = Path(init)
        assert init in made_by, f"{recipe.name} starts from {init}, which no recipe in stages/ makes"
        assert _lands_at(recipe) not in made_by
        teacher = parse_config(["--recipe", str(made_by[init])]).teacher
        if teacher:
            assert Path(teacher) in made_by, f"{made_by[init].name} is taught by {teacher}, which no stage makes"
        used |= {init, Path(teacher)} if teacher else {init}
    assert used  # today every shipped style is a stage-3 fine-tune
    assert used == set(made_by)  # and every stage is on a shipped style's chain


def test_recipe_values_are_overridden_by_explicit_options_and_paths_follow_the_data_root(tmp_path, monkeypatch):
    recipe = tmp_path / "r" / "mine.toml"
    recipe.parent.mkdir()
    recipe.write_text('content = "photos"\nstyle = ["styles/a.png", "/abs/b.png"]\nsteps = 7\nlr = 1\n'
                      'style_layers = "relu1_1:2,relu2_1"\ncontent_layers = { relu3_1 = 0.5 }\nhalf = true\n'
                      'init = "runs/x/checkpoint.pt"\n')
    monkeypatch.chdir(tmp_path)
    cfg = parse_config(["--recipe", str(recipe)])
    assert cfg.content == [str(recipe.parent / "photos")] and cfg.style == [str(recipe.parent / "styles/a.png"),
                                                                             "/abs/b.png"]
    assert cfg.steps == 7 and cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.half is True
    assert cfg.style_layers == {"relu1_1": 2.0, "relu2_1": 1.0} and cfg.content_layers == {"relu3_1": 0.5}
    assert cfg.init == "runs/x/checkpoint.pt"  # not data: relative to the current folder, as on the command line
    assert cfg.image_size == TrainConfig.image_size  # not in the recipe: the default
    cfg = parse_config(["--recipe", str(recipe), "--steps", "9", "--no-half", "--style", "s.png", "--data-root", "d"])
    assert cfg.steps == 9 and cfg.half is False and cfg.style == ["s.png"] and cfg.content == ["d/photos"]


def test_bad_recipes_are_refused_in_one_line(tmp_path, capsys):
    import fastnst.training as train

    cases = {
        'steps = 10\nstyle_wieght = 3\n': "unknown setting(s) style_wieght",
        'steps = "ten"\n': "steps must be an integer",
        'amp = "fp8"\n': "amp must be one of auto, bf16, fp16, off",
        'half = 1\n': "half must be true or false",
        'recipe = "other.toml"\n': "unknown setting(s) recipe",
        'steps = \n': "not valid TOML",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.toml"
        path.write_text(text)
        assert train.main(["--recipe", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert train.main(["--recipe", str(tmp_path / "none.toml")]) == 2
    assert "cannot be read" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", sorted((REPO / "train" / "recipes" / "experimental").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_experimental_recipes_parse_and_start_from_a_shipped_network(recipe):
    """Recipes of networks not shipped (train/recipes/experimental) still parse, and their --init names a
    shipped style of the shape they fine-tune."""
    from fastnst.models import PRESETS
    from fastnst.training.loop import parse_arch

    cfg = parse_config(["--recipe", str(recipe)])
    arch, _ = parse_arch(cfg)
    assert [Path(p).name for p in cfg.content] == ["photos"] and len(cfg.style) == 1
    base = load_style(REPO / cfg.init).net.arch
    assert arch == PRESETS["video_plain"] and base == PRESETS["lite"]

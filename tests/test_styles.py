"""Style-model files: round trip with metadata, fp16 storage, the registry (shipped, user, env), installing
styles, and refusing hostile or damaged files before anything is built."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch

from fastnst import __version__
from fastnst.errors import FastNSTError
from fastnst.fileio import leftovers
from fastnst.models import PRESETS, Arch, TransformerNet
from fastnst.styles import (
    DEFAULT_STYLE,
    FORMAT,
    check_style_file,
    families,
    family_of,
    install_style,
    list_styles,
    load_style,
    read_metadata,
    resolve_style,
    rewrite_metadata,
    save_style,
    user_styles_dir,
)

# tiny networks on a shared 2-core CPU: one thread is several times faster than two
pytestmark = pytest.mark.usefixtures("one_thread")


def _net(seed: int = 0) -> TransformerNet:
    torch.manual_seed(seed)
    return TransformerNet(Arch((4, 8, 8), 1)).eval()


def test_round_trip_rebuilds_net_and_metadata(tmp_path):
    net = _net()
    cfg = {"steps": 7, "style_layers": {"relu1_2": 1.0}}
    path = save_style(tmp_path / "wave", net, style_name="wave", style_image="wave.jpg", preset="custom",
                      train_config=cfg, metrics={"e_warp": 0.01})
    assert path.name == "wave.safetensors" and path.is_file()
    assert leftovers(tmp_path) == []
    model = load_style(path)
    assert model.name == "wave" and model.preset == "custom"
    assert model.train_config == cfg and model.metrics == {"e_warp": 0.01}
    assert model.metadata["format"] == FORMAT and model.metadata["fastnst_version"] == __version__
    assert json.loads(model.metadata["arch"]) == {"widths": [4, 8, 8], "n_residual": 1}
    assert not model.net.training
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        assert torch.equal(model.net(x), net(x))


def test_half_storage_is_smaller_and_close(tmp_path):
    net = _net(1)
    full = save_style(tmp_path / "a.safetensors", net, style_name="a")
    half = save_style(tmp_path / "b.safetensors", net, style_name="b", half=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    model = load_style(half)
    assert all(p.dtype == torch.float32 for p in model.net.parameters())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (model.net(x) - net(x)).abs().max() < 2e-2


def test_unwraps_compiled_and_ddp_style_wrappers(tmp_path):
    net = _net(2)

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    path = save_style(tmp_path / "w.safetensors", Wrapper(net), style_name="w")
    assert set(load_style(path).net.state_dict()) == set(net.state_dict())


def test_registry_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNST_WEIGHTS", str(tmp_path))
    save_style(tmp_path / "mosaic_fast.safetensors", _net(), style_name="mosaic", preset="fast")
    entry = list_styles()["mosaic_fast"]
    assert entry.path == tmp_path / "mosaic_fast.safetensors" and entry.origin == "env"
    assert resolve_style("mosaic_fast") == tmp_path / "mosaic_fast.safetensors"
    assert load_style("mosaic_fast").name == "mosaic_fast"  # the name it is picked by, not the recorded one
    with pytest.raises(FastNSTError, match="Unknown style"):
        resolve_style("nope_fast")


def test_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(FastNSTError, match="not a fastnst style model"):
        load_style(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"definitely not safetensors")
    with pytest.raises(FastNSTError, match="not a fastnst style model"):
        read_metadata(junk)
    with pytest.raises(FastNSTError, match="does not exist"):
        load_style(tmp_path / "missing.safetensors")


def test_rejects_weights_that_do_not_fit_the_metadata(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_style(tmp_path / "s.safetensors", _net(), style_name="s")
    meta = read_metadata(path)
    tensors = load_file(str(path))
    meta["arch"] = json.dumps({"widths": [4, 8, 16], "n_residual": 1})
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(FastNSTError, match="do not match"):
        load_style(path)


# --------------------------------------------------------------------------------------------------
# work size, recorded paths
# --------------------------------------------------------------------------------------------------


def test_work_size_is_recorded_and_optional(tmp_path):
    with_size = save_style(tmp_path / "a", _net(), style_name="a", work_size=512)
    without = save_style(tmp_path / "b", _net(), style_name="b")
    assert read_metadata(with_size)["work_size"] == "512" and load_style(with_size).work_size == 512
    assert "work_size" not in read_metadata(without) and load_style(without).work_size is None
    for bad in (0, -3, 1.5, "512"):
        with pytest.raises(FastNSTError, match="work_size"):
            save_style(tmp_path / "c", _net(), style_name="c", work_size=bad)
    assert not (tmp_path / "c.safetensors").exists()


def test_a_bad_recorded_work_size_is_refused(tmp_path):
    path = save_style(tmp_path / "s", _net(), style_name="s")
    rewrite_metadata(path, path, {**read_metadata(path), "work_size": "huge"})
    with pytest.raises(FastNSTError, match="work_size"):
        load_style(path)


def test_absolute_paths_in_the_training_config_are_recorded_as_file_names(tmp_path):
    cfg = {"content": ["/data/photos/", "coco"], "style": ["C:\\Users\\me\\art\\wave.jpg"],
           "init": "~/models/base.safetensors", "out_dir": "runs/wave", "steps": 3, "nested": {"v": "/a/b.mp4"}}
    stored = load_style(save_style(tmp_path / "w", _net(), style_name="w", train_config=cfg)).train_config
    assert stored == {"content": ["photos", "coco"], "style": ["wave.jpg"], "init": "base.safetensors",
                      "out_dir": "runs/wave", "steps": 3, "nested": {"v": "b.mp4"}}


def _absolute_paths(value) -> list[str]:
    if isinstance(value, dict):
        return [p for v in value.values() for p in _absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _absolute_paths(v)]
    return [value] if isinstance(value, str) and (value.startswith(("/", "~", "\\")) or value[1:3] in (":\\", ":/")) else []


SHIPPED = "starry_night_fast"  # a shipped style file; DEFAULT_STYLE is its family


def test_shipped_styles_are_named_by_their_file_and_record_no_machine_paths():
    shipped = {n: e for n, e in list_styles().items() if e.origin == "shipped"}
    assert SHIPPED in shipped and len(shipped) >= 4
    for name, entry in shipped.items():
        meta, arch = check_style_file(entry.path)
        assert meta["style_name"] == name and entry.path.stem == name
        cfg = json.loads(meta["train_config"])
        assert cfg and not _absolute_paths(cfg), (name, _absolute_paths(cfg))
        assert meta["preset"] in PRESETS and arch == PRESETS[meta["preset"]]
    assert load_style(SHIPPED).name == SHIPPED
    assert DEFAULT_STYLE in families() and DEFAULT_STYLE not in shipped


def test_a_family_name_picks_a_variant_by_preference_and_a_file_stem_picks_that_file(tmp_path, monkeypatch):
    env = tmp_path / "env"
    save_style(env / "wave_fast", _net(1), style_name="wave_fast", preset="fast")
    save_style(env / "wave_lite", _net(2), style_name="wave_lite", preset="lite", family="wave")
    save_style(env / "wave_big", _net(3), style_name="wave_big", preset="quality", family="wave")
    monkeypatch.setenv("FASTNST_WEIGHTS", str(env))
    assert set(families()["wave"]) == {"fast", "lite", "quality"}
    assert resolve_style("wave", prefer="speed") == env / "wave_lite.safetensors"
    assert resolve_style("wave", prefer="quality") == env / "wave_big.safetensors"
    assert resolve_style("wave_fast", prefer="speed") == env / "wave_fast.safetensors"  # a stem is exact
    assert family_of("wave_big") == family_of("wave_fast") == "wave"
    assert load_style("wave", prefer="speed").name == "wave_lite"
    with pytest.raises(FastNSTError, match="shipped style"):  # a shipped family name is not taken either
        install_style(env / "wave_fast.safetensors", DEFAULT_STYLE)


# --------------------------------------------------------------------------------------------------
# hostile files: refused in one sentence, before anything is built or unpickled
# --------------------------------------------------------------------------------------------------


def _one_sentence(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.endswith("."), msg
    return msg


class _Payload:
    """Unpickling this creates ``marker``: proof that code in the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_files_with_a_payload_are_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Payload(marker))
    pickle.loads(data)  # the payload is real ...
    assert marker.exists()
    marker.unlink()
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(data)
    evil_zip = tmp_path / "evil_torch.safetensors"  # torch.save's zip container, same payload
    torch.save(_Payload(marker), evil_zip)
    for path in (evil, evil_zip):
        with pytest.raises(FastNSTError, match="not a fastnst style model") as exc:
            load_style(path)
        _one_sentence(exc)
        with pytest.raises(FastNSTError):
            install_style(path, "evil")
    assert not marker.exists()  # ... and loading never ran it
    assert not user_styles_dir().exists() or not list(user_styles_dir().iterdir())


@pytest.mark.parametrize("damage", ["empty", "garbage", "text", "header_cut", "weights_cut", "bad_json"])
def test_damaged_files_are_refused_in_one_sentence(tmp_path, damage):
    good = save_style(tmp_path / "good", _net(), style_name="good").read_bytes()
    n = struct.unpack("<Q", good[:8])[0]
    content = {
        "empty": b"",
        "garbage": bytes(range(256)) * 4,
        "text": b"hello, this is not a model\n",
        "header_cut": good[: 8 + n // 2],
        "weights_cut": good[:-100],
        "bad_json": good[:8] + b"{" + b"x" * (n - 1) + good[8 + n:],
    }[damage]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(FastNSTError) as exc:
        load_style(path)
    msg = _one_sentence(exc)
    assert str(path) in msg
    if damage.endswith("_cut"):
        assert "truncated" in msg


def _tamper_arch(path: Path, arch: dict) -> None:
    rewrite_metadata(path, path, {**read_metadata(path), "arch": json.dumps(arch)})


class _BuildRecorder:
    """Stands in for TransformerNet in fastnst.models: records the device each net is built on."""

    def __init__(self, monkeypatch):
        from fastnst import models

        self.devices: list[str] = []
        real = models.TransformerNet
        recorder = self

        class Recording(real):
            def __init__(self, *args, **kwargs):
                recorder.devices.append(torch.empty(0).device.type)
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(models, "TransformerNet", Recording)


@pytest.mark.parametrize("arch, match", [
    ({"widths": [40000, 40000, 40000], "n_residual": 3}, "implausible"),
    ({"widths": [16, 32, 64], "n_residual": 100000}, "implausible"),
    ({"widths": [0, 8, 8], "n_residual": 1}, "implausible"),
    ({"widths": [1024, 1024, 1024], "n_residual": 64}, "do not match"),  # in bounds, but not these tensors
    ({"widths": [4, 8], "n_residual": 1}, "unreadable network"),
    ("not json", "unreadable network"),
])
def test_declared_architecture_is_checked_against_the_header_before_building(tmp_path, monkeypatch, arch, match):
    path = save_style(tmp_path / "s", _net(), style_name="s")
    if isinstance(arch, str):
        rewrite_metadata(path, path, {**read_metadata(path), "arch": arch})
    else:
        _tamper_arch(path, arch)
    built = _BuildRecorder(monkeypatch)
    with pytest.raises(FastNSTError, match=match) as exc:
        load_style(path)
    _one_sentence(exc)
    assert set(built.devices) <= {"meta"}  # nothing real was built: shapes were compared on the meta device


def test_parameter_cap(tmp_path, monkeypatch):
    from fastnst import styles

    path = save_style(tmp_path / "s", _net(), style_name="s")
    monkeypatch.setattr(styles, "MAX_PARAMETERS", 100)
    with pytest.raises(FastNSTError, match="parameters") as exc:
        load_style(path)
    _one_sentence(exc)


def test_integer_tensors_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_style(tmp_path / "s", _net(), style_name="s")
    meta = read_metadata(path)
    tensors = {k: v.to(torch.int32) for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(FastNSTError, match="floating-point"):
        load_style(path)


def test_an_interrupted_save_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import safetensors.torch

    old = save_style(tmp_path / "wave", _net(0), style_name="wave")
    before = old.read_bytes()

    def killed(tensors, filename, metadata=None):  # half a file written, then Ctrl-C
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        save_style(tmp_path / "wave", _net(1), style_name="wave")
    assert old.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["wave.safetensors"]


def test_rewrite_metadata_keeps_the_tensors_bit_identical(tmp_path):
    from safetensors.torch import load_file

    src = save_style(tmp_path / "s", _net(3), style_name="s", half=True)
    dest = rewrite_metadata(src, tmp_path / "t.safetensors", {**read_metadata(src), "style_name": "t"})
    a, b = load_file(str(src)), load_file(str(dest))
    assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    assert read_metadata(dest)["style_name"] == "t" and not list(tmp_path.glob(".*"))


# --------------------------------------------------------------------------------------------------
# registry: shipped, user and env styles; installing
# --------------------------------------------------------------------------------------------------


def test_user_styles_dir_follows_fastnst_home_then_the_platform(monkeypatch, tmp_path):
    from fastnst import styles

    monkeypatch.setenv("FASTNST_HOME", str(tmp_path / "fh"))
    assert user_styles_dir() == tmp_path / "fh" / "styles"
    monkeypatch.delenv("FASTNST_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(styles.sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_styles_dir() == tmp_path / "xdg" / "fastnst" / "styles"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")  # the XDG spec says: ignore it
    assert user_styles_dir() == tmp_path / "home" / ".local" / "share" / "fastnst" / "styles"
    monkeypatch.setattr(styles.sys, "platform", "darwin")
    assert user_styles_dir() == tmp_path / "home" / "Library" / "Application Support" / "fastnst" / "styles"
    monkeypatch.setattr(styles.sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "roaming"))
    assert user_styles_dir() == tmp_path / "roaming" / "fastnst" / "styles"


def test_list_styles_gives_each_name_its_path_and_origin(tmp_path, monkeypatch):
    env = tmp_path / "env"
    src = save_style(tmp_path / "made", _net(), style_name="made")
    user_path = install_style(src, "mine")
    assert user_path == user_styles_dir() / "mine.safetensors"
    save_style(env / "other", _net(), style_name="other")
    (user_styles_dir() / ".half.0a1b.part.safetensors").write_bytes(b"")  # an install in progress is not a style
    monkeypatch.setenv("FASTNST_WEIGHTS", str(env))
    styles = list_styles()
    assert list(styles) == sorted(styles)
    assert (styles["mine"].origin, styles["mine"].path) == ("user", user_path)
    assert (styles["other"].origin, styles["other"].path) == ("env", env / "other.safetensors")
    assert styles[SHIPPED].origin == "shipped"
    assert read_metadata(styles["mine"])["style_name"] == "mine"  # entries work as paths
    save_style(env / "mine", _net(1), style_name="mine")  # $FASTNST_WEIGHTS comes first
    assert list_styles()["mine"].origin == "env" and load_style("mine").path == env / "mine.safetensors"


def test_install_style_copies_under_the_name_and_refuses_to_clobber(tmp_path):
    src = save_style(tmp_path / "trained", _net(4), style_name="whatever", preset="custom")
    dest = install_style(src, "my_painting")
    model = load_style("my_painting")
    assert model.name == "my_painting" and model.path == dest and model.metadata["style_name"] == "my_painting"
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(model.net(x), load_style(src).net(x))
    with pytest.raises(FastNSTError, match="already exists"):
        install_style(save_style(tmp_path / "v2", _net(5), style_name="v2"), "my_painting")
    assert load_style("my_painting").metadata["style_name"] == "my_painting"
    install_style(tmp_path / "v2.safetensors", "my_painting", force=True)
    with torch.no_grad():
        assert not torch.equal(load_style("my_painting").net(x), model.net(x))
    assert sorted(p.name for p in user_styles_dir().iterdir()) == ["my_painting.safetensors"]


def test_install_style_does_not_shadow_a_shipped_style_without_force(tmp_path):
    src = save_style(tmp_path / "trained", _net(), style_name="t")
    with pytest.raises(FastNSTError, match="shipped style"):
        install_style(src, SHIPPED)
    assert list_styles()[SHIPPED].origin == "shipped"
    install_style(src, SHIPPED, force=True)
    assert list_styles()[SHIPPED].origin == "user"


@pytest.mark.parametrize("name", ["", "../evil", "a/b", "a\\b", ".hidden", "x" * 65, "con", "two words",
                                  "style.safetensors", "-dash"])
def test_install_style_takes_only_safe_file_stems(tmp_path, name):
    src = save_style(tmp_path / "trained", _net(), style_name="t")
    with pytest.raises(FastNSTError, match="not usable") as exc:
        install_style(src, name)
    _one_sentence(exc)
    assert not user_styles_dir().exists()


def test_install_style_that_fails_midway_leaves_nothing(tmp_path, monkeypatch):
    from fastnst import styles

    src = save_style(tmp_path / "trained", _net(), style_name="t")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(styles.os, "replace", full_disk)
    with pytest.raises(FastNSTError, match="No space left") as exc:
        install_style(src, "mine")
    _one_sentence(exc)
    assert not user_styles_dir().exists()  # the folder this install created is removed with its temporary file


def test_styles_command_lists_name_origin_preset_and_image(tmp_path, capsys):
    from fastnst import cli

    install_style(save_style(tmp_path / "t", _net(), style_name="t", preset="custom", style_image="wave.jpg"), "mine")
    (user_styles_dir() / "broken.safetensors").write_bytes(b"junk")
    assert cli.main(["styles"]) == 0
    files, family_table = capsys.readouterr().out.split("\n\n")
    rows = {line.split()[0]: line.split() for line in files.splitlines()}
    runs = {line.split()[0]: line.split()[1:] for line in family_table.splitlines()}
    assert rows["mine"][1:5] == ["user", "custom", "mine", "wave.jpg"]
    assert rows[SHIPPED][1:5] == ["shipped", "fast", "starry_night", "starry_night.jpg"]
    assert rows["broken"][1] == "user" and "unreadable" in rows["broken"][4]
    # then what each family name runs (the family table after the files)
    assert runs["mine"] == ["mine"]  # a family of one file
    assert runs["starry_night"][1:] == ["on", "a", "CPU,", "starry_night_fast", "on", "a", "GPU"]

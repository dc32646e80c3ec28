"""Packaging and module structure: what the wheel carries, and which module may import which."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (REPO / "weights").glob("*.safetensors"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(absolute module imported, at module level?)`` for every import in ``path``; for
    ``from X import a`` both ``X`` and ``X.a`` are listed (``a`` may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` / try-blocks at module level count as module level
        if isinstance(node, (ast.If, ast.Try)):
            top_level |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, id(node) in top_level))
            out += [(f"{base}.{a.name}", id(node) in top_level) for a in node.names]
    return out


def _project_modules() -> list[Path]:
    return sorted(p for d in ("fastnst", "train") for p in (REPO / d).rglob("*.py"))


def test_import_helper_resolves_relative_imports(tmp_path):
    assert _module_name(REPO / "fastnst" / "cli.py") == "fastnst.cli"
    assert ("fastnst.argtypes", True) in _imports(REPO / "fastnst" / "cli.py")
    assert ("fastnst.argtypes.parse_layer_weights", True) in _imports(REPO / "fastnst" / "training" / "config.py")


def test_only_the_entry_points_import_the_command_line():
    allowed = {"fastnst.cli", "fastnst.__main__"}
    offenders = [f"{_module_name(p)} imports {name}" for p in _project_modules() if _module_name(p) not in allowed
                 for name, _ in _imports(p) if name == "fastnst.cli" or name.startswith("fastnst.cli.")]
    assert not offenders, offenders


def test_the_library_never_imports_the_checkout_only_train_folder():
    # train/ is not installed: the package (the trainer included) must work without it.
    offenders = [f"{_module_name(p)} imports {name}" for p in (REPO / "fastnst").rglob("*.py")
                 for name, _ in _imports(p) if name == "train" or name.startswith("train.")]
    assert not offenders, offenders


# --------------------------------------------------------------------------------------------------
# the wheel
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """``(wheel, source copy)``: the wheel is built from a copy, so no build/ folder lands in the
    checkout and files other sessions add meanwhile do not race the comparison."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("fastnst", "weights", "train"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           str(src), "-w", str(out)], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("*.whl")
    return whl, src


@pytest.fixture(scope="module")
def wheel(built) -> Path:
    return built[0]


def test_wheel_carries_the_shipped_styles_and_no_train_package(wheel):
    assert len(SHIPPED) >= 4
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        for style in SHIPPED:
            assert z.read(f"fastnst/_weights/{style}") == (REPO / "weights" / style).read_bytes(), style
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert z.read(top_level).decode().split() == ["fastnst"]
    assert not [n for n in names if n.split("/")[0] in ("train", "tests", "benchmarks", "weights")]


def test_wheel_holds_every_module_of_the_package(built):
    """The packages are listed in pyproject.toml: a new subpackage must be added there."""
    wheel, src = built
    source = {p.relative_to(src).as_posix() for p in (src / "fastnst").rglob("*.py")}
    with zipfile.ZipFile(wheel) as z:
        missing = source - set(z.namelist())
    assert not missing, f"add their packages to [tool.setuptools] packages: {sorted(missing)}"


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """The wheel installed in a folder of its own (to put on PYTHONPATH)."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # what pip does with a pure-Python wheel
    return site


def test_installed_wheel_finds_its_styles_from_another_folder(site, tmp_path):
    code = ("import json, fastnst.styles as s; "
            "print(json.dumps({n: [str(e.path), e.origin] for n, e in s.list_styles().items()}))")
    env = {k: v for k, v in os.environ.items() if k != "FASTNST_WEIGHTS"} | {"PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert sorted(f"{n}.safetensors" for n in found) == SHIPPED
    for path, origin in found.values():
        assert origin == "shipped" and Path(path).parent == site / "fastnst" / "_weights"


def test_installed_wheel_can_train_without_a_checkout(site, tmp_path):
    """`fastnst train` (quick mode included) is part of the package, not of the checkout's train/.

    One interpreter (each costs seconds of torch import): the trainer's modules are imported, which
    `--quick --help` alone would not do, then `python -m fastnst train --quick --help` is run."""
    env = {k: v for k, v in os.environ.items() if k != "FASTNST_WEIGHTS"} | {"PYTHONPATH": str(site)}
    code = ("import runpy, sys; import fastnst.training.loop, fastnst.training.data, fastnst.training.quick; "
            "sys.argv = ['fastnst', 'train', '--quick', '--help']; runpy.run_module('fastnst', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fastnst train --quick" in proc.stdout and "--style" in proc.stdout, proc.stdout[:500]

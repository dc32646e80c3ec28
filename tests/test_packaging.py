"""Packaging and module structure: what the wheel carries, and which module may import which."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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
    assert ("fastnst.argtypes.parse_layer_weights", True) in _imports(REPO / "train" / "config.py")


def test_only_the_entry_points_import_the_command_line():
    allowed = {"fastnst.cli", "fastnst.__main__"}
    offenders = [f"{_module_name(p)} imports {name}" for p in _project_modules() if _module_name(p) not in allowed
                 for name, _ in _imports(p) if name == "fastnst.cli" or name.startswith("fastnst.cli.")]
    assert not offenders, offenders


def test_the_library_does_not_import_the_training_scripts_at_module_level():
    offenders = [f"{_module_name(p)} imports {name}" for p in (REPO / "fastnst").rglob("*.py")
                 for name, top in _imports(p) if top and (name == "train" or name.startswith("train."))]
    assert not offenders, offenders

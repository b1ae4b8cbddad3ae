"""The layering rules of docs/architecture.md hold: import-linter checks the contracts in
.importlinter against the source, and every package and top-level module is in a layer."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import easel

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"


def layers() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    text = parser["importlinter:contract:layers"]["layers"]
    return [name.strip() for line in text.splitlines() for name in line.split("|") if name.strip()]


def test_every_package_and_module_has_a_layer():
    package = Path(easel.__file__).parent
    found = {
        f"easel.{p.stem}"
        for p in package.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists())
        or (p.suffix == ".py" and not p.name.startswith("__"))
    }
    assert found - set(layers()) == set(), "add new packages to .importlinter and the docs"


def test_the_architecture_page_shows_the_same_layers():
    page = (ROOT / "docs" / "architecture.md").read_text()
    for layer in layers():
        assert re.search(rf"`{re.escape(layer)}`", page), f"{layer} missing from the page"


def test_import_contracts_are_kept(capsys):
    try:
        from importlinter.cli import lint_imports
    except ImportError as exc:  # a dev dependency: pyproject's dev extra and scripts/test
        raise AssertionError("import-linter is missing: pip install -e '.[dev]'") from exc
    code = lint_imports(config_filename=str(CONFIG), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "0 broken" in report

"""A test plugin that ships editor assets: a module adding a widget, and a stylesheet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from easel.core.node import Input, node
from easel.core.plugins import hookimpl


@node(category="testing", outputs={}, output_node=True)
def TestColor(colour: str = Input("#ff8800", widget="colour")) -> dict[str, Any]:
    """Echoes a colour picked with the plugin's own widget."""
    return {"ui": {"colour": colour}}


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    register(TestColor)


@hookimpl
def register_web_assets(register: Callable[[Path], None]) -> None:
    register(Path(__file__).with_name("assets"))

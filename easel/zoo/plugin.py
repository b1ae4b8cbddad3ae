"""The demo model's built-in plugin: registers its nodes (RenderShapes) through the same
hooks as every plugin, so `easel.nodes` never imports the zoo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from easel.core.plugins import hookimpl


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    from easel.zoo.shapes.render_node import NODES

    for node_type in NODES:
        register(node_type)

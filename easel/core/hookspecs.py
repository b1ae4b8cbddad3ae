"""The plugin hooks. Each is documented in docs/plugins.md (a test checks that)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("easel")


@hookspec
def register_nodes(register: Callable[[Any], None]) -> None:
    """Call `register(node_type)` for each node type (made with `@easel.node`) the plugin adds."""


@hookspec
def register_socket_types(register: Callable[[str, str], None]) -> None:
    """Call `register(name, description)` for each new socket type the plugin's nodes use."""


@hookspec
def register_web_assets(register: Callable[[Path], None]) -> None:
    """Call `register(folder)` with a folder of editor assets (ES modules, CSS) to serve."""

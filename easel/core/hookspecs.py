"""The plugin hooks. Each is documented in docs/plugins.md (a test checks that).

Every hook is "register" style: Easel passes a `register` callback and handles names,
collisions and errors in one place (see easel.core.plugins).
"""

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
def register_socket_types(register: Callable[..., None]) -> None:
    """Call `register(name, description, check=None)` for each socket type the plugin adds."""


@hookspec
def register_web_assets(register: Callable[[Path], None]) -> None:
    """Call `register(folder)` with a folder of editor assets (ES modules, CSS) to serve."""


@hookspec
def register_routes(register: Callable[[str, str, Callable[..., Any]], None]) -> None:
    """Call `register(method, path, handler)` for each HTTP route (aiohttp handler) to serve
    under /api/plugins/<plugin name><path>."""


@hookspec
def register_event_types(register: Callable[[str, str], None]) -> None:
    """Call `register(name, description)` for each custom event type ("plugin.event") that
    the plugin's nodes send with `ctx.emit(name, **data)`."""


@hookspec
def register_event_listeners(register: Callable[[Callable[[Any], None]], None]) -> None:
    """Call `register(listener)` with a function that receives every event of every run."""


@hookspec
def register_model_kinds(register: Callable[[str, Any], None]) -> None:
    """Call `register(kind, folders)` for each kind of model file the plugin's nodes load."""


@hookspec
def register_cache_codecs(register: Callable[[Any], None]) -> None:
    """Call `register(codec)` with a diskcache.Codec for values the disk cache should keep."""


@hookspec
def register_comfy_nodes(register: Callable[[str, Any], None]) -> None:
    """Call `register(class_type, node_map)` to import a ComfyUI node type as the plugin's."""

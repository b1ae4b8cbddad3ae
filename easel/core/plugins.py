"""Loading plugins (built-in, entry points, local files) into a registry of node types.

One broken plugin is reported by name and skipped; it never takes the host down.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pluggy

from easel.core import hookspecs
from easel.core.diskcache import JSON_CODEC, Codec
from easel.core.events import Event
from easel.core.node import NodeType
from easel.core.types import (
    ANY,
    BUILTIN_SOCKET_TYPES,
    VALUE_CHECKS,
    SocketCheck,
    valid_socket_name,
)

hookimpl = pluggy.HookimplMarker("easel")
log = logging.getLogger("easel.plugins")

ENTRY_POINT_GROUP = "easel"
BUILTIN_PLUGIN = "easel"
# Plugins that ship with Easel, by name: its nodes, and the demo model's nodes. They are
# always loaded and win a name clash with a third-party plugin.
BUILTIN_PLUGINS = {BUILTIN_PLUGIN: "easel.nodes.plugin", "easel-shapes": "easel.zoo.plugin"}
ROUTE_PREFIX = "/api/plugins"
ROUTE_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


@dataclass
class PluginInfo:
    """What `easel plugins` and `/api/plugins` show for one plugin. `errors` are one-line
    messages for users (tracebacks go to the log); `notes` are harmless facts."""

    name: str
    version: str
    source: str
    nodes: list[str] = field(default_factory=list)
    socket_types: list[str] = field(default_factory=list)
    web_assets: Path | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    module_file: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "nodes": list(self.nodes),
            "socket_types": list(self.socket_types),
            "web_assets": str(self.web_assets) if self.web_assets else None,
            "ok": self.ok,
            "errors": list(self.errors),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class PluginRoute:
    """An HTTP route a plugin adds; the server mounts it at `url`, behind its security."""

    plugin: str
    method: str
    path: str
    handler: Callable[..., Any]

    @property
    def url(self) -> str:
        return f"{ROUTE_PREFIX}/{quote(self.plugin, safe='')}{self.path}"


EventListener = Callable[[Event], None]


@dataclass
class Registry:
    """The node types, socket types and every other contribution of the loaded plugins."""

    nodes: dict[str, NodeType] = field(default_factory=dict)
    socket_types: dict[str, str] = field(default_factory=dict)  # name -> description
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    collisions: dict[str, list[str]] = field(default_factory=dict)
    socket_owners: dict[str, str] = field(default_factory=dict)
    socket_checks: dict[str, SocketCheck] = field(default_factory=dict)
    routes: list[PluginRoute] = field(default_factory=list)
    event_types: dict[str, str] = field(default_factory=dict)  # name -> plugin
    event_listeners: list[EventListener] = field(default_factory=list)
    model_kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    model_kind_owners: dict[str, str] = field(default_factory=dict)
    codecs: list[Codec] = field(default_factory=list)
    comfy_nodes: dict[str, Any] = field(default_factory=dict)
    comfy_owners: dict[str, str] = field(default_factory=dict)

    def get(self, type_name: str) -> NodeType | None:
        return self.nodes.get(type_name)

    def suggest(self, type_name: str) -> str | None:
        close = difflib.get_close_matches(type_name, list(self.nodes), n=1, cutoff=0.5)
        if close:
            return close[0]
        lowered = {name.lower(): name for name in self.nodes}
        return lowered.get(type_name.lower())

    @property
    def errors(self) -> list[str]:
        return [
            f"plugin {info.name!r}: {err}" for info in self.plugins.values() for err in info.errors
        ]

    def schemas(self) -> dict[str, dict[str, Any]]:
        return {name: node_type.schema() for name, node_type in sorted(self.nodes.items())}

    def add_node(self, plugin: str, node_type: NodeType) -> None:
        """Register one node type directly (tests, embedding); same rules as the hook."""
        loader = _Loader(self)
        loader.add_nodes(plugin, [node_type])
        loader.bind_output_checks()


def _split(value: str | None) -> list[str]:
    if not value:
        return []
    return [item.strip() for item in value.replace(";", ",").split(",") if item.strip()]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# Each hook in the order they are called: socket types first, so any plugin's nodes may use
# any plugin's types; then nodes; then the rest (they depend on nothing else).
HOOK_ORDER = (
    "register_socket_types",
    "register_nodes",
    "register_web_assets",
    "register_routes",
    "register_event_types",
    "register_event_listeners",
    "register_model_kinds",
    "register_cache_codecs",
    "register_comfy_nodes",
)


class _Loader:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        if not registry.socket_types:
            registry.socket_types.update({name: "built-in" for name in BUILTIN_SOCKET_TYPES})
            registry.socket_owners.update(dict.fromkeys(BUILTIN_SOCKET_TYPES, BUILTIN_PLUGIN))
            registry.socket_checks.update(VALUE_CHECKS)
            registry.codecs.append(JSON_CODEC)
        self.refused_types: dict[str, set[str]] = {}  # plugin -> its clashing socket types

    def info(self, name: str, version: str = "", source: str = "") -> PluginInfo:
        if name not in self.registry.plugins:
            self.registry.plugins[name] = PluginInfo(name, version, source)
        return self.registry.plugins[name]

    def add_nodes(self, plugin: str, node_types: Iterable[Any]) -> None:
        info = self.info(plugin)
        for node_type in node_types:
            if not isinstance(node_type, NodeType):
                info.errors.append(
                    f"register_nodes got {node_type!r}, expected a node made with @easel.node"
                )
                continue
            problem = self.node_problem(plugin, node_type)
            if problem:
                info.errors.append(problem)
                continue
            self.add_node(plugin, info, node_type)

    def node_problem(self, plugin: str, node_type: NodeType) -> str | None:
        """Why this node type cannot be registered (None: it can)."""
        where = f"node {node_type.type!r}"
        used = {*(s.type for s in node_type.inputs.values()), *node_type.outputs.values()}
        unknown = sorted(t for t in used if t != ANY and t not in self.registry.socket_types)
        if unknown:
            return (
                f"{where} uses unknown socket types {unknown}: "
                "register them with the register_socket_types hook"
            )
        clashing = sorted(used & self.refused_types.get(plugin, set()))
        if clashing:
            return (
                f"{where} is not registered: its socket types {clashing} clash with "
                "another plugin's"
            )
        bad_defaults = node_type.default_problems()
        if bad_defaults:
            return "; ".join(f"{where}, input {name!r}: {reason}" for name, reason in bad_defaults)
        return None

    def add_node(self, plugin: str, info: PluginInfo, node_type: NodeType) -> None:
        name = node_type.type
        registry = self.registry
        existing = registry.nodes.get(name)
        if name in registry.collisions:
            registry.collisions[name].append(plugin)
            info.errors.append(_collision_message(name, registry.collisions[name]))
            return
        if existing is not None and existing.plugin in BUILTIN_PLUGINS:
            info.errors.append(
                f"node type {name!r} is built in; the plugin's own {name!r} is disabled and "
                "the built-in one is used (rename the plugin's node, e.g. with a prefix)"
            )
            return
        if existing is not None:
            owners = [existing.plugin, plugin]
            registry.collisions[name] = owners
            del registry.nodes[name]
            registry.plugins[existing.plugin].nodes.remove(name)
            message = _collision_message(name, owners)
            info.errors.append(message)
            registry.plugins[existing.plugin].errors.append(message)
            return
        node_type.plugin = plugin
        registry.nodes[name] = node_type
        info.nodes.append(name)

    def bind_output_checks(self) -> None:
        """Give each node type the checks of its outputs' socket types (cheap at run time)."""
        checks = self.registry.socket_checks
        for node_type in self.registry.nodes.values():
            node_type.output_checks = tuple(
                (name, socket, checks[socket])
                for name, socket in node_type.outputs.items()
                if socket in checks
            )

    def call_hooks(self, pm: pluggy.PluginManager) -> None:
        for hook_name in HOOK_ORDER:
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin = pm.get_name(impl.plugin) or repr(impl.plugin)
                info = self.info(plugin)
                collected: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

                def register(*args: Any, _collected: list[Any] = collected, **kwargs: Any) -> None:
                    _collected.append((args, kwargs))

                try:
                    impl.function(register=register)
                except Exception as exc:  # a plugin's bug must not take the host down
                    info.errors.append(f"{hook_name} failed: {_one_line(exc)}")
                    log.debug("plugin %r: %s failed", plugin, hook_name, exc_info=True)
                    continue
                apply = getattr(self, f"apply_{hook_name}")
                for args, kwargs in collected:
                    try:
                        apply(plugin, info, *args, **kwargs)
                    except TypeError as exc:
                        info.errors.append(f"{hook_name}: bad register() call: {exc}")
        self.bind_output_checks()

    # -- one method per hook: what one register(...) call does --------------------------
    def apply_register_nodes(self, plugin: str, info: PluginInfo, node_type: Any) -> None:
        self.add_nodes(plugin, [node_type])

    def apply_register_socket_types(
        self,
        plugin: str,
        info: PluginInfo,
        name: Any,
        description: str = "",
        check: SocketCheck | None = None,
    ) -> None:
        registry = self.registry
        if not valid_socket_name(name):
            info.errors.append(
                f"socket type names are UPPER_SNAKE_CASE (optionally NAMESPACE.NAME), got {name!r}"
            )
            return
        owner = registry.socket_owners.get(name)
        if owner is not None and owner != plugin:
            what = "is built in" if owner == BUILTIN_PLUGIN else f"is registered by {owner!r}"
            info.errors.append(
                f"socket type {name!r} {what}; this plugin's {name!r} is refused, and so are "
                f"its nodes that use it. Use the existing type without registering it, or "
                f"give yours a namespace ({plugin.upper().replace('-', '_')}.{name})"
            )
            self.refused_types.setdefault(plugin, set()).add(name)
            return
        if check is not None and not callable(check):
            raise TypeError(f"check for socket type {name!r} must be callable")
        registry.socket_owners[name] = plugin
        if owner is None or description:
            registry.socket_types[name] = description or plugin
        if check is not None:
            registry.socket_checks[name] = check
        if name not in info.socket_types:
            info.socket_types.append(name)

    def apply_register_web_assets(self, plugin: str, info: PluginInfo, folder: Any) -> None:
        path = Path(folder)
        if not path.is_dir():
            info.errors.append(f"web asset folder {path} does not exist")
            return
        info.web_assets = path

    def apply_register_routes(
        self, plugin: str, info: PluginInfo, method: str, path: str, handler: Callable[..., Any]
    ) -> None:
        method = str(method).upper()
        if method not in ROUTE_METHODS:
            info.errors.append(
                f"route {path!r}: method {method!r} is not one of {sorted(ROUTE_METHODS)}"
            )
            return
        if not isinstance(path, str) or not path.startswith("/"):
            info.errors.append(
                f"route path {path!r} must start with '/' (it is mounted under "
                f"{ROUTE_PREFIX}/{plugin})"
            )
            return
        if not callable(handler):
            raise TypeError(f"route {method} {path}: handler is not callable")
        self.registry.routes.append(PluginRoute(plugin, method, path, handler))

    def apply_register_event_types(
        self, plugin: str, info: PluginInfo, name: str, description: str = ""
    ) -> None:
        owners = self.registry.event_types
        if not isinstance(name, str) or "." not in name.strip("."):
            info.errors.append(f"event type {name!r} needs a namespace: '<plugin>.<event>'")
            return
        if name in owners and owners[name] != plugin:
            info.errors.append(
                f"event type {name!r} is registered by {owners[name]!r} too; "
                "this plugin's registration is refused"
            )
            return
        owners[name] = plugin

    def apply_register_event_listeners(
        self, plugin: str, info: PluginInfo, listener: EventListener
    ) -> None:
        if not callable(listener):
            raise TypeError("register(listener) takes a function of one event")
        self.registry.event_listeners.append(listener)

    def apply_register_model_kinds(
        self, plugin: str, info: PluginInfo, kind: str, folders: Iterable[str]
    ) -> None:
        registry = self.registry
        names = (folders,) if isinstance(folders, str) else tuple(str(f) for f in folders)
        if not isinstance(kind, str) or not kind or not names:
            raise TypeError("register(kind, folders) takes a kind name and its folder names")
        owner = registry.model_kind_owners.get(kind)
        if owner is not None and owner != plugin:
            info.errors.append(
                f"model kind {kind!r} is registered by {owner!r} too; this "
                "plugin's registration is refused"
            )
            return
        registry.model_kind_owners[kind] = plugin
        registry.model_kinds[kind] = names

    def apply_register_cache_codecs(self, plugin: str, info: PluginInfo, codec: Codec) -> None:
        if not isinstance(codec, Codec):
            raise TypeError("register(codec) takes an easel.core.diskcache.Codec")
        # later registrations win over earlier ones for the values both match
        self.registry.codecs[:] = [c for c in self.registry.codecs if c.name != codec.name]
        self.registry.codecs.insert(0, codec)

    def apply_register_comfy_nodes(
        self, plugin: str, info: PluginInfo, class_type: str, mapping: Any
    ) -> None:
        registry = self.registry
        owner = registry.comfy_owners.get(class_type)
        if owner is not None and owner != plugin:
            info.errors.append(
                f"ComfyUI node type {class_type!r} is mapped by {owner!r} too; "
                "this plugin's mapping is refused"
            )
            return
        registry.comfy_owners[class_type] = plugin
        registry.comfy_nodes[class_type] = mapping


def _collision_message(name: str, owners: list[str]) -> str:
    names = " and ".join(repr(owner) for owner in owners)
    return (
        f"node type {name!r} is defined by both plugins {names}; neither is used. "
        "Uninstall or disable one (EASEL_DISABLE_PLUGINS)."
    )


def _identity(obj: object) -> object:
    return obj


def _load_file(path: str) -> ModuleType:
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise FileNotFoundError(f"no such plugin file: {file}")
    module_name = f"easel_local_plugin_{file.stem}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_plugins(
    plugin_files: Iterable[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    entry_points: bool = True,
    builtins: bool = True,
    extra: Iterable[tuple[str, object]] = (),
) -> Registry:
    """Load the built-in nodes, installed plugins and local plugin files into a registry.

    Environment: EASEL_PLUGINS (extra files or modules, comma or os.pathsep separated),
    EASEL_DISABLE_PLUGINS (names, or "all" for every third-party plugin),
    EASEL_ALLOW_PLUGINS (only these third-party plugins).

    A plugin's name is its entry-point name when installed, its module name when given as a
    module, and its file's stem when given as a file. The same module found twice (installed
    and named in EASEL_PLUGINS) is loaded once, under the first name.
    """
    env = os.environ if environ is None else environ
    disabled = set(_split(env.get("EASEL_DISABLE_PLUGINS")))
    allowed = set(_split(env.get("EASEL_ALLOW_PLUGINS")))

    def wanted(name: str) -> bool:
        if name in disabled or {"all", "*", "1"} & disabled:
            return False
        return not allowed or name in allowed

    registry = Registry()
    loader = _Loader(registry)
    pm = pluggy.PluginManager("easel")
    pm.add_hookspecs(hookspecs)
    files: dict[str, str] = {}  # resolved module file -> plugin name

    def loaded_once(first: str, source: str) -> None:
        registry.plugins[first].notes.append(f"also found as {source}; loaded once")

    def add(
        name: str, version: str, source: str, load: Callable[[], object], file: str | None = None
    ) -> None:
        if file is not None and file in files:
            return loaded_once(files[file], source)
        try:
            obj = load()
        except Exception as exc:  # report and go on
            loader.info(name, version, source).errors.append(f"failed to load: {_one_line(exc)}")
            log.debug("plugin %r failed to load", name, exc_info=True)
            return
        module_file = _module_file(obj)
        if pm.is_registered(obj):
            return loaded_once(pm.get_name(obj) or name, source)
        if module_file is not None and module_file in files:
            return loaded_once(files[module_file], source)
        if pm.get_plugin(name) is not None:
            registry.plugins[name].errors.append(
                f"another plugin is also named {name!r} ({source}); it was not loaded"
            )
            return
        info = loader.info(name, version, source)
        try:
            pm.register(obj, name=name)
        except Exception as exc:
            info.errors.append(f"failed to register: {_one_line(exc)}")
            log.debug("plugin %r failed to register", name, exc_info=True)
            return
        if module_file is not None:
            files[module_file] = name
            info.module_file = module_file

    if builtins:
        from easel import __version__

        for name, module_name in BUILTIN_PLUGINS.items():
            add(
                name,
                __version__,
                "built-in",
                functools.partial(importlib.import_module, module_name),
            )
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if not wanted(ep.name):
                continue
            version = ep.dist.version if ep.dist is not None else "?"
            add(ep.name, version, f"entry point {ep.value}", ep.load)
    local = [
        *plugin_files,
        *(p for part in _split(env.get("EASEL_PLUGINS")) for p in part.split(os.pathsep) if p),
    ]
    for item in local:
        looks_like_file = item.endswith(".py") or os.sep in item
        name = Path(item).stem if looks_like_file else item
        if not wanted(name):
            continue
        if looks_like_file:
            resolved = str(Path(item).expanduser().resolve())
            add(name, "local", item, functools.partial(_load_file, item), resolved)
        else:
            add(name, "local", f"module {item}", functools.partial(importlib.import_module, item))
    for name, obj in extra:
        add(name, "local", "registered in process", functools.partial(_identity, obj))
    for plugin_name, info in registry.plugins.items():
        if not info.version:
            module = pm.get_plugin(plugin_name)
            info.version = str(getattr(module, "__version__", "local"))
    loader.call_hooks(pm)
    global _current
    _current = registry
    return registry


def _module_file(obj: object) -> str | None:
    file = getattr(obj, "__file__", None)
    if not isinstance(file, str):
        return None
    return str(Path(file).resolve())


_current: Registry | None = None


def current_registry() -> Registry:
    """The registry this process loaded last (loading the default one if none yet): for
    layers that need plugin contributions but are not handed a registry."""
    return _current if _current is not None else load_plugins()


def plugin_model_kinds(registry: Registry | None = None) -> dict[str, tuple[str, ...]]:
    """Model kinds plugins add: {kind: folder names under the models folder}."""
    return dict((registry or current_registry()).model_kinds)


def plugin_comfy_nodes(registry: Registry | None = None) -> dict[str, Any]:
    """ComfyUI node types plugins map onto their nodes: {class_type: NodeMap}."""
    return dict((registry or current_registry()).comfy_nodes)


def plugin_codecs(registry: Registry | None = None) -> list[Codec]:
    """Disk cache codecs, the newest registration first (JSON always included)."""
    return list((registry or current_registry()).codecs)

"""Every plugin hook through load_plugins, and how plugin problems are reported."""

from __future__ import annotations

import logging
import textwrap

import easel
from easel.core.diskcache import Codec, DiskStore
from easel.core.executor import Executor
from easel.core.plugins import (
    load_plugins,
    plugin_codecs,
    plugin_comfy_nodes,
    plugin_model_kinds,
)
from tests.core.sample_nodes import workflow

HOOKS = """
import easel
from easel.core.diskcache import Codec

Mask = easel.socket_type("HOOKS.MASK")
SEEN = []


@easel.node(outputs={"mask": Mask})
def MakeMask(size: int = 2, ctx: easel.Context = None) -> object:
    ctx.emit("hooks.made", size=size)
    return [[1] * size] * size


@easel.node(outputs={"mask": Mask})
def NotAMask() -> object:
    return "oops"


async def hello(request):
    from aiohttp import web
    return web.json_response({"hello": "world"})


@easel.hookimpl
def register_socket_types(register):
    register("HOOKS.MASK", "a list-of-lists mask", check=lambda v: isinstance(v, list))


@easel.hookimpl
def register_nodes(register):
    register(MakeMask)
    register(NotAMask)


@easel.hookimpl
def register_routes(register):
    register("GET", "/hello", hello)


@easel.hookimpl
def register_event_types(register):
    register("hooks.made", "a mask was made")


@easel.hookimpl
def register_event_listeners(register):
    register(SEEN.append)


@easel.hookimpl
def register_model_kinds(register):
    register("masks", ["masks", "mask_models"])


@easel.hookimpl
def register_cache_codecs(register):
    register(Codec("upper", ".txt", lambda v: isinstance(v, str) and v.isupper(),
                   lambda v, path: path.write_text(v.lower()),
                   lambda path: path.read_text().upper()))


@easel.hookimpl
def register_comfy_nodes(register):
    register("MaskMaker", {"easel_type": "MakeMask"})
"""


def write(tmp_path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_every_hook_contributes_to_the_registry(tmp_path):
    reg = load_plugins([write(tmp_path, "hooks", HOOKS)], entry_points=False, environ={})
    assert reg.plugins["hooks"].ok, reg.errors
    assert reg.plugins["hooks"].socket_types == ["HOOKS.MASK"]
    [route] = reg.routes
    assert (route.method, route.url) == ("GET", "/api/plugins/hooks/hello")
    assert reg.event_types == {"hooks.made": "hooks"}
    assert plugin_model_kinds(reg) == {"masks": ("masks", "mask_models")}
    assert plugin_comfy_nodes(reg) == {"MaskMaker": {"easel_type": "MakeMask"}}
    assert [c.name for c in plugin_codecs(reg)][:1] == ["upper"]
    assert "json" in [c.name for c in reg.codecs]


def test_custom_events_reach_listeners_and_socket_checks_run(tmp_path):
    reg = load_plugins([write(tmp_path, "hooks", HOOKS)], entry_points=False, environ={})
    module = __import__("easel_local_plugin_hooks")
    module.SEEN.clear()
    wf = workflow({"m": {"type": "MakeMask", "inputs": {"size": 3}}, "bad": {"type": "NotAMask"}})
    result = Executor(reg).run(wf, targets=["m", "bad"])
    made = [e for e in module.SEEN if e.type == "hooks.made"]
    assert [(e.node_id, e.data) for e in made] == [("m", {"size": 3})]
    assert {e.type for e in module.SEEN} >= {"run_started", "node_finished", "run_finished"}
    assert result.failures[0].node == "bad"
    assert result.failures[0].message.startswith("output 'mask' should be HOOKS.MASK")


def test_unregistered_event_type_fails_the_node(tmp_path):
    path = write(
        tmp_path,
        "noisy",
        """
        import easel

        @easel.node(outputs={"v": int})
        def Noisy(ctx: easel.Context = None) -> int:
            ctx.emit("noisy.undeclared")
            return 1

        @easel.hookimpl
        def register_nodes(register):
            register(Noisy)
    """,
    )
    reg = load_plugins([path], entry_points=False, environ={})
    result = Executor(reg).run(workflow({"n": {"type": "Noisy"}}), targets=["n"])
    assert "event type 'noisy.undeclared' is not registered" in result.failures[0].message


def test_plugin_codecs_reach_the_disk_store(tmp_path):
    reg = load_plugins([write(tmp_path, "hooks", HOOKS)], entry_points=False, environ={})
    store = DiskStore(tmp_path / "cache", codecs=reg.codecs)
    assert store.put("ab" * 32, {"shout": "HELLO", "n": 1})
    assert store.get("ab" * 32) == {"shout": "HELLO", "n": 1}
    assert sorted(p.suffix for p in (tmp_path / "cache" / "ab").iterdir()) == [
        ".json",
        ".json",
        ".txt",
    ]
    assert not DiskStore(tmp_path / "other").put("cd" * 32, {"x": object()})
    assert isinstance(reg.codecs[0], Codec)


def test_socket_type_clash_is_an_error_naming_both(tmp_path):
    first = write(
        tmp_path,
        "first",
        """
        import easel

        @easel.hookimpl
        def register_socket_types(register):
            register("SHAPE", "one meaning")
    """,
    )
    second = write(
        tmp_path,
        "second",
        """
        import easel

        @easel.node(outputs={"m": "SHAPE"})
        def OtherMask() -> object:
            return 1

        @easel.hookimpl
        def register_socket_types(register):
            register("SHAPE", "another meaning")
            register("IMAGE", "mine")

        @easel.hookimpl
        def register_nodes(register):
            register(OtherMask)
    """,
    )
    reg = load_plugins([first, second], entry_points=False, environ={})
    assert reg.socket_types["SHAPE"] == "one meaning" and reg.plugins["first"].ok
    errors = reg.plugins["second"].errors
    assert errors[0].startswith(
        "socket type 'SHAPE' is registered by 'first'; this plugin's 'SHAPE' is refused"
    )
    assert "(SECOND.SHAPE)" in errors[0]
    assert errors[1].startswith("socket type 'IMAGE' is built in")
    assert errors[2] == (
        "node 'OtherMask' is not registered: its socket types ['SHAPE'] clash with another plugin's"
    )
    assert "OtherMask" not in reg.nodes


def test_hook_errors_have_no_traceback_lines_but_the_log_keeps_them(tmp_path):
    path = write(
        tmp_path,
        "raises",
        """
        import easel

        @easel.hookimpl
        def register_nodes(register):
            raise ValueError("bad day\\nsecond line")
    """,
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("easel.plugins")
    was_disabled, logger.disabled = logger.disabled, False  # other tools' logging configs
    level = logger.level
    logger.setLevel(logging.DEBUG)  # `easel -v`: tracebacks are debug details
    logger.addHandler(handler)
    try:
        reg = load_plugins([path], entry_points=False, environ={})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = was_disabled
    assert reg.plugins["raises"].errors == ["register_nodes failed: ValueError: bad day"]
    assert not any("Traceback" in e for e in reg.errors)
    logged = "".join(logging.Formatter().format(r) for r in records)
    assert "Traceback (most recent call last)" in logged and "second line" in logged


def test_same_plugin_twice_is_loaded_once(tmp_path, monkeypatch):
    path = write(
        tmp_path,
        "twice",
        """
        import easel

        @easel.node(outputs={"v": int})
        def Once() -> int:
            return 1

        @easel.hookimpl
        def register_nodes(register):
            register(Once)
    """,
    )
    reg = load_plugins([path], entry_points=False, environ={"EASEL_PLUGINS": path})
    assert reg.plugins["twice"].ok and reg.nodes["Once"].plugin == "twice"
    assert reg.plugins["twice"].notes == [f"also found as {path}; loaded once"]
    monkeypatch.syspath_prepend(str(tmp_path))
    by_module = load_plugins(["twice"], entry_points=False, environ={"EASEL_PLUGINS": "twice"})
    assert by_module.plugins["twice"].ok
    assert by_module.plugins["twice"].notes == ["also found as module twice; loaded once"]


def test_plugin_info_to_json_gives_each_problem(tmp_path):
    path = write(tmp_path, "broken", "import not_a_module_anywhere\n")
    info = load_plugins([path], entry_points=False, environ={}).plugins["broken"].to_json()
    assert info["ok"] is False
    assert info["errors"] == [
        "failed to load: ModuleNotFoundError: No module named 'not_a_module_anywhere'"
    ]


def test_routes_need_a_method_and_a_path(tmp_path):
    path = write(
        tmp_path,
        "badroute",
        """
        import easel

        @easel.hookimpl
        def register_routes(register):
            register("FETCH", "/x", print)
            register("GET", "x", print)
    """,
    )
    reg = load_plugins([path], entry_points=False, environ={})
    assert not reg.routes and len(reg.plugins["badroute"].errors) == 2


def test_display_name_of_builtin_nodes_defaults_to_the_type():
    reg = load_plugins(entry_points=False, environ={})
    assert all(s["display_name"] for s in reg.schemas().values())
    assert easel.node  # the public decorator stays where plugin authors find it

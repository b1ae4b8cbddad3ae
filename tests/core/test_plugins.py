"""Plugins: built-ins through the same hooks, broken plugins skipped, collisions named."""

from __future__ import annotations

import textwrap

import easel
from easel.core.graph import WorkflowError, validate
from easel.core.plugins import load_plugins
from tests.core.sample_nodes import workflow

GOOD = """
import easel

@easel.node(category="demo", outputs={"text": str})
def Shout(text: str = "hi") -> str:
    return text.upper()

@easel.hookimpl
def register_nodes(register):
    register(Shout)
"""


def write(tmp_path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_builtin_nodes_come_through_the_hooks():
    registry = load_plugins(entry_points=False, environ={})
    info = registry.plugins["easel"]
    assert info.ok and "Int" in info.nodes and registry.nodes["Int"].plugin == "easel"


def test_local_file_plugin_by_argument_and_environment(tmp_path):
    path = write(tmp_path, "shout", GOOD)
    by_arg = load_plugins([path], entry_points=False, environ={})
    assert by_arg.nodes["Shout"].plugin == "shout"
    by_env = load_plugins(entry_points=False, environ={"EASEL_PLUGINS": path})
    assert "Shout" in by_env.nodes and by_env.plugins["shout"].version == "local"


def test_plugin_that_fails_to_import_is_reported_and_skipped(tmp_path):
    path = write(tmp_path, "broken", "import not_a_module_anywhere\n")
    registry = load_plugins([path], entry_points=False, environ={})
    assert "Int" in registry.nodes  # the host runs on
    [error] = registry.errors
    assert error.startswith("plugin 'broken': failed to load: ModuleNotFoundError")


def test_plugin_whose_hook_raises_is_reported_and_skipped(tmp_path):
    path = write(
        tmp_path,
        "raises",
        """
        import easel

        @easel.hookimpl
        def register_nodes(register):
            raise ValueError("bad day")
    """,
    )
    registry = load_plugins([path], entry_points=False, environ={})
    assert "plugin 'raises': register_nodes failed: ValueError: bad day" in registry.errors
    assert registry.plugins["easel"].ok


def test_registering_something_that_is_not_a_node(tmp_path):
    path = write(
        tmp_path,
        "wrong",
        """
        import easel

        @easel.hookimpl
        def register_nodes(register):
            register(len)
    """,
    )
    registry = load_plugins([path], entry_points=False, environ={})
    assert "expected a node made with @easel.node" in registry.errors[0]


def test_duplicate_node_type_is_an_error_naming_both(tmp_path):
    first = write(tmp_path, "first", GOOD)
    second = write(tmp_path, "second", GOOD)
    registry = load_plugins([first, second], entry_points=False, environ={})
    assert "Shout" not in registry.nodes
    for name in ("first", "second"):
        assert any("'first' and 'second'" in e for e in registry.plugins[name].errors)
    try:
        validate(workflow({"s": {"type": "Shout"}}), registry)
    except WorkflowError as exc:
        assert "defined by both plugins 'first' and 'second'" in str(exc)
    else:
        raise AssertionError("validation should refuse an ambiguous node type")


def test_redefining_a_builtin_disables_the_plugins_node_not_the_builtin(tmp_path):
    path = write(
        tmp_path,
        "clash",
        """
        import easel

        @easel.node(outputs={"value": int})
        def Int(value: int = 0) -> int:
            return value

        @easel.hookimpl
        def register_nodes(register):
            register(Int)
    """,
    )
    registry = load_plugins([path], entry_points=False, environ={})
    assert registry.nodes["Int"].plugin == "easel" and registry.plugins["easel"].ok
    assert registry.plugins["clash"].errors == [
        "node type 'Int' is built in; the plugin's own 'Int' is disabled and the built-in one "
        "is used (rename the plugin's node, e.g. with a prefix)"
    ]


def test_disable_and_allow_lists(tmp_path):
    path = write(tmp_path, "shout", GOOD)
    off = load_plugins([path], entry_points=False, environ={"EASEL_DISABLE_PLUGINS": "shout"})
    assert "Shout" not in off.nodes and "Int" in off.nodes
    all_off = load_plugins([path], entry_points=False, environ={"EASEL_DISABLE_PLUGINS": "all"})
    assert "Shout" not in all_off.nodes and "Int" in all_off.nodes
    allow = load_plugins([path], entry_points=False, environ={"EASEL_ALLOW_PLUGINS": "other"})
    assert "Shout" not in allow.nodes
    allow = load_plugins([path], entry_points=False, environ={"EASEL_ALLOW_PLUGINS": "shout"})
    assert "Shout" in allow.nodes


def test_socket_types_from_plugins(tmp_path):
    uses_unknown = write(
        tmp_path,
        "needs",
        """
        import easel

        @easel.node(outputs={"m": "STENCIL"})
        def MakeMask() -> object:
            return 1

        @easel.hookimpl
        def register_nodes(register):
            register(MakeMask)
    """,
    )
    registry = load_plugins([uses_unknown], entry_points=False, environ={})
    assert "MakeMask" not in registry.nodes
    assert "unknown socket types ['STENCIL']" in registry.errors[0]
    provides = write(
        tmp_path,
        "provides",
        """
        import easel

        @easel.hookimpl
        def register_socket_types(register):
            register("STENCIL", "a single-channel mask")
    """,
    )
    registry = load_plugins([uses_unknown, provides], entry_points=False, environ={})
    assert "MakeMask" in registry.nodes and registry.socket_types["STENCIL"]


def test_in_process_registration():
    class Plugin:
        @easel.hookimpl
        def register_nodes(self, register):
            @easel.node(outputs={"value": int})
            def Seven() -> int:
                return 7

            register(Seven)

    registry = load_plugins(entry_points=False, environ={}, extra=[("inline", Plugin())])
    assert registry.nodes["Seven"].plugin == "inline"

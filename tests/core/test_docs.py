"""Docs cannot rot: every hook is documented in docs/plugins.md with its real signature and
an example, and every option of `@easel.node` and `easel.Input` is described."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from easel.core import hookspecs
from easel.core.node import Input, node

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def hooks() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, "easel_spec")
    }


def sections(text: str) -> dict[str, str]:
    """Each `### \\`hook(...)\\`` section's body."""
    parts = re.split(r"^### `(\w+)\([^)]*\)`\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1].split("\n## ")[0] for i in range(1, len(parts), 2)}


def test_there_are_hooks():
    assert {
        "register_nodes",
        "register_socket_types",
        "register_web_assets",
        "register_routes",
        "register_event_types",
        "register_event_listeners",
        "register_model_kinds",
        "register_cache_codecs",
        "register_comfy_nodes",
    } <= set(hooks())


def test_every_hook_is_documented_with_its_signature():
    text = DOCS.read_text()
    documented = dict(re.findall(r"^### `(\w+)\(([^)]*)\)`", text, flags=re.M))
    for name, signature in hooks().items():
        assert name in documented, f"hook {name} is missing from docs/plugins.md"
        params = [p.strip() for p in documented[name].split(",") if p.strip()]
        assert params == list(signature.parameters), f"docs show the wrong signature for {name}"
    assert set(documented) <= set(hooks()), "docs/plugins.md documents a hook that is gone"


def test_every_hook_has_an_example_implementing_it():
    bodies = sections(DOCS.read_text())
    for name in hooks():
        example = re.search(r"```python\n(.*?)```", bodies[name], flags=re.S)
        assert example, f"hook {name} has no example"
        assert f"def {name}(register):" in example.group(1), f"{name}'s example misses it"
        call = re.search(r"Call `register\(([^)]*)\)`", bodies[name])
        assert call, f"{name}'s section does not say what register() takes"


def test_every_register_call_matches_the_hook_docstring():
    bodies = sections(DOCS.read_text())
    for name, fn in vars(hookspecs).items():
        if not hasattr(fn, "easel_spec"):
            continue
        documented = re.search(r"register\(([^)]*)\)", bodies[name])
        declared = re.search(r"register\(([^)]*)\)", fn.__doc__ or "")
        assert documented and declared and documented.group(1) == declared.group(1), name


def test_every_node_and_input_option_is_documented():
    text = DOCS.read_text()
    for option in inspect.signature(node).parameters:
        if option != "fn":
            assert f"| `{option}`" in text, f"@easel.node option {option!r} is undocumented"
    for option in inspect.signature(Input).parameters:
        if option != "default":
            assert f"{option}=" in text, f"easel.Input option {option!r} is undocumented"


def test_every_editor_api_member_is_documented():
    main = (Path(__file__).resolve().parents[2] / "easel" / "web" / "js" / "main.js").read_text()
    block = re.search(r"// -- the plugin API.*?\n(.*?)\n  };", main, flags=re.S)
    assert block, "main.js lost its plugin API block"
    members = set(re.findall(r"^\s{4}(\w+)[,(:]", block.group(1), flags=re.M))
    text = DOCS.read_text()
    for member in members:
        assert f"`{member}" in text or f" `{member}`" in text, f"editor.{member} undocumented"

"""Docs cannot rot: every hook is documented in docs/plugins.md with its real signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from easel.core import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def hooks() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, "easel_spec")}


def test_there_are_hooks():
    assert {"register_nodes", "register_socket_types", "register_web_assets"} <= set(hooks())


def test_every_hook_is_documented_with_its_signature():
    text = DOCS.read_text()
    documented = dict(re.findall(r"^### `(\w+)\(([^)]*)\)`", text, flags=re.M))
    for name, signature in hooks().items():
        assert name in documented, f"hook {name} is missing from docs/plugins.md"
        params = [p.strip() for p in documented[name].split(",") if p.strip()]
        assert params == list(signature.parameters), f"docs show the wrong signature for {name}"
    assert set(documented) <= set(hooks()), "docs/plugins.md documents a hook that is gone"

"""Kinds of model that plugins add (register_model_kinds) list and resolve like built-in ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from easel.models import discovery
from tests.models.test_discovery import touch


def test_a_kind_registered_by_a_plugin_is_listed_and_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel import hookimpl
    from easel.core import plugins

    class IpAdapterKind:
        @hookimpl
        def register_model_kinds(self, register):  # type: ignore[no-untyped-def]
            register("ipadapter", ["ipadapter"])

    monkeypatch.setattr(plugins, "_current", None)  # restored after the test
    plugins.load_plugins(
        entry_points=False, builtins=False, extra=[("ipadapter-kind", IpAdapterKind())]
    )
    root = touch(tmp_path / "models" / "ipadapter" / "sd15" / "plus.safetensors").parents[2]
    assert discovery.kind_names("ipadapter", [root]) == ["sd15/plus.safetensors"]
    assert (
        discovery.resolve("ipadapter", "sd15/plus.safetensors", [root])
        == root / "ipadapter" / "sd15" / "plus.safetensors"
    )
    assert discovery.kind_names("checkpoints", [root]) == []  # not a loose checkpoint folder

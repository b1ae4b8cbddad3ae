"""An outside author's plugin (tests/outside_plugin), installed through its entry point, seen
and run by Easel through every door: registry, executor, disk cache, CLI, server, importer."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import easel_outside
import pytest

from easel.core.diskcache import DiskStore
from easel.core.executor import Executor
from easel.core.plugins import load_plugins, plugin_comfy_nodes, plugin_model_kinds


def workflow(nodes: dict[str, Any]) -> dict[str, Any]:
    return {"format": "easel.workflow", "version": 1, "nodes": nodes}


@pytest.fixture(scope="module")
def registry():
    return load_plugins(environ={})  # entry points included: the real route


def test_found_through_its_entry_point_with_every_hook(registry) -> None:
    [ep] = [ep for ep in importlib.metadata.entry_points(group="easel") if ep.name == "outside"]
    assert ep.value == "easel_outside" and ep.dist is not None and ep.dist.version == "1.0.0"
    info = registry.plugins["outside"]
    assert info.ok, info.errors
    assert info.source == "entry point easel_outside" and info.version == "1.0.0"
    assert set(info.nodes) == {n.type for n in easel_outside.NODES}
    assert info.socket_types == ["OUTSIDE.STENCIL"]
    assert (info.web_assets / "index.js").is_file()
    assert sorted(r.url for r in registry.routes if r.plugin == "outside") == [
        "/api/plugins/outside/check",
        "/api/plugins/outside/nodes",
    ]
    assert registry.event_types["outside.stencil_made"] == "outside"
    assert plugin_model_kinds(registry)["stencils"] == ("stencils",)
    assert plugin_comfy_nodes(registry)["OutsideShout"].easel_type == "TextShout"
    assert registry.codecs[0].name in {"outside-stencil", "tensors", "png"}
    schema = registry.nodes["MakeStencil"].schema()
    assert schema["display_name"] == "Stencil from text" and schema["plugin"] == "outside"
    assert schema["inputs"]["repeat"] == {
        "type": "INT",
        "required": False,
        "minimum": 1,
        "maximum": 8,
        "default": 1,
        "step": 1,
    }


def test_stencil_to_image_with_progress_and_a_custom_event(registry) -> None:
    easel_outside.EVENTS.clear()
    wf = workflow(
        {
            "s": {"type": "MakeStencil", "inputs": {"pattern": "#.\n.#", "repeat": 2}},
            "img": {"type": "StencilImage", "inputs": {"stencil": ["s", "stencil"], "scale": 1}},
        }
    )
    seen: list[Any] = []
    result = Executor(registry).run(wf, targets=["img"], keep_values=True, on_event=seen.append)
    assert result.ok, result.failures
    assert result.values["s"]["stencil"] == ["#.#.", ".#.#"]
    assert result.values["img"]["image"].shape == (1, 3, 2, 4)
    made = [e for e in seen if e.type == "outside.stencil_made"]
    assert [(e.node_id, e.data) for e in made] == [("s", {"rows": 2})]
    assert [e.type for e in easel_outside.EVENTS if e.type.startswith("outside.")] == [
        "outside.stencil_made"
    ]  # the plugin's own listener
    assert [(e.data["step"], e.data["total"]) for e in seen if e.type == "node_progress"] == [
        (1, 2),
        (2, 2),
    ]


def test_a_wrong_output_is_blamed_on_the_node_that_made_it(registry) -> None:
    wf = workflow(
        {
            "b": {"type": "BrokenStencil"},
            "img": {"type": "StencilImage", "inputs": {"stencil": ["b", "stencil"]}},
        }
    )
    result = Executor(registry).run(wf, targets=["img"])
    assert result.node_status == {"b": "failed", "img": "skipped"}
    assert result.failures[0].message == (
        "output 'stencil' should be OUTSIDE.STENCIL, but the node returned an int (42)".replace(
            "an int", "a int"
        )
    )


def test_a_linked_path_is_fingerprinted_and_checked_when_known(registry, tmp_path) -> None:
    text = tmp_path / "prompt.txt"
    text.write_text("short")
    wf = workflow(
        {
            "p": {"type": "String", "inputs": {"value": str(text)}},
            "r": {"type": "TextRead", "inputs": {"path": ["p", "value"]}},
        }
    )
    ex = Executor(registry)
    assert ex.run(wf, targets=["r"], keep_values=True).values["r"]["text"] == "short"
    assert ex.run(wf, targets=["r"]).cached == ["p", "r"]
    text.write_text("changed")
    assert ex.run(wf, targets=["r"], keep_values=True).values["r"]["text"] == "changed"
    wf["nodes"]["p"]["inputs"]["value"] = str(tmp_path / "missing.txt")
    [failure] = ex.run(wf, targets=["r"]).failures
    assert (failure.node, failure.input) == ("r", "path")
    assert failure.message.startswith("no such file:")


def test_lazy_lists_hidden_inputs_and_per_output_identity(registry, tmp_path) -> None:
    wf = workflow(
        {
            "lines": {"type": "TextSplitLines", "inputs": {"text": "one\ntwo\nthree"}},
            "loud": {"type": "TextShout", "inputs": {"text": ["lines", "line"], "suffix": "!"}},
            "join": {"type": "TextJoinLines", "inputs": {"lines": ["loud", "text"]}},
            "long": {"type": "TextShout", "inputs": {"text": "long branch"}},
            "short": {"type": "TextShout", "inputs": {"text": "short branch", "style": "title"}},
            "pick": {
                "type": "TextByLength",
                "inputs": {
                    "text": ["join", "text"],
                    "limit": 5,
                    "when_long": ["long", "text"],
                    "when_short": ["short", "text"],
                },
            },
            "salt": {"type": "TextSalted", "inputs": {"text": ["pick", "text"], "salt": "a"}},
            "after": {"type": "TextShout", "inputs": {"text": ["salt", "text"], "style": "title"}},
            "report": {"type": "TextReport", "inputs": {"text": ["after", "text"]}},
        }
    )
    ex = Executor(registry, output_dir=tmp_path)
    result = ex.run(wf, keep_values=True, services={"extra_pnginfo": {"who": "tests"}})
    assert result.ok, result.failures
    assert result.values["loud"]["text"] == ["ONE!", "TWO!", "THREE!"]
    assert result.values["join"] == {"text": "ONE! / TWO! / THREE!", "count": 3}
    assert result.node_status["short"] == "unused" and result.node_status["long"] == "executed"
    report = json.loads((tmp_path / result.ui["report"]["files"][0]).read_text())
    assert report["text"] == "Long Branch" and report["extra"] == {"who": "tests"}
    assert sorted(report["workflow"]["nodes"]) == sorted(wf["nodes"])
    assert result.ui["report"]["files"] == ["outside/report-report.json"]
    # Only the salt output depends on the salt: "after" keeps its cache entry; the report,
    # which embeds the workflow (a hidden input), sees a changed workflow and runs again.
    wf["nodes"]["salt"]["inputs"]["salt"] = "b"
    again = ex.run(wf, services={"extra_pnginfo": {"who": "tests"}})
    assert again.executed == ["salt", "report"] and again.node_status["after"] == "cached"


def test_non_deterministic_nodes_always_run(registry) -> None:
    ex = Executor(registry)
    wf = workflow({"n": {"type": "TextNonce"}})
    first = ex.run(wf, targets=["n"], keep_values=True).values["n"]["text"]
    second = ex.run(wf, targets=["n"], keep_values=True).values["n"]["text"]
    assert first != second


def test_the_disk_cache_keeps_stencils_with_the_plugins_codec(registry, tmp_path) -> None:
    store = DiskStore(tmp_path, codecs=registry.codecs)
    assert store.put("ef" * 32, {"stencil": ["#.", ".#"]})
    assert store.get("ef" * 32) == {"stencil": ["#.", ".#"]}
    assert [p.suffix for p in (tmp_path / "ef").glob("*.stencil")] == [".stencil"]


def easel_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "easel", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_the_cli_lists_runs_and_imports_the_plugin(tmp_path) -> None:
    listed = json.loads(easel_cli("plugins", "--json", cwd=tmp_path).stdout)
    outside = next(p for p in listed if p["name"] == "outside")
    assert outside["ok"] and outside["errors"] == [] and "TextReport" in outside["nodes"]
    (tmp_path / "wf.json").write_text(
        json.dumps(
            workflow(
                {
                    "s": {"type": "MakeStencil", "inputs": {"pattern": "##"}},
                    "img": {"type": "StencilImage", "inputs": {"stencil": ["s", "stencil"]}},
                    "t": {"type": "TextShout", "inputs": {"text": "made by the cli"}},
                    "r": {"type": "TextReport", "inputs": {"text": ["t", "text"]}},
                }
            )
        )
    )
    ran = easel_cli("run", "wf.json", "--json", "-q", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["status"] == "succeeded" and report["nodes"]["r"] == "executed"
    saved = json.loads((tmp_path / "output" / "outside" / "report-r.json").read_text())
    assert saved["text"] == "MADE BY THE CLI"
    (tmp_path / "comfy.json").write_text(
        json.dumps(
            {"1": {"class_type": "OutsideShout", "inputs": {"text": "hi", "style": "title"}}}
        )
    )
    converted = easel_cli("convert", "comfy", "comfy.json", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    nodes = json.loads(converted.stdout)["nodes"]
    assert [(n["type"], n["inputs"]) for n in nodes.values()] == [
        ("TextShout", {"text": "hi", "style": "title"})
    ]


def test_the_server_mounts_its_routes_and_streams_its_events(tmp_path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from easel.server import ServerConfig, create_app

    async def scenario() -> None:
        registry = load_plugins(environ={})
        app = create_app(ServerConfig(port=0, data_dir=tmp_path / "data"), registry)
        async with TestClient(TestServer(app)) as client:
            names = await (await client.get("/api/plugins/outside/nodes")).json()
            assert "MakeStencil" in names["nodes"]
            origin = {"Origin": f"http://127.0.0.1:{client.port}"}
            checked = await client.post(
                "/api/plugins/outside/check", headers=origin, json={"stencil": ["#", "."]}
            )
            assert await checked.json() == {"valid": True}
            foreign = await client.post(
                "/api/plugins/outside/check", json={}, headers={"Origin": "http://evil.example"}
            )
            assert foreign.status == 403
            listed = await (await client.get("/api/plugins")).json()
            outside = next(p for p in listed["plugins"] if p["name"] == "outside")
            assert outside["ok"] and outside["modules"] == ["/plugins/outside/index.js"]
            ws = await client.ws_connect("/api/events", headers=origin)
            await ws.receive_json()  # hello
            wf = workflow(
                {
                    "s": {"type": "MakeStencil", "inputs": {"pattern": "#"}},
                    "img": {"type": "StencilImage", "inputs": {"stencil": ["s", "stencil"]}},
                    "show": {"type": "PreviewImage", "inputs": {"image": ["img", "image"]}},
                }
            )
            posted = await client.post("/api/runs", json={"workflow": wf}, headers=origin)
            run_id = (await posted.json())["id"]
            custom: list[dict[str, Any]] = []

            async def read() -> None:
                while True:
                    message = await ws.receive_json()
                    if message.get("run_id") != run_id:
                        continue
                    if message["type"] == "outside.stencil_made":
                        custom.append(message)
                    if message["type"] == "run_status" and message["status"] != "running":
                        assert message["status"] == "succeeded", message
                        return

            await asyncio.wait_for(read(), 60)
            assert [(m["node"], m["rows"]) for m in custom] == [("s", 1)]
            await ws.close()

    asyncio.run(scenario())

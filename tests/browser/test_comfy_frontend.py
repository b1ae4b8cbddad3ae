"""ComfyUI's own frontend (the comfyui-frontend-package distribution), served by Easel at
/comfy/, in headless Chromium: it starts without errors that matter, finds Easel's nodes in
its node library search, loads Easel's default workflow (as ComfyUI's API format, what
dropping the file does), queues it, shows progress and the image, and cancels a run."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.browser.conftest import screenshot
from tests.server.serverproc import REPO, Server, free_port

# What the page may log without anything being wrong: files ComfyUI itself answers 404 for
# when a user has none (user.css, templates), its release check on the internet (offline
# here), the favicon's progress frames it asks at the site root, and ComfyUI routes Easel
# does not offer (the model library and the folder paths, which would show absolute paths).
HARMLESS_404 = (
    "/user.css",
    "/comfy.templates.json",
    "/favicon_progress",
    "/experiment/",
    "/internal/",
)
HARMLESS_CONSOLE = ("user.css", "ERR_NAME_NOT_RESOLVED", "Failed to load resource")


@pytest.fixture(scope="module")
def comfy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from easel.server.comfy_frontend import INSTALL_HINT, frontend_root

    assert frontend_root() is not None, INSTALL_HINT + " (it is in the dev extra)"
    data = tmp_path_factory.mktemp("easel-comfy-frontend") / "data"
    process = Server(data, free_port())
    # A returning user: the first-start template browser stays closed.
    status, _ = process.call("POST", "/comfy/api/settings", {"Comfy.TutorialCompleted": True})
    assert status == 200
    yield process
    process.stop()


def default_workflow_as_api() -> dict[str, Any]:
    """Easel's default workflow in ComfyUI's API format, with numeric node ids."""
    from easel.core.plugins import load_plugins
    from easel.server.comfy_history import easel_to_prompt

    workflow = json.loads((REPO / "workflows" / "text_to_image.json").read_text())
    prompt = easel_to_prompt(workflow, load_plugins(entry_points=False))
    ids = {node_id: str(n) for n, node_id in enumerate(prompt, start=1)}
    return {
        ids[node_id]: {
            "class_type": node["class_type"],
            "inputs": {
                name: [ids[value[0]], value[1]] if isinstance(value, list) else value
                for name, value in node["inputs"].items()
            },
        }
        for node_id, node in prompt.items()
    }


class Watch:
    """What the page did: errors, failed requests, WebSocket frames, images it viewed."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.frames: list[Any] = []
        self.views: list[Any] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self.console)
        page.on("response", self.response)
        page.on("websocket", lambda ws: ws.on("framereceived", self.frame))

    def frame(self, payload: Any) -> None:
        self.frames.append(payload)

    def console(self, message: Any) -> None:
        if message.type == "error" and not any(h in message.text for h in HARMLESS_CONSOLE):
            self.errors.append(message.text)

    def response(self, response: Any) -> None:
        if response.status >= 400 and not any(h in response.url for h in HARMLESS_404):
            self.failed.append(f"{response.status} {response.request.method} {response.url}")
        if "/comfy/api/view?" in response.url and response.status == 200:
            self.views.append(response)

    def messages(self, kind: str) -> list[dict[str, Any]]:
        found = []
        for frame in self.frames:
            if isinstance(frame, str) and f'"type": "{kind}"' in frame:
                found.append(json.loads(frame)["data"])
        return found

    def binary(self) -> list[bytes]:
        return [f for f in self.frames if isinstance(f, bytes)]

    def wait(self, what: Any, timeout: float, page: Any) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, (self.errors, self.failed, self.frames[-5:])
            page.wait_for_timeout(100)


def test_comfyui_frontend_runs_easels_default_workflow(browser, comfy_server) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    watch = Watch(page)
    page.goto(comfy_server.base + "/comfy/")
    page.wait_for_function(
        "() => window.app && window.app.graph && window.app.graph._nodes.length > 0", timeout=90_000
    )

    # Easel's nodes, under Easel's names, in the frontend's node library search.
    page.get_by_role("button", name="Node Library (n)").click()
    search = page.get_by_placeholder("Search", exact=False).first
    search.fill("TextEncode")
    page.get_by_text("TextEncode", exact=True).first.wait_for(timeout=15_000)
    screenshot(page, "comfy-frontend-search")
    page.get_by_role("button", name="Node Library (n)").click()

    # Easel's default workflow, loaded as an API-format file is, then queued with Run.
    page.evaluate(
        "async (api) => { await window.app.loadApiJson(api, 'easel-default.json') }",
        default_workflow_as_api(),
    )
    types = page.evaluate("() => window.app.graph._nodes.map(n => n.type)")
    assert types == [
        "CheckpointLoader",
        "TextEncode",
        "TextEncode",
        "EmptyLatent",
        "KSampler",
        "VAEDecode",
        "Upscale",
        "SaveImage",
    ]
    page.get_by_role("button", name="Run", exact=True).click()
    watch.wait(lambda: watch.messages("execution_success"), 240, page)
    watch.wait(lambda: watch.views, 60, page)
    progress = watch.messages("progress")
    assert progress and progress[-1]["value"] == progress[-1]["max"] == 20
    assert watch.binary() and watch.binary()[0][:4] == b"\x00\x00\x00\x01"  # previews
    executed = watch.messages("executed")[-1]
    image = executed["output"]["images"][0]
    assert executed["node"] == "8" and image["type"] == "output"
    with Image.open(io.BytesIO(watch.views[-1].body())) as shown:
        assert shown.size == (256, 256)  # 32 px, upscaled x8 by the default workflow
    assert image["filename"] in watch.views[-1].url
    shown = page.evaluate(
        "() => [...document.images].map(i => i.src).concat("
        "(window.app.graph.getNodeById(8).imgs || []).map(i => i.src))"
    )
    assert any(image["filename"] in src for src in shown), shown
    page.get_by_role("button", name="Fit View (.)").click()
    screenshot(page, "comfy-frontend-image")

    # A long run, cancelled from the frontend.
    page.evaluate("""() => {
        const sampler = window.app.graph.getNodeById(5)
        sampler.widgets.find(w => w.name === 'steps').value = 1000
        sampler.widgets.find(w => w.name === 'seed').value = 12345
    }""")
    started = len(watch.messages("execution_start"))
    page.get_by_role("button", name="Run", exact=True).click()
    watch.wait(
        lambda: (
            len(watch.messages("execution_start")) > started
            and watch.messages("progress")[-1]["max"] == 1000
        ),
        120,
        page,
    )
    page.get_by_role("button", name="Cancel current run").click()
    watch.wait(lambda: watch.messages("execution_interrupted"), 60, page)
    runs = comfy_server.get("/api/runs")["runs"]
    assert runs[0]["status"] == "cancelled" and runs[1]["status"] == "succeeded"
    screenshot(page, "comfy-frontend-cancelled")
    context.close()
    assert not watch.errors, watch.errors
    assert not watch.failed, watch.failed


def test_comfyui_frontend_is_behind_the_servers_checks(comfy_server) -> None:
    status, body = comfy_server.call("GET", "/comfy/", headers={"Host": "evil.example"})
    assert status == 403
    status, body = comfy_server.call("GET", "/comfy/")
    assert status == 200 and b"<title>ComfyUI</title>" in body

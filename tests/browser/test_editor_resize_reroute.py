"""Resizing nodes by their corner, inserting a Reroute on a link (and running through it),
and converting a widget to an input and back."""

from __future__ import annotations

import json
import urllib.request

from tests.browser.conftest import screenshot
from tests.browser.helpers import new_workflow

WORKFLOW = {
    "format": "easel.workflow",
    "version": 1,
    "nodes": {
        "slow": {"type": "TestSlow", "inputs": {"value": 7, "steps": 1}},
        "echo": {"type": "TestEcho", "inputs": {"value": ["slow", "value"]}},
        "text": {"type": "ConcatenateText", "inputs": {"a": "a", "b": "b", "delimiter": " "}},
    },
    "ui": {"positions": {"slow": [40, 40], "echo": [640, 40], "text": [40, 240]}},
}


def load(page, workflow=WORKFLOW) -> None:
    new_workflow(page)
    page.evaluate("wf => window.easel.load(wf, 'resize')", workflow)
    page.wait_for_selector('.node[data-id="echo"]')


def menu(page, node_id: str, label: str) -> None:
    page.locator(f'.node[data-id="{node_id}"] .node-title').click(button="right")
    page.locator(".context-menu .context-item", has_text=label).first.click()


def ui(page) -> dict:
    return page.evaluate("() => window.easel.workflow().ui")


def drag(page, x: float, y: float, dx: float, dy: float) -> None:
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y + dy / 2, steps=4)
    page.mouse.move(x + dx, y + dy, steps=4)
    page.mouse.up()


def link_path(page, to: str, input_name: str):
    return page.locator(f'#links path.link[data-to="{to}"][data-input="{input_name}"]')


def test_resize_by_the_corner_is_saved_undoable_and_has_a_minimum(page) -> None:
    load(page)
    node = page.locator('.node[data-id="text"]')
    areas = node.locator("textarea")
    assert areas.count() == 2
    before, area_before = node.bounding_box(), [a.bounding_box() for a in areas.all()]
    grip = node.locator(".node-resize").bounding_box()
    drag(page, grip["x"] + 7, grip["y"] + 7, 150, 120)
    after = node.bounding_box()
    assert abs(after["width"] - (before["width"] + 150)) <= 2
    assert abs(after["height"] - (before["height"] + 120)) <= 2
    # The text areas follow the node's size: wider, and sharing the extra height.
    grown = [a.bounding_box() for a in areas.all()]
    for old, new in zip(area_before, grown, strict=True):
        assert new["width"] > old["width"] + 140
        assert new["height"] > old["height"] + 45
    assert sum(n["height"] - o["height"] for o, n in zip(area_before, grown, strict=True)) > 110
    size = ui(page)["sizes"]["text"]
    assert abs(size[0] - after["width"]) <= 2 and abs(size[1] - after["height"]) <= 2
    screenshot(page, "editor-resized-node")

    page.keyboard.press("Control+z")  # undo: back to the default size
    assert "sizes" not in ui(page)
    assert abs(node.bounding_box()["width"] - before["width"]) <= 2
    page.keyboard.press("Control+y")  # and redo
    assert abs(node.bounding_box()["width"] - after["width"]) <= 2

    # A minimum size: dragging far up-left stops there.
    grip = node.locator(".node-resize").bounding_box()
    assert grip["y"] + 14 < page.viewport_size["height"]
    drag(page, grip["x"] + 7, grip["y"] + 7, -300, -300)
    small = node.bounding_box()
    assert small["width"] >= 159 and small["height"] >= 59
    assert ui(page)["sizes"]["text"][0] == 160
    assert abs(small["height"] - before["height"]) <= 2  # no shorter than its content
    page.keyboard.press("Control+z")

    page.reload()  # restored on reload
    page.wait_for_selector("body.ready")
    node = page.locator('.node[data-id="text"]')
    assert abs(node.bounding_box()["width"] - after["width"]) <= 2
    assert abs(node.bounding_box()["height"] - after["height"]) <= 2
    menu(page, "text", "Reset size")
    assert "sizes" not in ui(page)
    assert abs(node.bounding_box()["width"] - before["width"]) <= 2


def test_resizing_moves_the_links_of_the_resized_node(page) -> None:
    load(page)
    path = link_path(page, "echo", "value")
    start = path.get_attribute("d")
    grip = page.locator('.node[data-id="slow"] .node-resize').bounding_box()
    page.mouse.move(grip["x"] + 7, grip["y"] + 7)
    page.mouse.down()
    page.mouse.move(grip["x"] + 107, grip["y"] + 7, steps=4)
    during = path.get_attribute("d")  # while dragging, without a full redraw
    page.mouse.up()
    assert during != start
    x0 = float(start.split()[1])
    assert abs(float(during.split()[1]) - (x0 + 100)) <= 2


def last_run(server) -> dict:
    with urllib.request.urlopen(server.base + "/api/runs?limit=1") as response:
        runs = json.loads(response.read())["runs"]
    with urllib.request.urlopen(server.base + f"/api/runs/{runs[0]['id']}") as response:
        return json.loads(response.read())


def run(page, server) -> dict:
    page.evaluate(
        "() => document.querySelectorAll('.node')"
        ".forEach(n => n.classList.remove('state-executed', 'state-cached'))"
    )
    page.keyboard.press("Control+Enter")
    # The first run also starts the server's worker process (torch's import: slow on a CUDA
    # build); a repeated sub-graph may come from the cache.
    done = '.node[data-id="echo"].state-executed, .node[data-id="echo"].state-cached'
    page.wait_for_selector(done, timeout=120000)
    page.wait_for_function(
        "() => !document.querySelector('.node.state-running, .node.state-queued')", timeout=60000
    )
    result = last_run(server)
    assert result["status"] == "succeeded", json.dumps(result)
    return result


def test_insert_reroute_on_a_link_runs_the_same(page, server) -> None:
    load(page)
    page.click("#canvas", position={"x": 5, "y": 5})
    direct = run(page, server)

    path = link_path(page, "echo", "value")
    # Right-click on the curve itself: its middle point.
    mid = path.evaluate(
        "p => { const l = p.getTotalLength(); const m = p.getPointAtLength(l / 2);"
        " const pt = new DOMPoint(m.x, m.y).matrixTransform(p.getScreenCTM());"
        " return [pt.x, pt.y]; }"
    )
    page.mouse.click(mid[0], mid[1], button="right")
    page.locator(".context-menu .context-item", has_text="Insert reroute").click()
    workflow = page.evaluate("() => window.easel.workflow()")
    reroutes = [i for i, n in workflow["nodes"].items() if n["type"] == "Reroute"]
    assert len(reroutes) == 1
    rid = reroutes[0]
    assert workflow["nodes"][rid]["inputs"] == {"input": ["slow", "value"]}
    assert workflow["nodes"]["echo"]["inputs"]["value"] == [rid, "output"]
    reroute = page.locator(f'.node[data-id="{rid}"]')
    assert "reroute" in reroute.get_attribute("class")
    assert reroute.bounding_box()["width"] < 80  # drawn small
    assert page.locator(f'#links path.link[data-to="{rid}"]').count() == 1
    screenshot(page, "editor-reroute")

    routed = run(page, server)
    text = json.dumps(routed)
    assert '"value": 7' in text
    assert json.dumps(direct["outputs"]["echo"]) == json.dumps(routed["outputs"]["echo"])

    page.keyboard.press("Control+z")  # undoable: the direct link is back
    workflow = page.evaluate("() => window.easel.workflow()")
    assert workflow["nodes"]["echo"]["inputs"]["value"] == ["slow", "value"]
    assert rid not in workflow["nodes"]


def test_convert_widget_to_input_and_back(page) -> None:
    load(page)
    row = page.locator('.node[data-id="slow"] .row[data-input="value"]')
    assert row.locator("input[type=number]").count() == 1
    # A linked value input shows no widget (echo.value is linked from slow).
    linked = page.locator('.node[data-id="echo"] .row[data-input="value"]')
    assert linked.locator(".widget").count() == 0
    assert linked.locator(".socket.in").count() == 1

    page.locator('.node[data-id="slow"] .node-title').click(button="right")
    page.locator(".context-menu .context-item", has_text="Convert widget to input").click()
    page.locator(".context-menu .context-item.sub", has_text="Convert value to input").click()
    assert row.locator(".widget").count() == 0
    assert row.locator(".socket.in").count() == 1
    assert ui(page)["converted"] == {"slow": ["value"]}
    nodes = page.evaluate("() => window.easel.workflow().nodes")
    assert nodes["slow"]["inputs"]["value"] == 7  # the value is kept
    screenshot(page, "editor-converted-widget")

    page.reload()  # kept in ui
    page.wait_for_selector("body.ready")
    assert row.locator(".widget").count() == 0

    page.locator('.node[data-id="slow"] .node-title').click(button="right")
    page.locator(".context-menu .context-item", has_text="Convert widget to input").click()
    page.locator(".context-menu .context-item.sub", has_text="Convert value to widget").click()
    assert row.locator("input[type=number]").input_value() == "7"
    assert "converted" not in ui(page)
    page.keyboard.press("Control+z")
    page.wait_for_function("() => !!window.easel.workflow().ui.converted", timeout=5000)
    assert row.locator(".widget").count() == 0

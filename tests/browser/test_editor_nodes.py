"""Acting on nodes and groups: bypass and mute (in a real run), collapse, pin, colour,
rename, duplicate, remove from the context menu, and groups saved, moved and reloaded."""

from __future__ import annotations

import json
import urllib.request

from tests.browser.conftest import screenshot
from tests.browser.helpers import center, move_node, new_workflow

WORKFLOW = {
    "format": "easel.workflow",
    "version": 1,
    "nodes": {
        "slow": {"type": "TestSlow", "inputs": {"value": 7, "steps": 1}},
        "inner": {"type": "TestSlow", "inputs": {"value": ["slow", "value"], "steps": 1}},
        "echo": {"type": "TestEcho", "inputs": {"value": ["inner", "value"]}},
        "fail": {"type": "TestFail", "inputs": {"value": 1}},
    },
    "ui": {
        "positions": {"slow": [40, 40], "inner": [340, 40], "echo": [640, 40], "fail": [340, 340]}
    },
}


def load(page, workflow=WORKFLOW) -> None:
    new_workflow(page)
    page.evaluate("wf => window.easel.load(wf, 'modes')", workflow)
    page.wait_for_selector('.node[data-id="echo"]')


def menu(page, node_id: str, label: str) -> None:
    page.locator(f'.node[data-id="{node_id}"] .node-title').click(button="right")
    page.locator(".context-menu .context-item", has_text=label).first.click()


def last_run(server) -> dict:
    with urllib.request.urlopen(server.base + "/api/runs?limit=1") as response:
        runs = json.loads(response.read())["runs"]
    with urllib.request.urlopen(server.base + f"/api/runs/{runs[0]['id']}") as response:
        return json.loads(response.read())


def test_bypass_and_mute_from_keys_and_menu_change_the_run(page, server) -> None:
    load(page)
    page.click('.node[data-id="inner"] .node-title')
    page.keyboard.press("Control+b")  # bypass: echo receives slow's value straight
    menu(page, "fail", "Mute")  # muted: the failing output node does not run
    inner = page.locator('.node[data-id="inner"]')
    assert "mode-bypass" in inner.get_attribute("class")
    assert "mode-mute" in page.get_attribute('.node[data-id="fail"]', "class")
    workflow = page.evaluate("() => window.easel.workflow()")
    assert workflow["nodes"]["inner"]["mode"] == "bypass"
    assert workflow["nodes"]["fail"]["mode"] == "mute"
    assert "mode" not in workflow["nodes"]["slow"]
    screenshot(page, "editor-bypass-mute")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector('.node[data-id="echo"].state-executed', timeout=20000)
    run = last_run(server)
    text = json.dumps(run)
    assert run["status"] == "succeeded", text
    assert "inner" not in run.get("node_status", {}) and "fail" not in run.get("node_status", {})
    assert "state-executed" not in inner.get_attribute("class")

    # Ctrl+B again clears it; the next run goes through `inner` again.
    page.click('.node[data-id="inner"] .node-title')
    page.keyboard.press("Control+b")
    assert "mode-bypass" not in inner.get_attribute("class")
    assert "mode" not in page.evaluate("() => window.easel.workflow()")["nodes"]["inner"]


def test_collapse_pin_colour_rename_duplicate_remove(page) -> None:
    load(page)
    node = page.locator('.node[data-id="slow"]')
    tall = node.bounding_box()["height"]
    page.click('.node[data-id="slow"] .node-title')
    page.keyboard.press("Alt+c")
    assert node.bounding_box()["height"] < tall / 2
    menu(page, "slow", "Expand")
    assert node.bounding_box()["height"] == tall

    menu(page, "slow", "Pin")
    before = node.bounding_box()
    move_node(page, "slow", before["x"] + 300, before["y"] + 300)
    assert node.bounding_box() == before  # a pinned node stays put
    menu(page, "slow", "Unpin")

    page.locator('.node[data-id="slow"] .node-title').click(button="right")
    page.locator('.context-menu .swatch[data-color="#3f7a45"]').click()
    header = page.locator('.node[data-id="slow"] .node-header')
    assert header.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(63, 122, 69)"

    page.once("dialog", lambda dialog: dialog.accept("Source number"))
    menu(page, "slow", "Rename")
    assert page.inner_text('.node[data-id="slow"] .node-title') == "Source number"
    ui = page.evaluate("() => window.easel.workflow().ui")
    assert ui["titles"] == {"slow": "Source number"} and ui["colors"] == {"slow": "#3f7a45"}

    menu(page, "echo", "Duplicate")
    assert page.locator('.node[data-type="TestEcho"]').count() == 2
    copy = page.eval_on_selector('.node[data-type="TestEcho"].selected', "e => e.dataset.id")
    inputs = page.evaluate(f"() => window.easel.workflow().nodes['{copy}'].inputs")
    assert copy != "echo" and inputs["value"] == ["inner", "value"]  # links kept
    menu(page, copy, "Remove")
    assert page.locator('.node[data-type="TestEcho"]').count() == 1

    page.reload()
    page.wait_for_selector("body.ready")
    assert page.inner_text('.node[data-id="slow"] .node-title') == "Source number"


def test_groups_made_with_ctrl_g_move_their_nodes_and_are_saved(page) -> None:
    load(page)
    page.click('.node[data-id="slow"] .node-title')
    page.click('.node[data-id="inner"] .node-title', modifiers=["Shift"])
    page.keyboard.press("Control+g")
    group = page.locator(".group")
    assert group.count() == 1
    ui = page.evaluate("() => window.easel.workflow().ui")
    assert len(ui["groups"]) == 1 and ui["groups"][0]["title"] == "Group"
    box = ui["groups"][0]
    assert box["x"] < 40 and box["y"] < 40 and box["x"] + box["w"] > 340 + 250

    page.once("dialog", lambda dialog: dialog.accept("Sources"))
    page.locator(".group-title").click(button="right")
    page.locator(".context-menu .context-item", has_text="Rename group").click()
    page.locator(".group-title").click(button="right")
    page.locator('.context-menu .swatch[data-color="#8a3b3b"]').click()
    assert page.inner_text(".group-title") == "Sources"

    before = {
        i: page.evaluate(f"() => window.easel.graph.nodes.get('{i}').x")
        for i in ("slow", "inner", "echo")
    }
    x, y = center(page.locator(".group-title"))
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 200, steps=6)
    page.mouse.up()
    after = {
        i: page.evaluate(f"() => window.easel.graph.nodes.get('{i}').x")
        for i in ("slow", "inner", "echo")
    }
    zoom = page.evaluate("() => window.easel.canvas.view.zoom")
    moved = round(60 / zoom)
    assert after["slow"] - before["slow"] == moved and after["inner"] - before["inner"] == moved
    assert after["echo"] == before["echo"]  # outside the group
    screenshot(page, "editor-group")
    page.reload()
    page.wait_for_selector("body.ready")
    ui = page.evaluate("() => window.easel.workflow().ui")
    assert ui["groups"][0]["title"] == "Sources" and ui["groups"][0]["color"] == "#8a3b3b"
    assert page.inner_text(".group-title") == "Sources"
    # Undo brings the group back where it was; removing it keeps the nodes.
    page.locator(".group-title").click(button="right")
    page.locator(".context-menu .context-item", has_text="Remove group").click()
    assert page.locator(".group").count() == 0 and page.locator(".node").count() == 4

"""Never losing work: the modified marker, prompts before New/Open/drop replace unsaved
changes, save-as over a project workflow, and History rows that reopen a past run."""

from __future__ import annotations

import json
import urllib.request

from tests.browser.conftest import screenshot
from tests.browser.helpers import add_node, drop_file

WORKFLOW = {"format": "easel.workflow", "version": 1, "nodes": {
    "slow": {"type": "TestSlow", "inputs": {"value": 11, "steps": 1}},
    "save": {"type": "TestSave", "inputs": {"value": ["slow", "value"], "prefix": "history"}},
    "note": {"type": "String", "inputs": {"value": "a red fox in the snow"}},
}, "ui": {"positions": {"slow": [40, 40], "save": [340, 40], "note": [40, 300]}}}


def modified(page) -> bool:
    return bool(page.evaluate("() => document.body.classList.contains('modified')"))


def test_marker_and_prompt_before_new_open_or_drop(page) -> None:
    assert not modified(page)  # the default workflow, untouched
    before = page.locator(".node").count()
    add_node(page, "TestEcho")
    assert modified(page) and page.title().startswith("●")
    assert page.locator("#modified-mark").is_visible()
    page.reload()  # edits are kept in the browser, and so is the marker
    page.wait_for_selector("body.ready")
    assert modified(page) and page.locator(".node").count() == before + 1

    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.click("#btn-new")
    assert asked and "unsaved changes" in asked[0]
    assert page.locator(".node").count() == before + 1  # refused: nothing replaced

    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    data = json.dumps({"format": "easel.workflow", "version": 1, "nodes": {}}).encode()
    drop_file(page, data, "other.json", "application/json")
    page.wait_for_timeout(200)
    assert len(asked) == 2 and page.locator(".node").count() == before + 1

    page.once("dialog", lambda d: d.accept())
    page.click("#btn-new")
    page.wait_for_function("() => document.querySelectorAll('.node').length === 0")
    assert not modified(page)


def test_save_as_a_project_workflow_asks_first(page, server) -> None:
    add_node(page, "TestEcho")
    page.fill("#workflow-name", "text_to_image")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.keyboard.press("Control+s")
    page.wait_for_function("() => true")
    page.wait_for_timeout(300)
    assert asked and "project workflow" in asked[0]
    with urllib.request.urlopen(server.base + "/api/workflows") as response:
        listed = json.loads(response.read())["workflows"]
    assert [w["readonly"] for w in listed if w["name"] == "text_to_image"] == [True]
    assert modified(page)

    page.fill("#workflow-name", "unsaved prompt test")
    page.keyboard.press("Control+s")
    page.wait_for_selector(".toast:has-text('Saved')")
    assert not modified(page)


def test_history_rows_reopen_a_past_run_with_its_images(page) -> None:
    page.once("dialog", lambda d: d.accept())
    page.evaluate("wf => window.easel.load(wf, 'history run')", WORKFLOW)
    page.keyboard.press("Control+Enter")
    page.wait_for_selector('.node[data-id="save"] .node-media img.output', timeout=20000)
    page.click('#sidebar .tabs button[data-tab="queue"]')
    row = page.locator("#queue-list .run-row.status-succeeded").first
    row.locator(".run-thumb img").wait_for()
    page.wait_for_function(
        "() => document.querySelector('#queue-list .run-row .run-prompt')?.textContent"
        " === 'a red fox in the snow'")
    screenshot(page, "editor-history")

    page.once("dialog", lambda d: d.accept())
    page.click("#btn-new")
    page.wait_for_function("() => document.querySelectorAll('.node').length === 0")
    row.click()
    page.wait_for_selector('.node[data-id="save"] .node-media img.output')
    assert page.locator(".node").count() == 3
    assert page.input_value('.node[data-id="slow"] .row[data-input="value"] input') == "11"
    assert "state-executed" in page.get_attribute('.node[data-id="save"]', "class")
    assert not modified(page)

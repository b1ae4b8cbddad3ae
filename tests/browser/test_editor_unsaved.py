"""Never losing work: the modified marker, prompts before New/Open/drop replace unsaved
changes, save-as over a project workflow, and History rows that reopen a past run."""

from __future__ import annotations

import json
import urllib.request

from tests.browser.conftest import screenshot
from tests.browser.helpers import add_node, drop_file

WORKFLOW = {
    "format": "easel.workflow",
    "version": 1,
    "nodes": {
        "slow": {"type": "TestSlow", "inputs": {"value": 11, "steps": 1}},
        "save": {"type": "TestSave", "inputs": {"value": ["slow", "value"], "prefix": "history"}},
        "note": {"type": "String", "inputs": {"value": "a red fox in the snow"}},
    },
    "ui": {"positions": {"slow": [40, 40], "save": [340, 40], "note": [40, 300]}},
}


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
        " === 'a red fox in the snow'"
    )
    screenshot(page, "editor-history")

    page.once("dialog", lambda d: d.accept())
    page.click("#btn-new")
    page.wait_for_function("() => document.querySelectorAll('.node').length === 0")
    row.click()  # opens in a new tab
    page.wait_for_selector('.node[data-id="save"] .node-media img.output')
    assert page.locator(".node").count() == 3
    assert page.locator("#wf-tabs .wf-tab").count() == 2
    assert page.inner_text("#wf-tabs .wf-tab.active .wf-tab-name").startswith("history run")
    assert page.input_value('.node[data-id="slow"] .row[data-input="value"] input') == "11"
    assert "state-executed" in page.get_attribute('.node[data-id="save"]', "class")
    assert not modified(page)


def test_workflow_tabs_keep_each_graph_its_marker_and_survive_a_reload(page) -> None:
    first = page.locator(".node").count()  # the default workflow
    page.click("#wf-tabs .wf-tab-add")
    assert page.locator(".node").count() == 0
    assert page.locator("#wf-tabs .wf-tab").count() == 2
    add_node(page, "TestEcho")
    page.fill("#workflow-name", "second")
    page.locator("#wf-tabs .wf-tab-name").first.click()
    assert page.locator(".node").count() == first and not modified(page)
    tabs = page.locator("#wf-tabs .wf-tab")
    assert "modified" in tabs.nth(1).get_attribute("class")
    assert tabs.nth(1).inner_text().startswith("second")
    page.keyboard.press("Control+z")  # undo is per tab: nothing to undo here
    assert page.locator(".node").count() == first
    screenshot(page, "editor-tabs")

    page.reload()
    page.wait_for_selector("body.ready")
    assert page.locator("#wf-tabs .wf-tab").count() == 2
    page.locator("#wf-tabs .wf-tab-name").nth(1).click()
    assert page.locator('.node[data-type="TestEcho"]').count() == 1
    assert page.input_value("#workflow-name") == "second" and modified(page)

    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.locator("#wf-tabs .wf-tab.active .wf-tab-close").click()
    assert asked and page.locator("#wf-tabs .wf-tab").count() == 2
    page.once("dialog", lambda d: d.accept())
    page.locator("#wf-tabs .wf-tab.active .wf-tab-close").click()
    assert page.locator("#wf-tabs .wf-tab").count() == 1
    assert page.locator(".node").count() == first

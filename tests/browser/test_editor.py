"""The editor in headless Chromium, with fast test nodes: build, link, run, reload, drop a PNG."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.browser.conftest import screenshot
from tests.browser.helpers import (
    add_node,
    drag_link,
    drop_file,
    link_count,
    move_node,
    new_workflow,
    set_number,
)


@pytest.fixture(autouse=True)
def _discard_when_asked(page):
    """These tests replace edited graphs on purpose: answer the unsaved-changes prompts
    (test_editor_unsaved.py tests the prompts themselves)."""
    page.on("dialog", lambda dialog: dialog.accept())


def build_slow_save(page, steps: int = 4, delay: float = 0.0) -> tuple[str, str]:
    new_workflow(page)
    slow = add_node(page, "TestSlow", drag=True, at=(520, 300))
    save = add_node(page, "TestSave")
    move_node(page, save, 1000, 330)
    set_number(page, slow, "steps", steps)
    set_number(page, slow, "delay", delay)
    drag_link(page, slow, "value", save, "value")
    assert link_count(page) == 1
    return slow, save


def test_build_run_reload_and_drop_the_png(page, server) -> None:
    slow, save = build_slow_save(page, steps=4)
    assert (slow, save) == ("testslow", "testsave")
    page.keyboard.press("Control+Enter")
    image = page.wait_for_selector(f'.node[data-id="{save}"] .node-media img.output', timeout=20000)
    page.wait_for_function("img => img.complete && img.naturalWidth === 24", arg=image)
    assert "state-executed" in page.get_attribute(f'.node[data-id="{slow}"]', "class")
    page.wait_for_selector("#gallery .gallery-item img")
    screenshot(page, "editor-after-run")
    src = image.get_attribute("src")
    assert src.startswith("/api/outputs/test_")

    page.reload()
    page.wait_for_selector("body.ready")
    assert page.locator(".node").count() == 2
    assert link_count(page) == 1
    steps = page.input_value(f'.node[data-id="{slow}"] .row[data-input="steps"] input')
    assert steps == "4"

    with urllib.request.urlopen(server.base + src) as response:
        png = response.read()
    new_workflow(page)
    drop_file(page, png, "dropped.png", "image/png")
    page.wait_for_function("() => document.querySelectorAll('.node').length === 2")
    assert link_count(page) == 1
    stored = json.loads(page.evaluate("localStorage.getItem('easel.editor.v1')"))
    assert stored["workflow"]["nodes"][slow]["inputs"]["steps"] == 4
    assert stored["workflow"]["nodes"][save]["inputs"]["value"] == [slow, "value"]
    screenshot(page, "editor-dropped-png")


def test_live_progress_and_preview_on_the_running_node(page) -> None:
    slow, _ = build_slow_save(page, steps=60, delay=0.05)
    page.click("#btn-queue")
    page.wait_for_selector(
        f'.node[data-id="{slow}"].state-running .node-media img.preview', timeout=20000
    )
    label = page.get_attribute(f'.node[data-id="{slow}"] .node-progress', "data-label")
    assert re.fullmatch(r"\d+ / 60", label)
    screenshot(page, "editor-running")
    page.click('#sidebar .tabs button[data-tab="queue"]')
    page.click("#queue-list .run-row.status-running button")
    page.wait_for_selector("#queue-list .run-row.status-cancelled", timeout=20000)
    # A cancelled run leaves no node "running" or "pending".
    page.wait_for_function(
        "() => !document.querySelector('.node.state-running, .node.state-pending')"
    )


def test_wrong_connection_is_refused_and_int_feeds_float(page) -> None:
    new_workflow(page)
    slow = add_node(page, "TestSlow")
    load = add_node(page, "TestLoad")
    math = add_node(page, "Math")
    drag_link(page, slow, "value", load, "image")
    toast = page.wait_for_selector(".toast.error")
    assert "takes STRING, not INT" in toast.inner_text()
    assert link_count(page) == 0
    drag_link(page, slow, "value", math, "a")
    assert link_count(page) == 1
    # A linked value input shows where it comes from instead of its widget.
    row = page.locator(f'.node[data-id="{math}"] .row[data-input="a"]')
    assert row.locator(".linked-from").inner_text() == f"← {slow}.value"
    assert row.locator("input").count() == 0


def test_delete_undo_redo_copy_paste(page) -> None:
    new_workflow(page)
    first = add_node(page, "TestSlow")
    second = add_node(page, "TestSave")
    drag_link(page, first, "value", second, "value")
    page.click(f'.node[data-id="{second}"] .node-title')
    page.keyboard.press("Delete")
    assert page.locator(".node").count() == 1 and link_count(page) == 0
    page.keyboard.press("Control+z")
    assert page.locator(".node").count() == 2 and link_count(page) == 1
    page.keyboard.press("Control+Shift+z")
    assert page.locator(".node").count() == 1
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+a")
    page.keyboard.press("Control+c")
    page.mouse.move(900, 700)
    page.keyboard.press("Control+v")
    assert page.locator(".node").count() == 4
    assert link_count(page) == 2  # the copy's internal link is copied too
    page.click("#btn-undo")
    assert page.locator(".node").count() == 2


def test_widgets_follow_the_schema(page) -> None:
    new_workflow(page)
    slow = add_node(page, "TestSlow")
    steps = page.locator(f'.node[data-id="{slow}"] .row[data-input="steps"] input')
    assert (steps.get_attribute("min"), steps.get_attribute("max")) == ("1", "1000")
    steps.fill("5000")
    steps.press("Tab")
    assert steps.input_value() == "1000"  # clamped to the schema's maximum
    math = add_node(page, "Math")
    options = page.locator(f'.node[data-id="{math}"] .row[data-input="op"] select option')
    assert options.all_inner_texts()[:2] == ["add", "subtract"]
    text = add_node(page, "String")
    assert page.locator(f'.node[data-id="{text}"] textarea').count() == 1
    seed = add_node(page, "Seed")
    assert page.locator(f'.node[data-id="{seed}"] .w-randomize input').is_checked()
    load = add_node(page, "TestLoad")
    buttons = page.locator(f'.node[data-id="{load}"] .w-upload button')
    assert buttons.first.inner_text() == "Upload…"
    assert buttons.last.is_hidden()  # Mask… shows once an image is chosen
    # A widget shipped by a plugin's editor assets.
    assert page.get_attribute("body", "data-test-plugin") == "loaded"
    colour = add_node(page, "TestColor")
    assert page.locator(f'.node[data-id="{colour}"] input.plugin-colour').input_value() == "#ff8800"
    page.click("#btn-fit")
    screenshot(page, "editor-widgets")


def test_seed_is_randomized_after_queueing(page) -> None:
    new_workflow(page)
    seed = add_node(page, "Seed")
    echo = add_node(page, "TestEcho")
    drag_link(page, seed, "seed", echo, "value")
    field = page.locator(f'.node[data-id="{seed}"] input[type=number]')
    field.fill("7")
    field.press("Tab")
    page.keyboard.press("Control+Enter")
    selector = f'.node[data-id="{seed}"] input[type=number]'
    page.wait_for_function("s => document.querySelector(s).value !== '7'", arg=selector)
    page.wait_for_selector(f'.node[data-id="{echo}"].state-executed', timeout=20000)


def test_failures_show_on_the_node(page) -> None:
    new_workflow(page)
    fail = add_node(page, "TestFail")
    page.keyboard.press("Control+Enter")
    message = page.wait_for_selector(
        f'.node[data-id="{fail}"].state-failed .node-message', timeout=20000
    )
    assert message.inner_text() == "refusing value 0"
    assert "invalid" in page.get_attribute(
        f'.node[data-id="{fail}"] .row[data-input="value"]', "class"
    )
    new_workflow(page)
    load = add_node(page, "TestLoad")
    page.keyboard.press("Control+Enter")
    message = page.wait_for_selector(f'.node[data-id="{load}"].state-failed .node-message')
    assert "upload" in message.inner_text()
    screenshot(page, "editor-failure")


def test_save_and_open_from_the_server(page) -> None:
    new_workflow(page)
    add_node(page, "TestSlow")
    add_node(page, "TestEcho")
    page.fill("#workflow-name", "browser saved")
    page.keyboard.press("Control+s")
    page.wait_for_selector(".toast:has-text('Saved')")
    new_workflow(page)
    page.click("#btn-open")
    page.click("#open-list .open-name:has-text('browser saved')")
    page.wait_for_function("() => document.querySelectorAll('.node').length === 2")
    assert page.input_value("#workflow-name") == "browser saved"


def test_import_a_json_file(page, tmp_path) -> None:
    new_workflow(page)
    workflow = {
        "format": "easel.workflow",
        "version": 1,
        "nodes": {"a": {"type": "TestEcho", "inputs": {"value": 3}}},
        "ui": {"positions": {"a": [100, 100]}},
    }
    file = tmp_path / "imported.json"
    file.write_text(json.dumps(workflow))
    page.set_input_files("#file-input", str(file))
    page.wait_for_selector('.node[data-id="a"]')
    assert page.input_value("#workflow-name") == "imported"


def test_palette_search_by_name_and_category(page) -> None:
    page.fill("#palette-search", "arithmetic")
    assert page.locator(".palette-item").all_inner_texts()[0].startswith("Math")
    found = page.locator(".palette-item").evaluate_all("els => els.map(e => e.dataset.type)")
    assert "Math" in found and "String" not in found and len(found) < 5  # a filter, not all
    page.fill("#palette-search", "testing")
    types = page.locator(".palette-item").evaluate_all("els => els.map(e => e.dataset.type)")
    assert {"TestSlow", "TestSave", "TestEcho", "TestFail", "TestLoad"} <= set(types)
    page.fill("#palette-search", "zzzz")
    assert page.locator(".palette-empty").count() == 1

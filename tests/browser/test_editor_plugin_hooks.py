"""The editor's plugin API in Chromium: socket colours, node-defined and node-executed hooks,
context-menu items and event listeners, driven by tests/browser/webplugin/assets/index.js."""

from __future__ import annotations

from tests.browser.helpers import add_node, new_workflow


def test_plugin_hooks_change_the_editor_and_see_the_run(page) -> None:
    new_workflow(page)
    colour = add_node(page, "TestColor")
    node = page.locator(f'.node[data-id="{colour}"]')
    # onNodeDefined renamed the type for display; the palette shows it too.
    assert node.locator(".node-title").inner_text() == "Colour (plugin)"
    page.fill("#palette-search", "Colour (plugin)")
    assert page.locator('.palette-item[data-type="TestColor"] .palette-name').inner_text() == (
        "Colour (plugin)"
    )
    page.fill("#palette-search", "")
    # setSocketColor: INT sockets take the plugin's colour.
    seed = add_node(page, "Seed")
    int_socket = page.locator(f'.node[data-id="{seed}"] .socket.out[data-name="seed"]')
    assert "rgb(1, 2, 3)" in int_socket.evaluate("e => getComputedStyle(e).getPropertyValue('--c')")
    # addContextMenuItem: shown on a TestColor node only, and its action edits the node.
    page.locator(f'.node[data-id="{seed}"] .node-title').click(button="right")
    assert page.locator(".context-menu .context-item", has_text="Make it blue").count() == 0
    assert page.locator(".context-menu .context-item", has_text="Remove").is_visible()
    node.locator(".node-title").click(button="right")
    page.locator(".context-menu .context-item", has_text="Make it blue").click()
    assert node.locator("input.plugin-colour").input_value() == "#0000ff"
    # onNodeExecuted and on(type): the run's events reach the plugin.
    page.click("#btn-queue")
    page.wait_for_selector(f'body[data-executed*="{colour}"]', state="attached")
    assert page.get_attribute("body", "data-last-colour") == "#0000ff"
    assert page.get_attribute("body", "data-run-started")

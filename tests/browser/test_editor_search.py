"""The node search at the pointer: double-click and `/`, fuzzy ranking, keyboard, ComfyUI
aliases, plugin nodes, the link dropped on empty space, and placing new nodes on free space."""

from __future__ import annotations

from tests.browser.conftest import screenshot
from tests.browser.helpers import add_node, center, link_count, new_workflow, socket

HITS = ".node-search:not([hidden]) .node-search-item"


def hits(page) -> list[str]:
    return page.locator(HITS).evaluate_all("els => els.map(e => e.dataset.type)")


def active(page) -> str:
    return str(page.eval_on_selector(".node-search-item.active", "e => e.dataset.type"))


def test_double_click_search_ranks_by_name_and_enter_adds_the_highlighted(page) -> None:
    new_workflow(page)
    page.mouse.dblclick(800, 500)
    page.wait_for_selector(".node-search:not([hidden]) input:focus")
    box = page.locator(".node-search").bounding_box()
    assert abs(box["x"] - 800) < 5 and abs(box["y"] - 500) < 5  # at the pointer
    page.keyboard.type("ksampler")
    found = hits(page)
    assert found[0] == "KSampler", found  # the name wins over descriptions
    assert active(page) == "KSampler"
    screenshot(page, "editor-search-ksampler")
    page.keyboard.press("ArrowDown")
    assert active(page) == found[1]
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    page.wait_for_selector('.node[data-type="KSampler"]')
    assert page.locator(".node-search").is_hidden()
    node = page.locator('.node[data-type="KSampler"]').bounding_box()
    assert abs(node["x"] - 780) < 30 and abs(node["y"] - 484) < 30  # where the user clicked

    # Fuzzy: letters in order; description words; a typo-free subsequence still ranks.
    page.mouse.dblclick(400, 700)
    page.keyboard.type("ksmplr")
    assert hits(page)[0] == "KSampler"
    page.fill(".node-search input", "arithmetic")
    assert "Math" in hits(page)[:3]
    page.keyboard.press("Escape")
    assert page.locator(".node-search").is_hidden()


def test_comfy_names_and_plugin_nodes_are_found_and_slash_opens_it(page) -> None:
    new_workflow(page)
    page.mouse.move(600, 400)
    page.keyboard.press("/")
    page.wait_for_selector(".node-search:not([hidden]) input:focus")
    page.keyboard.type("CLIPTextEncode")
    page.wait_for_function(  # the alias table arrives from /api/nodes/aliases
        "() => document.querySelector('.node-search-item')?.dataset.type === 'TextEncode'"
    )
    assert hits(page)[0] == "TextEncode"
    page.fill(".node-search input", "CheckpointLoaderSimple")
    assert hits(page)[0] == "CheckpointLoader"
    page.fill(".node-search input", "testcolor")
    assert hits(page)[0] == "TestColor"
    plugin = page.locator(".node-search-item.active .plugin").inner_text()
    assert plugin and plugin != "easel"
    page.keyboard.press("Enter")
    page.wait_for_selector('.node[data-type="TestColor"]')


def test_link_dropped_on_empty_space_offers_compatible_nodes_and_connects(page) -> None:
    new_workflow(page)
    slow = add_node(page, "TestSlow")
    x, y = center(socket(page, slow, "value", "out"))
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 150, y + 80, steps=5)
    page.mouse.move(x + 250, y + 150, steps=5)  # empty canvas (clear of the minimap)
    page.mouse.up()
    page.wait_for_selector(".node-search.filtered:not([hidden])")
    offered = hits(page)
    assert "TestSave" in offered and "TestSlow" in offered
    assert "CheckpointLoader" not in offered and "VAEDecode" not in offered  # no INT input
    page.keyboard.type("testsave")
    assert hits(page)[0] == "TestSave"
    screenshot(page, "editor-link-drop-search")
    page.keyboard.press("Enter")
    page.wait_for_selector('.node[data-type="TestSave"]')
    assert link_count(page) == 1
    save = page.eval_on_selector('.node[data-type="TestSave"]', "e => e.dataset.id")
    workflow = page.evaluate("() => window.easel.workflow()")
    assert workflow["nodes"][save]["inputs"]["value"] == [slow, "value"]

    # From an input the other way: drag off TestSave's unlinked prefix (STRING) into space.
    px, py = center(socket(page, save, "prefix", "in"))
    page.mouse.move(px, py)
    page.mouse.down()
    page.mouse.move(px - 150, py + 40, steps=8)
    page.mouse.up()
    page.wait_for_selector(".node-search.filtered:not([hidden])")
    offered = hits(page)
    assert offered and "TestSlow" not in offered  # TestSlow gives INT, not STRING
    page.keyboard.press("Escape")


def test_nodes_added_from_the_palette_do_not_land_on_each_other(page) -> None:
    new_workflow(page)
    for _ in range(3):
        add_node(page, "TestEcho")
    boxes = [
        page.locator(f'.node[data-id="{i}"]').bounding_box()
        for i in ("testecho", "testecho2", "testecho3")
    ]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart = (
                a["x"] + a["width"] <= b["x"]
                or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"]
                or b["y"] + b["height"] <= a["y"]
            )
            assert apart, (a, b)

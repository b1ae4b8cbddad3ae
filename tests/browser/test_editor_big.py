"""A 300-node graph: Fit shows it all, a dragged node's links follow it exactly (they are
moved, not redrawn), keyboard zoom and pan; benchmarks/bench_editor.py measures the speed."""

from __future__ import annotations

from benchmarks.bench_editor import big_workflow
from tests.browser.conftest import screenshot
from tests.browser.helpers import center, new_workflow, socket

LINK_END = """path => {
  const d = path.getAttribute('d').split(/[ ,]+/).filter(Boolean);
  const m = path.getScreenCTM();
  const at = (x, y) => { const p = new DOMPoint(+x, +y).matrixTransform(m); return [p.x, p.y]; };
  return [at(d[1], d[2]), at(d[d.length - 2], d[d.length - 1])];
}"""


def test_fit_drag_and_keyboard_view_on_300_nodes(page) -> None:
    new_workflow(page)
    page.evaluate("wf => window.easel.load(wf, 'big')", big_workflow(300))
    page.wait_for_function("() => document.querySelectorAll('.node').length === 300")
    page.keyboard.press("f")
    area = page.locator("#canvas").bounding_box()
    boxes = page.locator(".node").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom]; })"
    )
    assert all(
        area["x"] <= b[0]
        and b[2] <= area["x"] + area["width"] + 1
        and area["y"] <= b[1]
        and b[3] <= area["y"] + area["height"] + 1
        for b in boxes
    )
    screenshot(page, "editor-300-fit")

    page.keyboard.press("0")  # back to 100 %
    assert page.evaluate("() => window.easel.canvas.view.zoom") == 1
    page.keyboard.press("+")
    assert abs(page.evaluate("() => window.easel.canvas.view.zoom") - 1.2) < 1e-9
    page.keyboard.press("-")
    before = page.evaluate("() => window.easel.canvas.view")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    after = page.evaluate("() => window.easel.canvas.view")
    assert (after["x"] - before["x"], after["y"] - before["y"]) == (80, 80)

    # Drag n1 (linked to n0 and n2): both its links end exactly on its sockets afterwards.
    page.evaluate("() => window.easel.canvas.setView({x: 40, y: 40, zoom: 0.8})")
    title = page.locator('.node[data-id="n1"] .node-title')
    x, y = center(title)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 90, y + 150, steps=10)
    page.mouse.up()
    into = page.locator('#links path.link[data-to="n1"]')
    out = page.locator('#links path.link[data-from="n1"]')
    (_, end), (start, _) = into.evaluate(LINK_END), out.evaluate(LINK_END)
    sx, sy = center(socket(page, "n1", "value", "in"))
    ox, oy = center(socket(page, "n1", "value", "out"))
    assert abs(end[0] - sx) < 1.5 and abs(end[1] - sy) < 1.5
    assert abs(start[0] - ox) < 1.5 and abs(start[1] - oy) < 1.5


def test_the_minimap_shows_the_graph_and_moves_the_view(page) -> None:
    new_workflow(page)
    # nothing to show: the map redraws (and hides) on the next animation frame
    page.wait_for_selector("#minimap", state="hidden", timeout=5000)
    page.evaluate("wf => window.easel.load(wf, 'big')", big_workflow(300))
    page.wait_for_selector("#minimap:not([hidden])")
    page.evaluate("() => window.easel.canvas.setView({x: 40, y: 40, zoom: 1})")
    box = page.locator("#minimap").bounding_box()
    # Press where the map draws the graph's bottom-right node (n299): it comes into view.
    px, py = page.evaluate("""() => {
        const c = document.getElementById('minimap'), d = c.getContext('2d');
        const data = d.getImageData(0, 0, c.width, c.height).data;
        let best = null;
        for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
            const i = 4 * (y * c.width + x);
            if (data[i] === 0x6b && data[i + 1] === 0x73 && data[i + 2] === 0x84
                && (!best || x + y > best[0] + best[1])) best = [x, y];
        }
        return best;
    }""")
    page.mouse.click(box["x"] + px - 1, box["y"] + py - 1)
    view = page.evaluate("() => window.easel.canvas.view")
    assert view["zoom"] == 1 and view["x"] < -3000 and view["y"] < -1500
    node = page.locator('.node[data-id="n299"]').bounding_box()
    area = page.locator("#canvas").bounding_box()
    assert area["x"] < node["x"] + node["width"] / 2 < area["x"] + area["width"]
    assert area["y"] < node["y"] + node["height"] / 2 < area["y"] + area["height"]
    screenshot(page, "editor-minimap")
    page.keyboard.press("m")
    assert page.locator("#minimap").is_hidden()

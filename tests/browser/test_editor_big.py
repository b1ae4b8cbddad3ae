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
        " return [r.left, r.top, r.right, r.bottom]; })")
    assert all(area["x"] <= b[0] and b[2] <= area["x"] + area["width"] + 1
               and area["y"] <= b[1] and b[3] <= area["y"] + area["height"] + 1 for b in boxes)
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

"""Driving the editor like a user: palette, link dragging, widgets, dropping files."""

from __future__ import annotations

import base64
from typing import Any


def add_node(
    page: Any, node_type: str, drag: bool = False, at: tuple[int, int] = (700, 400)
) -> str:
    """Add a node from the palette (searching for it, then a click or a drag); its id."""
    page.fill("#palette-search", node_type)
    item = page.locator(f'.palette-item[data-type="{node_type}"]')
    if drag:
        item.drag_to(page.locator("#canvas"), target_position={"x": at[0] - 230, "y": at[1] - 50})
    else:
        item.click()
    page.fill("#palette-search", "")
    return str(page.eval_on_selector(".node.selected", "e => e.dataset.id"))


def socket(page: Any, node_id: str, name: str, direction: str) -> Any:
    return page.locator(f'.node[data-id="{node_id}"] .socket.{direction}[data-name="{name}"]')


def center(locator: Any) -> tuple[float, float]:
    box = locator.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag_link(page: Any, source: str, output: str, target: str, input_name: str) -> None:
    """Press on an output socket, move to an input socket, release: as a user draws a link."""
    x1, y1 = center(socket(page, source, output, "out"))
    x2, y2 = center(socket(page, target, input_name, "in"))
    page.mouse.move(x1, y1)
    page.mouse.down()
    page.mouse.move((x1 + x2) / 2, (y1 + y2) / 2, steps=5)
    page.mouse.move(x2, y2, steps=5)
    page.mouse.up()


def link_count(page: Any) -> int:
    return int(page.locator("#links path.link:not(.temp)").count())


def set_number(page: Any, node_id: str, name: str, value: float) -> None:
    field = page.locator(f'.node[data-id="{node_id}"] .row[data-input="{name}"] input[type=number]')
    field.fill(str(value))
    field.press("Tab")


def move_node(page: Any, node_id: str, x: float, y: float) -> None:
    """Drag a node by its header so that the header's middle lands at (x, y) on the page."""
    hx, hy = center(page.locator(f'.node[data-id="{node_id}"] .node-title'))
    page.mouse.move(hx, hy)
    page.mouse.down()
    page.mouse.move(x, y, steps=6)
    page.mouse.up()


def drop_file(page: Any, data: bytes, name: str, mime: str) -> None:
    """Drop a file on the canvas the way a browser does (a DataTransfer holding a File)."""
    transfer = page.evaluate_handle(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            return transfer;
        }""",
        [base64.b64encode(data).decode(), name, mime],
    )
    page.dispatch_event("#canvas", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#canvas", "drop", {"dataTransfer": transfer})


def new_workflow(page: Any) -> None:
    page.click("#btn-new")
    page.wait_for_function("() => document.querySelectorAll('.node').length === 0")

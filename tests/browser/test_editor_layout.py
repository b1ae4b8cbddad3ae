"""Roomy at any width: collapsible side panels (folded by default in narrow windows, floating
over the canvas on a tablet), and links that take a right-click to delete them."""

from __future__ import annotations

from tests.browser.conftest import screenshot
from tests.browser.helpers import add_node, drag_link, link_count, move_node, new_workflow


def open_at(browser, server, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.base + "/")
    page.wait_for_selector("body.ready")
    return context, page, errors


def canvas_width(page) -> float:
    return float(page.locator("#canvas").bounding_box()["width"])


def test_panels_fold_at_1024_and_float_on_a_tablet(browser, server) -> None:
    context, page, errors = open_at(browser, server, 1024, 700)
    assert page.locator("#sidebar").is_hidden() and page.locator("#palette").is_visible()
    assert canvas_width(page) >= 790
    page.click("#btn-toggle-palette")
    assert page.locator("#palette").is_hidden() and canvas_width(page) == 1024
    page.click("#btn-toggle-sidebar")
    assert page.locator("#sidebar").is_visible()
    page.reload()  # the choice is remembered
    page.wait_for_selector("body.ready")
    assert page.locator("#palette").is_hidden() and page.locator("#sidebar").is_visible()
    screenshot(page, "editor-1024")
    context.close()

    context, page, more = open_at(browser, server, 400, 800)
    assert page.locator("#palette").is_hidden() and page.locator("#sidebar").is_hidden()
    assert canvas_width(page) == 400
    page.click("#btn-toggle-palette")
    assert page.locator("#palette").is_visible() and canvas_width(page) == 400  # floats
    screenshot(page, "editor-tablet")
    context.close()
    assert not errors and not more, errors + more


def test_a_link_is_deleted_from_its_menu(page) -> None:
    new_workflow(page)
    slow = add_node(page, "TestSlow")
    echo = add_node(page, "TestEcho")
    move_node(page, echo, 1000, 500)
    drag_link(page, slow, "value", echo, "value")
    assert link_count(page) == 1
    x, y = page.eval_on_selector(
        "#links path.link",
        """p => {
        const m = p.getScreenCTM(), at = p.getPointAtLength(p.getTotalLength() / 2);
        const q = new DOMPoint(at.x, at.y).matrixTransform(m);
        return [q.x, q.y];
    }""",
    )
    page.mouse.click(x, y, button="right")
    page.locator(".context-menu .context-item", has_text="Delete link").click()
    assert link_count(page) == 0
    assert "value" not in page.evaluate(
        f"() => window.easel.workflow().nodes['{echo}'].inputs"
    ) or not isinstance(
        page.evaluate(f"() => window.easel.workflow().nodes['{echo}'].inputs.value"), list
    )


def test_a_light_theme_beside_the_dark_one(page) -> None:
    def background() -> str:
        return str(page.eval_on_selector("#canvas", "e => getComputedStyle(e).backgroundColor"))

    dark = background()
    page.click("#btn-theme")
    assert "light" in page.get_attribute("body", "class") and background() != dark
    page.wait_for_timeout(300)  # the buttons' colour transition
    screenshot(page, "editor-light")
    page.reload()
    page.wait_for_selector("body.ready")
    assert "light" in page.get_attribute("body", "class")
    page.click("#btn-theme")
    assert background() == dark

"""Images in the editor: a dropped plain image becomes a LoadImage node, output images open
in the lightbox, and the mask editor saves the painted area as transparency (MASK = 1)."""

from __future__ import annotations

import base64
import io
import urllib.request

from PIL import Image

from tests.browser.conftest import screenshot
from tests.browser.helpers import new_workflow

RUN = {
    "format": "easel.workflow",
    "version": 1,
    "nodes": {
        "slow": {"type": "TestSlow", "inputs": {"value": 5, "steps": 1}},
        "save": {"type": "TestSave", "inputs": {"value": ["slow", "value"], "prefix": "lightbox"}},
    },
    "ui": {"positions": {"slow": [40, 40], "save": [340, 40]}},
}


def drop_file(page, data: bytes, name: str, mime: str, at=(700, 400)) -> None:
    """Drop a file at a point of the canvas, as a browser does."""
    page.evaluate(
        """([b64, name, mime, x, y]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            const canvas = document.getElementById("canvas");
            for (const type of ["dragover", "drop"]) {
                canvas.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, clientX: x,
                                                           clientY: y, bubbles: true }));
            }
        }""",
        [base64.b64encode(data).decode(), name, mime, *at],
    )


def png(width: int, height: int, colour=(30, 160, 90, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_dropped_image_becomes_a_load_image_node_and_its_mask_is_edited(page, server) -> None:
    new_workflow(page)
    drop_file(page, png(64, 48), "photo.png", "image/png")
    node = page.wait_for_selector('.node[data-type="LoadImage"]')
    node_id = node.get_attribute("data-id")
    name = page.evaluate(f"() => window.easel.workflow().nodes['{node_id}'].inputs.image")
    assert name.startswith("photo") and name.endswith(".png")
    page.wait_for_selector(f'.node[data-id="{node_id}"] .w-upload-preview[src*="photo"]')

    page.click(f'.node[data-id="{node_id}"] .w-mask')
    page.wait_for_selector("#dlg-mask[open]")
    paint = page.locator("#dlg-mask .mask-paint")
    box = paint.bounding_box()
    scale = box["width"] / 64  # the stage shows the 64 x 48 image scaled up
    page.locator("#dlg-mask input[type=range]").fill("60")  # screen px: ~7 image px
    # Paint the left half's middle row, then erase its left end.
    page.mouse.move(box["x"] + 4 * scale, box["y"] + 24 * scale)
    page.mouse.down()
    page.mouse.move(box["x"] + 30 * scale, box["y"] + 24 * scale, steps=8)
    page.mouse.up()
    page.click("#dlg-mask button[data-tool=erase]")
    page.mouse.move(box["x"] + 4 * scale, box["y"] + 24 * scale)
    page.mouse.down()
    page.mouse.move(box["x"] + 8 * scale, box["y"] + 24 * scale, steps=3)
    page.mouse.up()
    screenshot(page, "editor-mask")
    page.click("#dlg-mask button[data-action=save]")
    page.wait_for_selector("#dlg-mask:not([open])", state="attached")
    page.wait_for_function(
        f"() => window.easel.workflow().nodes['{node_id}'].inputs.image.includes('-mask')"
    )
    saved = page.evaluate(f"() => window.easel.workflow().nodes['{node_id}'].inputs.image")
    with urllib.request.urlopen(server.base + "/api/uploads/" + saved) as response:
        image = Image.open(io.BytesIO(response.read())).convert("RGBA")
    alpha = image.getchannel("A")
    assert image.size == (64, 48)
    assert alpha.getpixel((20, 24)) == 0  # painted: transparent, MASK 1
    assert alpha.getpixel((20, 5)) == 255 and alpha.getpixel((50, 24)) == 255  # untouched
    assert alpha.getpixel((4, 24)) == 255  # erased again
    assert image.getpixel((50, 24))[:3] == (30, 160, 90)  # the picture itself is kept
    from easel.nodes.image_io import alpha_mask  # what LoadImage gives its MASK output

    mask = alpha_mask(image)
    assert float(mask[0, 24, 20]) == 1.0 and float(mask[0, 5, 20]) == 0.0

    # Reopened, the editor shows that mask; Clear then Save gives an opaque image.
    page.click(f'.node[data-id="{node_id}"] .w-mask')
    page.wait_for_selector("#dlg-mask[open]")
    painted = page.evaluate("""() => {
        const c = document.querySelector('#dlg-mask .mask-paint');
        return c.getContext('2d').getImageData(20, 24, 1, 1).data[3];
    }""")
    assert painted == 255
    page.click("#dlg-mask button[data-action=clear]")
    page.click("#dlg-mask button[data-action=save]")
    page.wait_for_function(
        f"n => window.easel.workflow().nodes['{node_id}'].inputs.image !== n", arg=saved
    )
    cleared = page.evaluate(f"() => window.easel.workflow().nodes['{node_id}'].inputs.image")
    with urllib.request.urlopen(server.base + "/api/uploads/" + cleared) as response:
        alpha = Image.open(io.BytesIO(response.read())).convert("RGBA").getchannel("A")
    assert alpha.getextrema() == (255, 255)


def test_a_jpeg_drop_and_the_lightbox_on_an_output(page) -> None:
    new_workflow(page)
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(buffer, "JPEG")
    drop_file(page, buffer.getvalue(), "shot.jpg", "image/jpeg")
    page.wait_for_selector('.node[data-type="LoadImage"]')

    page.evaluate("wf => window.easel.load(wf, 'lightbox')", RUN)
    page.keyboard.press("Control+Enter")
    image = page.wait_for_selector('.node[data-id="save"] .node-media img.output', timeout=20000)
    src = image.get_attribute("src")
    image.click()
    page.wait_for_selector("#lightbox[open]")
    assert page.get_attribute("#lightbox img", "src") == src
    assert page.inner_text("#lightbox .caption").startswith("lightbox_")

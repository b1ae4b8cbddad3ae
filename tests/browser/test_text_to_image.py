"""The default text-to-image graph built in the browser with the real nodes and tiny models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import editor_page, screenshot
from tests.browser.helpers import add_node, drag_link, link_count, new_workflow, set_number
from tests.fixtures.tiny_models import TinyModels, tiny_models  # noqa: F401 - a fixture
from tests.server.serverproc import Server, free_port


@pytest.fixture(scope="module")
def model_server(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_models: TinyModels,  # noqa: F811
) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("easel-t2i") / "data"
    process = Server(
        data,
        free_port(),
        extra=("--models-dir", str(tiny_models.root)),
        env={"HF_HUB_OFFLINE": "1"},
    )
    yield process
    process.stop()


@pytest.fixture
def model_page(browser: Any, model_server: Server) -> Iterator[Any]:
    with editor_page(browser, model_server) as opened:
        yield opened


def test_default_text_to_image_graph_from_the_palette(
    model_page: Any,
    tiny_models: TinyModels,  # noqa: F811
) -> None:
    page = model_page
    new_workflow(page)
    page.mouse.move(700, 450)
    page.mouse.wheel(0, 200)  # zoom out so the six nodes fit side by side
    ckpt = add_node(page, "CheckpointLoader", drag=True, at=(250, 110))
    latent = add_node(page, "EmptyLatent", drag=True, at=(250, 330))
    encode = add_node(page, "TextEncode", drag=True, at=(460, 110))
    sampler = add_node(page, "KSampler", drag=True, at=(670, 110))
    decode = add_node(page, "VAEDecode", drag=True, at=(880, 110))
    save = add_node(page, "SaveImage", drag=True, at=(880, 300))

    page.select_option(f'.node[data-id="{ckpt}"] select', label=tiny_models.name)
    page.fill(f'.node[data-id="{encode}"] textarea', "a red circle")
    page.locator(f'.node[data-id="{encode}"] textarea').press("Tab")
    set_number(page, latent, "width", 16)
    set_number(page, latent, "height", 16)
    set_number(page, sampler, "steps", 2)

    drag_link(page, ckpt, "model", sampler, "model")
    drag_link(page, ckpt, "clip", encode, "clip")
    drag_link(page, encode, "conditioning", sampler, "positive")
    drag_link(page, latent, "latent", sampler, "latent")
    drag_link(page, sampler, "latent", decode, "latent")
    drag_link(page, ckpt, "vae", decode, "vae")
    drag_link(page, decode, "image", save, "image")
    assert link_count(page) == 7

    page.keyboard.press("Control+Enter")
    image = page.wait_for_selector(
        f'.node[data-id="{save}"] .node-media img.output', timeout=180_000
    )
    page.wait_for_function("img => img.complete && img.naturalWidth === 16", arg=image)
    assert "state-executed" in page.get_attribute(f'.node[data-id="{sampler}"]', "class")
    screenshot(page, "text-to-image")

    page.reload()
    page.wait_for_selector("body.ready")
    assert page.locator(".node").count() == 6
    assert link_count(page) == 7
    text = page.input_value(f'.node[data-id="{encode}"] textarea')
    assert text == "a red circle"


def test_first_visit_runs_the_default_workflow_on_the_demo_model(
    browser: Any, server: Server
) -> None:
    """A new user opens the editor, presses Ctrl+Enter, and sees the prompt drawn."""
    import io
    import urllib.request

    import numpy as np
    from PIL import Image

    from easel.zoo.shapes.analyse import analyse, score
    from easel.zoo.shapes.render_node import parse_caption

    with editor_page(browser, server) as page:
        assert page.locator('.node[data-id="model"]').count() == 1  # the default workflow
        prompt = page.input_value('.node[data-id="prompt"] textarea')
        page.locator("#canvas").click(position={"x": 20, "y": 20})
        page.keyboard.press("Control+Enter")
        image = page.wait_for_selector(
            '.node[data-id="save"] .node-media img.output', timeout=120_000
        )
        page.wait_for_function("img => img.complete && img.naturalWidth === 256", arg=image)
        screenshot(page, "default-workflow")
        src = str(image.get_attribute("src"))
        url = src if src.startswith("http") else server.base + src
        with urllib.request.urlopen(url, timeout=10) as response:
            pixels = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
    verdict = score(analyse(pixels)[0], parse_caption(prompt))
    assert all(verdict.values()), (prompt, analyse(pixels)[0])
